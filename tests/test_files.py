"""Output files: checked before a run, written atomically, never replacing a user's file."""

from __future__ import annotations

import json
import os
import stat
from types import SimpleNamespace

import numpy as np
import pytest

from compare import files
from compare.present import trajectories


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


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    path.write_text("old\n")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize(
    ("content", "schema", "own"),
    [
        (json.dumps({"schema": "crosscheck.report/1"}), "crosscheck.report/1", True),
        (json.dumps({"schema": "crosscheck.report/1"}), "crosscheck.baseline/2", False),
        (json.dumps([1, 2]), "crosscheck.report/1", False),
        ("<?xml version='1.0'?>\n<a><!-- crosscheck.junit/1 --></a>", "crosscheck.junit/1", True),
        ("# my notes\n", "crosscheck.markdown/1", False),
    ],
)
def test_only_an_earlier_output_of_the_same_kind_may_be_replaced(tmp_path, content, schema, own):
    path = tmp_path / "out"
    path.write_text(content)
    assert files.is_own_output(path, schema) is own
    if own:
        files.check_writable(path, schema=schema)
    else:
        with pytest.raises(files.OutputError, match=r"refusing to overwrite .*\(use --force\)"):
            files.check_writable(path, schema=schema)
        files.check_writable(path, schema=schema, force=True)


def test_an_npz_is_recognised_by_its_schema_member(tmp_path):
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    kept = SimpleNamespace(
        trajectories={"numpy": {"loss": np.zeros(3)}}, trajectory_steps=np.arange(3)
    )
    ours.write_bytes(trajectories.to_npz(kept))
    np.savez(theirs, loss=np.zeros(3))
    assert files.is_own_output(ours, trajectories.SCHEMA)
    assert not files.is_own_output(ours, "crosscheck.report/1")
    assert not files.is_own_output(theirs, trajectories.SCHEMA)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing" / "r.json", "does not exist"),
        (lambda tmp: tmp, "it is a folder"),
    ],
)
def test_unwritable_paths_are_refused_in_one_line(tmp_path, make, message):
    with pytest.raises(files.OutputError, match=message) as caught:
        files.check_writable(make(tmp_path), schema="x")
    assert "\n" not in str(caught.value)
