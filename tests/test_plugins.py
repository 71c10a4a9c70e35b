"""The plugin registry (``implementations``) and the conformance kit (``compare.testing``).

Registry: built-ins, ``path/to/impl.py``, ``pkg.module`` and entry points load (in this process
and in a fresh one), ``available`` lists them, ``check_available`` imports no framework, and a
plugin that fails to import or breaks the contract gives one ``PluginError`` line naming it and
what is wrong. Kit: it passes correct implementations and names the step, quantity and index of
deliberately broken ones.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import implementations
from compare import testing

REPOSITORY = Path(__file__).resolve().parents[1]
AUTOGRAD_PLUGIN = (
    REPOSITORY
    / "examples"
    / "plugin-autograd"
    / "src"
    / "crosscheck_autograd"
    / "implementation.py"
)

#: A complete plugin: the NumPy reference's functions under a name of its own.
VALID_PLUGIN = """
from implementations.numpy_manual import loss_and_grads, predict, step, train

NAME = "{name}"
DTYPES = ("float64", "float32")
"""


def _module(spec: str) -> types.ModuleType:
    try:
        return implementations.load(spec)
    except implementations.FrameworkUnavailable as error:
        pytest.skip(str(error))


def _write(directory: Path, filename: str, text: str) -> Path:
    path = directory / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _plugin_error(spec: str) -> str:
    with pytest.raises(implementations.PluginError) as raised:
        implementations.load(spec)
    message = str(raised.value)
    assert "\n" not in message, f"a PluginError is one line, got:\n{message}"
    return message


# --- Registry: finding and loading ---------------------------------------------------------------


def test_builtins_are_registered_with_their_kind_and_install_line():
    assert implementations.NAMES == ("numpy", "torch", "jax", "torch_nn", "flax_nnx")
    assert implementations.BUILTINS["torch_nn"].kind == "idiomatic library"
    assert implementations.BUILTINS["numpy"].kind == "by hand"
    assert implementations.BUILTINS["flax_nnx"].install_line == (
        "pip install -c constraints.txt 'crosscheck[jax]'"
    )
    assert implementations.load("numpy").NAME == "numpy"


@pytest.mark.parametrize("name", implementations.NAMES)
def test_builtins_meet_the_contracts_names_and_kinds(name):
    module = _module(name)
    implementations.validate(module)
    assert name == module.NAME
    assert implementations.support(module).dtypes, f"{name} supports no dtype"


def test_unknown_spec_names_the_choices():
    with pytest.raises(
        implementations.UnknownFramework, match="choose from numpy, torch"
    ) as raised:
        implementations.load("no_such_framework")
    assert str(raised.value).startswith("unknown framework 'no_such_framework'")
    with pytest.raises(implementations.UnknownFramework):
        implementations.check_available("no_such_framework")


def test_path_spec_loads_a_file_under_a_unique_module_name(tmp_path):
    first = _write(tmp_path / "a", "impl.py", VALID_PLUGIN.format(name="mine_a"))
    second = _write(tmp_path / "b", "impl.py", VALID_PLUGIN.format(name="mine_b"))
    module_a = implementations.load(str(first))
    module_b = implementations.load(str(second))
    assert (module_a.NAME, module_b.NAME) == ("mine_a", "mine_b"), "two impl.py files collided"
    assert module_a.__name__ != module_b.__name__
    assert implementations.load(str(first)) is module_a, "loading a file twice made two modules"
    implementations.check_available(str(first))


def test_dotted_module_spec(tmp_path, monkeypatch):
    _write(tmp_path, "my_plugins/__init__.py", "")
    _write(tmp_path, "my_plugins/dotted_impl.py", VALID_PLUGIN.format(name="dotted"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert implementations.load("my_plugins.dotted_impl").NAME == "dotted"
    implementations.check_available("my_plugins.dotted_impl")


def _fake_distribution(directory: Path, entry_point: str, module: str, name: str) -> None:
    """An installed distribution on ``directory`` (as pip leaves one): metadata, its entry point
    in the group ``crosscheck.implementations``, and the module it names."""
    info = directory / "fake_crosscheck_plugin-1.0.dist-info"
    _write(info, "METADATA", "Metadata-Version: 2.1\nName: fake-crosscheck-plugin\nVersion: 1.0\n")
    _write(info, "entry_points.txt", f"[crosscheck.implementations]\n{entry_point} = {module}\n")
    _write(directory, f"{module}.py", VALID_PLUGIN.format(name=name))


def test_entry_point_plugins_are_discovered_listed_and_loaded(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "fakeplugin", "fake_plugin_impl", "fakeplugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    listed = {entry.name: entry for entry in implementations.available()}
    assert listed["fakeplugin"].kind == "plugin"
    assert listed["fakeplugin"].origin == "plugin from fake-crosscheck-plugin 1.0"
    assert listed["torch_nn"].origin == "built-in"
    implementations.check_available("fakeplugin")
    module = implementations.load("fakeplugin")
    assert module.__name__ == "fake_plugin_impl"
    testing.check_implementation(module, quick=True, dtypes=["float64"])


def test_entry_point_whose_name_differs_from_the_module_name_is_refused(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "alias", "alias_impl", "other_name")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _plugin_error("alias")
    assert "NAME is 'other_name'" in message and "must be the same" in message


def test_a_fresh_process_loads_every_kind_of_spec(tmp_path):
    """Workers load implementations by spec string alone, in a new process."""
    _fake_distribution(tmp_path, "fakeplugin", "fake_plugin_impl", "fakeplugin")
    path = _write(tmp_path / "files", "impl.py", VALID_PLUGIN.format(name="from_file"))
    _write(tmp_path, "fresh_pkg/__init__.py", "")
    _write(tmp_path, "fresh_pkg/impl.py", VALID_PLUGIN.format(name="from_package"))
    script = (
        "import implementations; "
        "print([implementations.load(s).NAME for s in ('numpy', 'fakeplugin', "
        f"{str(path)!r}, 'fresh_pkg.impl')])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['numpy', 'fakeplugin', 'from_file', 'from_package']"


def test_check_available_imports_no_framework():
    script = (
        "import sys, implementations; "
        "[implementations.check_available(n) for n in ('torch', 'torch_nn', 'jax', 'flax_nnx')]; "
        "print(sorted(m for m in ('torch', 'jax', 'flax', 'optax') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    if "FrameworkUnavailable" in done.stderr:
        pytest.skip("a framework is not installed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"check_available imported {done.stdout.strip()}"


def test_missing_framework_names_the_install_line(tmp_path, monkeypatch):
    _write(tmp_path, "needs_framework_impl.py", "import framework_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    builtin = implementations.Builtin(
        "fakefw",
        "needs_framework_impl",
        ("framework_that_is_not_installed",),
        "crosscheck[fake]",
        "functional autodiff",
    )
    monkeypatch.setitem(implementations.BUILTINS, "fakefw", builtin)
    expected = "install it with: pip install -c constraints.txt 'crosscheck[fake]'"
    with pytest.raises(implementations.FrameworkUnavailable, match=expected.replace("[", r"\[")):
        implementations.check_available("fakefw")
    with pytest.raises(implementations.FrameworkUnavailable, match=r"crosscheck\[fake\]"):
        implementations.load("fakefw")
    available = {entry.name: entry for entry in implementations.available()}["fakefw"]
    assert not available.installed and "crosscheck[fake]" in available.install_line


# --- Registry: plugins that break the contract ---------------------------------------------------


def test_plugin_that_fails_to_import(tmp_path):
    path = _write(tmp_path, "broken.py", "import numpy\nimport module_nobody_installed\n")
    message = _plugin_error(str(path))
    assert message == (
        f"plugin {str(path)!r} failed to import: "
        "ModuleNotFoundError: No module named 'module_nobody_installed'"
    )


def test_plugin_with_a_syntax_error(tmp_path):
    path = _write(tmp_path, "typo.py", "NAME = 'typo'\ndef train(:\n")
    message = _plugin_error(str(path))
    assert "failed to import: SyntaxError" in message and "line 2" in message


def test_plugin_without_train(tmp_path):
    text = VALID_PLUGIN.format(name="no_train").replace("step, train", "step")
    message = _plugin_error(str(_write(tmp_path, "no_train.py", text)))
    assert "does not define train" in message
    assert "every implementation defines NAME, DTYPES, train, step, loss_and_grads, predict" in (
        message
    )


@pytest.mark.parametrize(
    ("dtypes", "expected"),
    [
        ('"float64"', "DTYPES must be a non-empty tuple of dtype names"),
        ("()", "DTYPES must be a non-empty tuple of dtype names"),
        ('("float64", "float128")', "DTYPES holds 'float128', not one of float64, float32"),
    ],
)
def test_plugin_with_wrong_dtypes(tmp_path, dtypes, expected):
    text = VALID_PLUGIN.format(name="bad_dtypes").replace('("float64", "float32")', dtypes)
    message = _plugin_error(str(_write(tmp_path, "bad_dtypes.py", text)))
    assert expected in message, message


def test_plugin_with_wrong_supports(tmp_path):
    text = VALID_PLUGIN.format(name="bad_supports") + 'SUPPORTS = {"losses": ("mse",)}\n'
    message = _plugin_error(str(_write(tmp_path, "bad_supports.py", text)))
    assert "SUPPORTS must be an implementations.contract.Support, got dict" in message
    text = VALID_PLUGIN.format(name="bad_loss") + (
        "from implementations.contract import Support\n"
        'SUPPORTS = Support(losses=("mse", "hinge"))\n'
    )
    message = _plugin_error(str(_write(tmp_path, "bad_loss.py", text)))
    assert "SUPPORTS.losses holds 'hinge'" in message


def test_plugin_whose_name_is_a_builtins(tmp_path):
    message = _plugin_error(str(_write(tmp_path, "clash.py", VALID_PLUGIN.format(name="torch"))))
    assert "its NAME 'torch' is the built-in implementations.torch_autograd's" in message


def test_plugin_whose_train_cannot_be_called_as_the_contract_does(tmp_path):
    text = VALID_PLUGIN.format(name="old_train").replace("step, train", "step") + (
        "def train(problem, initial, X, Y, steps):\n    pass\n"
    )
    message = _plugin_error(str(_write(tmp_path, "old_train.py", text)))
    assert "train cannot be called as train(problem, initial, X, Y, steps, chunk=..." in message
    assert "unexpected keyword argument 'chunk'" in message


def test_path_that_does_not_exist():
    message = _plugin_error("no/such/impl.py")
    assert message.startswith("plugin 'no/such/impl.py': no such file")
    with pytest.raises(implementations.PluginError):
        implementations.check_available("no/such/impl.py")


# --- The conformance kit passes correct implementations ------------------------------------------


@pytest.mark.parametrize("spec", ["numpy", "torch_nn", "flax_nnx"])
def test_kit_passes_builtin(spec):
    cases = testing.check_implementation(_module(spec), quick=True)
    described = "\n".join(cases)
    for needed in ("float64", "float32", "float16", "bfloat16", "biases", "batches of"):
        assert needed in described, f"the quick kit never ran {needed}"
    for loss in ("half-mse", "mse", "half-sse", "cross-entropy", "binary-cross-entropy"):
        assert f", {loss};" in described, f"the quick kit never ran {loss}"


def test_kit_passes_the_autograd_plugin_by_path():
    pytest.importorskip("autograd")
    cases = testing.check_implementation(str(AUTOGRAD_PLUGIN), quick=True)
    assert any("float32" in case for case in cases)
    assert not any("float16" in case for case in cases), "ran a dtype the plugin does not declare"


def test_installed_autograd_plugin_is_found_through_its_entry_point():
    points = importlib.metadata.entry_points(group=implementations.ENTRY_POINT_GROUP)
    if "autograd" not in points.names:
        pytest.skip("install it with: pip install -c constraints.txt ./examples/plugin-autograd")
    module = implementations.load("autograd")
    assert module.__name__ == "crosscheck_autograd.implementation"
    assert any(entry.name == "autograd" for entry in implementations.available())


def test_kit_respects_supports(tmp_path):
    text = VALID_PLUGIN.format(name="narrow") + (
        "from implementations.contract import Support\n"
        'SUPPORTS = Support(activations=("tanh", "identity"), losses=("cross-entropy",), '
        'optimizers=("sgd",), biases=False, minibatches=False)\n'
    )
    cases = testing.check_implementation(str(_write(tmp_path, "narrow.py", text)))
    assert cases, "no case ran"
    for case in cases:
        assert "sgd (" in case and "cross-entropy" in case and "full batch" in case
        assert "biases" not in case and "sigmoid" not in case


# --- The conformance kit catches broken implementations ------------------------------------------


def _caught(module, **options) -> str:
    with pytest.raises(AssertionError) as raised:
        testing.check_implementation(module, quick=True, **options)
    return str(raised.value)


def test_kit_names_a_halved_sigmoid_derivative():
    broken = testing.mutate(
        implementations.load("numpy"),
        [("    return A * (1 - A)\n", "    return 0.5 * A * (1 - A)\n")],
        "halved-sigmoid-derivative",
    )
    message = _caught(broken)
    assert "synced step 0, grad:W1, point 0, index (0, 0): got " in message, message
    assert "expected" in message and "mismatched elements" in message


def test_kit_names_a_transposed_weight():
    mutant = testing.idiomatic_mutant("torch-nn-untransposed-weight")
    try:
        broken = mutant.build()
    except implementations.FrameworkUnavailable as error:
        pytest.skip(str(error))
    message = _caught(broken)
    assert "synced step 0, weight:W2, point 0, index (0, 1)" in message, message


def test_kit_names_a_wrong_optimizer_state():
    pytest.importorskip("autograd")
    plugin = implementations.load(str(AUTOGRAD_PLUGIN))
    broken = testing.mutate(
        plugin,
        [("(1 - rule.beta1) * g\n", "(1 - rule.beta2) * g\n")],
        "adam-first-moment-with-beta2",
    )
    message = _caught(broken)
    assert "adam" in message and "synced step 0 -> state 1, state:m:W1, point 0" in message, message


def _wrapped_numpy(**replacements) -> types.SimpleNamespace:
    """The NumPy reference as a plugin object, some functions replaced."""
    reference = implementations.load("numpy")
    functions = {
        name: getattr(reference, name) for name in ("train", "step", "loss_and_grads", "predict")
    }
    return types.SimpleNamespace(
        NAME="wrapped", DTYPES=("float64",), **{**functions, **replacements}
    )


def test_kit_checks_the_contracts_dtypes():
    reference = implementations.load("numpy")

    def float32_records(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
        def narrowing(start, records):
            sink(start, {k: v.astype(np.float32) if k == "loss" else v for k, v in records.items()})

        reference.train(problem, initial, X, Y, steps, chunk=chunk, sink=narrowing)

    message = _caught(_wrapped_numpy(train=float32_records))
    assert "train's records of states 0..: loss is float32, the contract says float64" in message


def test_kit_checks_that_every_state_is_handed_over():
    reference = implementations.load("numpy")

    def last_state_dropped(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
        reference.train(problem, initial, X, Y, steps - 1, chunk=chunk, sink=sink)

    message = _caught(_wrapped_numpy(train=last_state_dropped))
    assert f"train handed {testing.STEPS} states to sink" in message, message


def test_kit_catches_points_that_are_not_independent():
    reference = implementations.load("numpy")

    def leaky_points(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
        # Point 0's loss moves by 1e-10 times point 1's weights: far inside the train
        # comparison's tolerance, but not independent.
        leak = 1e-10 * float(np.sum(initial["weight:W1"][1:]))

        def leaking(start, records):
            records = dict(records)
            records["loss"] = records["loss"] + np.array([leak, 0.0])
            sink(start, records)

        reference.train(problem, initial, X, Y, steps, chunk=chunk, sink=leaking)

    message = _caught(_wrapped_numpy(train=leaky_points))
    assert "independent points: point 0 beside another point 1, train step 0, loss" in message


def test_kit_turns_a_crash_into_an_assertion_naming_the_function():
    def crashing(problem, params, X):
        raise RuntimeError("out of cheese")

    message = _caught(_wrapped_numpy(predict=crashing))
    assert message.endswith("predict raised RuntimeError: out of cheese"), message


def test_release_calls_the_hook_of_every_loaded_plugin(tmp_path):
    """``implementations.release`` (between in-process sweep cells) reaches plugins too."""
    import implementations

    source = (Path(__file__).parent / "plugins" / "numpy_again.py").read_text()
    plugin = tmp_path / "releasing.py"
    plugin.write_text(
        source.replace('NAME = "numpy_again"', 'NAME = "releasing"')
        + "\nreleased = []\n\n\ndef release():\n    released.append(True)\n"
    )
    module = implementations.load(str(plugin))
    implementations.release()
    implementations.release()
    assert module.released == [True, True]
