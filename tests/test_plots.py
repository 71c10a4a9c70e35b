"""``crosscheck run --plots DIR``: the PNGs are written, open, and are real pictures."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from compare import agreement, plots
from compare.cli import main

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

RUN = ["run", "--in-process", "--steps", "30"]
NUMPY_ONLY = [*RUN, "--frameworks", "numpy"]  # for checks that need no framework installed


def test_run_writes_every_plot_as_a_sensible_png(capsys, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    folder = tmp_path / "new" / "plots"  # missing folders are created
    assert main([*RUN, "--plots", str(folder)]) == 0, capsys.readouterr().err
    assert "plots written" in capsys.readouterr().out
    for name in plots.FILENAMES:
        path = folder / name
        assert path.is_file(), f"{name} was not written"
        with Image.open(path) as image:
            assert image.format == "PNG", f"{name} is {image.format}, not PNG"
            width, height = image.size
            assert 400 <= width <= 3000 and 300 <= height <= 2000, f"{name} is {image.size}"
            colours = image.convert("RGB").getcolors(maxcolors=width * height)
            assert len(colours) > 10, f"{name} is nearly blank ({len(colours)} colours)"


def test_an_earlier_png_is_replaced(capsys, tmp_path):
    old = Image.new("RGB", (10, 10))
    old.save(tmp_path / "loss_accuracy.png")
    assert main([*NUMPY_ONLY, "--plots", str(tmp_path)]) == 0, capsys.readouterr().err
    with Image.open(tmp_path / "loss_accuracy.png") as image:
        assert image.size != (10, 10), "the earlier plot should have been replaced"


def test_a_folder_that_is_a_file_exits_2_with_one_line(capsys, tmp_path):
    path = tmp_path / "plots"
    path.write_text("my notes\n")
    assert main([*NUMPY_ONLY, "--plots", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a folder" in error, error
    assert path.read_text() == "my notes\n", "the file must be left alone"


def test_a_users_file_in_the_way_is_never_overwritten(capsys, tmp_path):
    mine = tmp_path / "gradient_difference.png"
    mine.write_text("not a picture, but mine\n")
    assert main([*NUMPY_ONLY, "--plots", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "refusing to overwrite" in error, error
    assert mine.read_text() == "not a picture, but mine\n"
    assert not (tmp_path / "loss_accuracy.png").exists(), "nothing should be written at all"


def test_missing_matplotlib_exits_2_before_training(capsys, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "matplotlib" else real(name, *args),
    )
    assert main([*NUMPY_ONLY, "--plots", str(tmp_path / "plots")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "crosscheck[plots]" in error, error


def test_gradient_difference_is_the_per_step_maximum():
    """Non-finite values count as agreement only when identical, as in compare_series."""
    actual = np.array([[[1.0, 2.0]], [[3.0, np.nan]], [[np.inf, 0.0]]])
    expected = np.array([[[1.0, 2.5]], [[2.0, np.nan]], [[np.inf, 1e-3]]])
    np.testing.assert_array_equal(agreement.max_abs_by_step(actual, expected), [0.5, 1.0, 1e-3])
