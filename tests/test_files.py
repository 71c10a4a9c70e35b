"""Output files: written atomically, with the permissions a plain open() would give them."""

from __future__ import annotations

import os
import stat

from compare import files


def test_a_new_output_gets_the_umask_mode_not_a_private_one(tmp_path):
    path = tmp_path / "baseline.json"
    previous = os.umask(0o022)
    try:
        files.write_atomic(path, "{}\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"], "a temporary file was left"


def test_a_replaced_output_keeps_its_mode(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old\n")
    path.chmod(0o640)
    files.write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
