"""Writing output files safely: checked before a run, written atomically, never clobbering.

An output path is checked before any training starts, so a ten-second run is not wasted on a
path that cannot be written. Files are written to a temporary file beside the target and then
renamed over it, so an interrupted run never leaves half a file. A file that is already there
is replaced only when it is an earlier output of the same kind (its schema says so) or when the
user says ``--force``.

This module knows files, not formats: each output names its schema, and the schema is found
in a JSON document's ``"schema"`` key, in a ``<!-- schema -->`` comment at the top of a text
file, or in a ``schema`` member of an ``.npz`` archive.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path

#: How far into a text output its schema comment may sit.
_HEAD = 200

#: The ``.npz`` member that names an archive's schema (``np.savez(..., schema=...)``).
NPZ_SCHEMA_MEMBER = "schema.npy"


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message is one line."""


def check_writable(path: Path, *, schema: str, force: bool = False) -> None:
    """Refuse ``path`` unless it can be written without losing something the user wrote.

    A path that already exists may be replaced only when it is an earlier output of the same
    kind (its schema is ``schema``) or when ``force`` is set.

    Raises:
        OutputError: the folder is missing or not writable, the path is a folder, or it holds
            something else and ``force`` is not set.
    """
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write {path}: folder {folder} is not writable")
    if path.exists() and not force and not is_own_output(path, schema):
        raise OutputError(
            f"refusing to overwrite {path}: it is not a crosscheck output (use --force)"
        )


def is_own_output(path: Path, schema: str) -> bool:
    """Whether ``path`` is an earlier crosscheck output of the kind ``schema`` names."""
    if zipfile.is_zipfile(path):
        return _npz_schema(path) == schema
    try:
        text = path.read_text()
    except (OSError, ValueError):
        return False
    try:
        document = json.loads(text)
    except ValueError:
        # Text outputs (JUnit XML, Markdown) name their schema in a comment at the top.
        return f"<!-- {schema} -->" in text[:_HEAD]
    return isinstance(document, dict) and document.get("schema") == schema


def _npz_schema(path: Path) -> str | None:
    # Read as text from the archive member rather than through numpy.load, so that nothing in
    # a file of unknown origin is unpickled: a saved string array is its header and raw bytes.
    try:
        with zipfile.ZipFile(path) as archive:
            if NPZ_SCHEMA_MEMBER not in archive.namelist():
                return None
            raw = archive.read(NPZ_SCHEMA_MEMBER)
    except (OSError, zipfile.BadZipFile):
        return None
    # The .npy layout: magic, version, header length (2 bytes in version 1, 4 after), header,
    # then a unicode scalar's UTF-32 code units, padded with zeros.
    if not raw.startswith(b"\x93NUMPY") or len(raw) < 12:
        return None
    size = 2 if raw[6] == 1 else 4
    start = 8 + size + int.from_bytes(raw[8 : 8 + size], "little")
    try:
        return raw[start:].decode("utf-32-le").rstrip("\x00")
    except UnicodeDecodeError:
        return None


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` through a temporary file beside it and a rename.

    Raises:
        OutputError: the file cannot be written.
    """
    folder = path.parent if str(path.parent) else Path(".")
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        try:
            with os.fdopen(descriptor, "wb" if isinstance(text, bytes) else "w") as stream:
                stream.write(text)
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            os.chmod(temporary, _mode_for(path))
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def _mode_for(path: Path) -> int:
    """An existing file's permissions, or those the umask gives a new file."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
