"""Writing output files safely: checked before a run, written atomically, never clobbering.

An output path is checked before any training starts, so a ten-second run is not wasted on a
path that cannot be written. Files are written to a temporary file beside the target and then
renamed over it, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

#: How far into a text output its schema comment may sit.
_HEAD = 200


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message is one line."""


def check_writable(path: Path, *, schema: str, force: bool = False) -> None:
    """Refuse ``path`` unless it can be written without losing something the user wrote.

    A path that already exists may be replaced only when it is an earlier output of the same
    kind (a JSON file whose ``"schema"`` is ``schema``) or when ``force`` is set.

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
    if path.exists() and not force and not _is_own_output(path, schema):
        raise OutputError(
            f"refusing to overwrite {path}: it is not a crosscheck output (use --force)"
        )


def _is_own_output(path: Path, schema: str) -> bool:
    try:
        text = path.read_text()
    except (OSError, ValueError):
        return False
    try:
        return json.loads(text).get("schema") == schema
    except (ValueError, AttributeError):
        # Text outputs (JUnit XML, Markdown) name their schema in a comment at the top.
        return f"<!-- {schema} -->" in text[:_HEAD]


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
