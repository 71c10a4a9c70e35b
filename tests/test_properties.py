"""Property-based tests (hypothesis) of the command line's option parsing: every value is
either accepted as exactly what it says or refused in one line, never a traceback.

(The comparison's mathematics has its own property tests, by the engine's owners.)
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from compare import cli
from compare.cli import options
from compare.cli.recipe_options import recipe_from_args
from compare.recipe import RecipeError

PARSER = cli.build_parser()


def _parse(*argv: str):
    return PARSER.parse_args(["run", *argv])


@given(text=st.text(max_size=24))
def test_any_tolerance_text_is_a_finite_non_negative_number_or_one_line_refusal(text):
    for option in ("--rtol", "--atol"):
        try:
            parsed = getattr(_parse(f"{option}={text}"), option[2:])
        except options.UsageError as error:
            assert "\n" not in str(error) and option in str(error)
        else:
            assert math.isfinite(parsed) and parsed >= 0 and parsed == float(text)


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_a_tolerance_is_accepted_exactly_when_finite_and_not_negative(value):
    try:
        parsed = _parse(f"--rtol={value!r}").rtol
    except options.UsageError:
        assert not (math.isfinite(value) and value >= 0), f"{value!r} was refused"
    else:
        assert math.isfinite(value) and value >= 0 and parsed == value


@given(names=st.lists(st.sampled_from(["numpy", "torch", "jax", "a.py", "pkg.mod"]), min_size=1))
def test_frameworks_parse_to_the_listed_specs_in_order_without_repeats(names):
    parsed = _parse(f"--frameworks={','.join(names)}").frameworks
    assert parsed == tuple(dict.fromkeys(names))


@given(paths=st.lists(st.sampled_from(["a.json", "./a.json", "b.xml", "c.md"]), min_size=2))
def test_outputs_naming_one_file_twice_are_always_refused(paths, tmp_path_factory):
    folder = tmp_path_factory.mktemp("outputs")
    names = ("report", "junit-xml", "markdown")
    argv = [f"--{name}={folder / path}" for name, path in zip(names, paths, strict=False)]
    args = _parse(*argv)
    chosen = [str((folder / path).resolve()) for path in paths[: len(names)]]
    try:
        options.check_outputs(args, names)
    except options.UsageError as error:
        assert len(set(chosen)) < len(chosen), f"refused distinct paths: {error}"
        assert "\n" not in str(error)
    else:
        assert len(set(chosen)) == len(chosen), f"accepted {chosen}"


@given(
    option=st.sampled_from(["--steps", "--lr", "--hidden", "--init-scale", "--split-seed"]),
    text=st.text(max_size=16),
)
def test_any_recipe_option_value_gives_a_recipe_or_a_one_line_error(option, text):
    try:
        recipe_from_args(_parse(f"{option}={text}"))
    except (options.UsageError, RecipeError) as error:
        assert "\n" not in str(error), f"a multi-line error: {error}"
