"""``crosscheck run --plots DIR``: real PNG pictures, checked before the run, never written over
a user's file, and nothing left behind by a refused run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import presentation_results as made
import pytest

from compare import cli, files
from compare.present import plots

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

PLUGINS = Path(__file__).parent / "plugins"
RUN = ["run", "--in-process", "--steps", "20", "--frameworks", f"numpy,{PLUGINS / 'wrong_lr.py'}"]


def _sensible_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path.name} is {image.format}, not PNG"
        width, height = image.size
        assert 400 <= width <= 3000 and 250 <= height <= 2500, f"{path.name} is {image.size}"
        colours = image.convert("RGB").getcolors(maxcolors=width * height)
        assert len(colours) > 10, f"{path.name} is nearly blank ({len(colours)} colours)"


def test_run_draws_every_plot_as_a_sensible_png(capsys, tmp_path):
    folder = tmp_path / "new" / "plots"  # missing folders are created
    assert cli.main([*RUN, "--plots", str(folder)]) == 1, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "plots written" in out
    names = {path.name for path in folder.iterdir()}
    expected = {"loss.png", "differences_independent.png", "differences_synced.png"}
    assert expected | {"confusion_matrix.png"} == names
    assert names <= set(plots.FILENAMES)
    for name in names:
        _sensible_png(folder / name)


def test_the_plots_of_a_made_result(tmp_path):
    written = plots.write(made.result([made.comparison(made.AGREEING, made.EXPECTED)]), tmp_path)
    assert [path.name for path in written] == [
        "loss.png",
        "differences_synced.png",
        "confusion_matrix.png",
    ]
    for path in written:
        _sensible_png(path)


def test_an_earlier_png_is_replaced(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "loss.png")
    plots.prepare(tmp_path)
    plots.write(made.result([made.comparison(made.AGREEING, made.EXPECTED)]), tmp_path)
    with Image.open(tmp_path / "loss.png") as image:
        assert image.size != (10, 10), "the earlier plot should have been replaced"


def test_a_folder_that_is_a_file_exits_2_with_one_line(capsys, tmp_path):
    path = tmp_path / "plots"
    path.write_text("my notes\n")
    assert cli.main([*RUN, "--plots", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a folder" in error, error
    assert path.read_text() == "my notes\n", "the file must be left alone"


def test_a_users_file_in_the_way_is_never_overwritten_and_nothing_is_written(capsys, tmp_path):
    mine = tmp_path / "differences_synced.png"
    mine.write_text("not a picture, but mine\n")
    assert cli.main([*RUN, "--plots", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "refusing to overwrite" in error, error
    assert mine.read_text() == "not a picture, but mine\n"
    assert [path.name for path in tmp_path.iterdir()] == [mine.name]


def test_a_refused_run_creates_no_plot_folder(capsys, tmp_path):
    folder = tmp_path / "plots"
    assert cli.main([*RUN, "--plots", str(folder), "--rtol", "-1"]) == 2
    assert cli.main([*RUN, "--plots", str(folder), "--report", "/nonexistent/r.json"]) == 2
    assert not folder.exists()


def test_missing_matplotlib_exits_2_before_training(capsys, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "matplotlib" else real(name, *args),
    )
    with pytest.raises(files.OutputError, match=r"crosscheck\[plots\]"):
        plots.prepare(tmp_path / "plots")
    assert cli.main([*RUN, "--plots", str(tmp_path / "plots")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "crosscheck[plots]" in error, error


def test_a_run_longer_than_the_plot_bins_draws_every_plot(capsys, tmp_path):
    # Over 1,000 states the series are binned; the per-state and per-step series (one fewer)
    # (5,001 states: bins of 6; 5,000 steps: bins of 5)
    # then have bins of different widths, which once crashed the default (both) mode's plots.
    pytest.importorskip("torch")
    honest = ["--frameworks", "numpy,torch", "--no-oracles"]
    command = ["run", "--steps", "5000", *honest, "--plots", str(tmp_path)]
    assert cli.main(command) == 0, capsys.readouterr().err
    assert {"differences_synced.png", "differences_independent.png"} <= {
        path.name for path in tmp_path.iterdir()
    }
