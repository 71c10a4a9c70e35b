"""The registry of implementations: built-ins and plugins, found by a spec string, imported lazily.

A *spec* names one implementation module, in any of four ways (tried in this order):

* a built-in's registry name (``NAMES``: ``numpy``, ``torch``, ``jax``, ``torch_nn``,
  ``flax_nnx``);
* a path to a Python file, ``path/to/impl.py`` (anything ending in ``.py`` or holding a path
  separator), imported under a module name of its own derived from its absolute path;
* the name of an entry point in the group ``crosscheck.implementations`` (``ENTRY_POINT_GROUP``)
  that an installed package declares, e.g. ``autograd = "crosscheck_autograd.implementation"``;
* a dotted module path, ``pkg.module``.

Design rules:

* Nothing is imported until it is asked for, so the core (NumPy) works without torch or JAX
  installed and JAX's x64 switch is flipped before any JAX array exists. ``check_available``
  and ``available`` never import a framework.
* A built-in whose framework is missing raises ``FrameworkUnavailable`` with the line that
  installs it. A plugin that fails to import, or that breaks the contract
  (``implementations.contract.REQUIRED``), raises ``PluginError``: one line naming the plugin
  and what is wrong. An unknown spec raises ``UnknownFramework``.
* ``load`` is a function of the spec string alone, so a worker process loads exactly what its
  parent loaded (a relative path is resolved against the working directory, which workers
  share with their parent).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from implementations import contract

#: The entry-point group through which installed packages register implementations.
ENTRY_POINT_GROUP = "crosscheck.implementations"

#: What kind of code an implementation is, for the README's framework table and ``available``.
KINDS = {
    "by hand": "every derivative and update written out in NumPy",
    "functional autodiff": "a loss function differentiated by the framework's autodiff",
    "idiomatic library": "the framework's own layers, losses and optimizers, as its users write",
    "plugin": "an implementation from outside crosscheck",
}


@dataclass(frozen=True)
class Builtin:
    """A built-in implementation.

    Attributes:
        name: Registry name.
        module: Its module path.
        packages: The top-level packages it imports (a missing one is a missing framework).
        extra: The pip requirement that installs them.
        kind: One of ``KINDS``.
    """

    name: str
    module: str
    packages: tuple[str, ...]
    extra: str
    kind: str

    @property
    def install_line(self) -> str:
        """The command that installs this implementation's framework."""
        return f"pip install -c constraints.txt '{self.extra}'"


BUILTINS: dict[str, Builtin] = {
    builtin.name: builtin
    for builtin in (
        Builtin("numpy", "implementations.numpy_manual", ("numpy",), "crosscheck", "by hand"),
        Builtin(
            "torch",
            "implementations.torch_autograd",
            ("torch",),
            "crosscheck[torch]",
            "functional autodiff",
        ),
        Builtin(
            "jax",
            "implementations.jax_grad",
            ("jax", "optax"),
            "crosscheck[jax]",
            "functional autodiff",
        ),
        Builtin(
            "torch_nn",
            "implementations.torch_nn",
            ("torch",),
            "crosscheck[torch]",
            "idiomatic library",
        ),
        Builtin(
            "flax_nnx",
            "implementations.flax_nnx",
            ("jax", "optax", "flax"),
            "crosscheck[jax]",
            "idiomatic library",
        ),
    )
}

#: The built-ins' registry names.
NAMES = tuple(BUILTINS)


class FrameworkUnavailable(ImportError):
    """A built-in implementation whose framework is not installed (the message says what to
    install)."""


class PluginError(Exception):
    """A plugin that cannot be used: it fails to import or breaks the contract (one line)."""


class UnknownFramework(KeyError):
    """A spec that names no built-in, plugin, file or module."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Available:
    """One implementation ``available`` lists.

    Attributes:
        name: The spec that loads it (registry or entry-point name).
        kind: One of ``KINDS``.
        origin: ``"built-in"`` or ``"plugin from <distribution> <version>"``.
        installed: Whether its framework can be imported (plugins: whether it is installed).
        install_line: How to install what is missing (empty when nothing is).
    """

    name: str
    kind: str
    origin: str
    installed: bool
    install_line: str = ""


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    # Read afresh each time: a plugin installed while this process runs (a test) is found.
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _last_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip().splitlines()[-1]


def _unknown(spec: str) -> UnknownFramework:
    plugins = sorted(_entry_points())
    choices = ", ".join([*NAMES, *plugins])
    return UnknownFramework(
        f"unknown framework {spec!r}: not a built-in, an installed plugin, a .py file or an "
        f"importable module; choose from {choices}, or give path/to/impl.py or pkg.module"
    )


def load(spec: str) -> ModuleType:
    """Import and return the implementation module ``spec`` names, checked against the contract.

    Args:
        spec: A built-in name, an entry-point name, ``path/to/impl.py`` or ``pkg.module``.

    Raises:
        UnknownFramework: ``spec`` names nothing.
        FrameworkUnavailable: a built-in's framework is not installed.
        PluginError: a plugin fails to import or breaks the contract.
    """
    if spec in BUILTINS:
        return _load_builtin(BUILTINS[spec])
    if _is_path(spec):
        module = _import_path(spec)
    elif spec in (points := _entry_points()):
        module = _import_entry_point(spec, points[spec])
    elif _module_exists(spec):
        module = _import_plugin(spec, lambda: importlib.import_module(spec))
    else:
        raise _unknown(spec)
    validate(module, spec)
    builtin = BUILTINS.get(module.NAME)
    if builtin is not None and module.__name__ != builtin.module:
        raise PluginError(
            f"plugin {spec!r}: its NAME {module.NAME!r} is the built-in {builtin.module}'s; "
            "choose another"
        )
    _PLUGINS[module.__name__] = module
    return module


#: Every plugin module ``load`` returned, by module name (``release`` calls their hooks).
_PLUGINS: dict[str, ModuleType] = {}


def release() -> None:
    """Call the optional ``release()`` of every implementation this process has imported
    (built-ins, and plugins ``load`` returned; ``implementations.contract``): what they
    compiled for past problems is dropped, so a long in-process run does not accumulate it."""
    modules = [sys.modules.get(builtin.module) for builtin in BUILTINS.values()]
    for module in (*modules, *_PLUGINS.values()):
        hook = getattr(module, "release", None)
        if callable(hook):
            hook()


def _load_builtin(builtin: Builtin) -> ModuleType:
    try:
        return importlib.import_module(builtin.module)
    except ImportError as error:
        if error.name is None or error.name.split(".")[0] not in builtin.packages:
            raise  # a bug in our own module, not a missing framework
        raise FrameworkUnavailable(
            f"{builtin.name} is not installed ({error}); install it with: {builtin.install_line}"
        ) from error


def _import_plugin(spec: str, importer: Callable[[], object]) -> ModuleType:
    try:
        return importer()  # type: ignore[return-value]
    except Exception as error:  # any failure while importing a third party's code
        raise PluginError(f"plugin {spec!r} failed to import: {_last_line(error)}") from error


def _import_path(spec: str) -> ModuleType:
    path = Path(spec).resolve()
    if not path.is_file():
        raise PluginError(f"plugin {spec!r}: no such file {str(path)!r}")
    # One module name per file, so two files called impl.py do not replace each other and the
    # same file loaded twice is the same module.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"crosscheck_plugin_{path.stem.replace('-', '_')}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]

    def importer() -> ModuleType:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        # Registered while it executes: dataclasses and typing look a class's module up by name.
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module

    return _import_plugin(spec, importer)


def _import_entry_point(spec: str, point: importlib.metadata.EntryPoint) -> ModuleType:
    module = _import_plugin(spec, point.load)
    name = getattr(module, "NAME", None)
    if isinstance(name, str) and name != spec:
        raise PluginError(
            f"plugin {spec!r}: the entry point {spec!r} ({point.value}) loads an implementation "
            f"whose NAME is {name!r}; they must be the same"
        )
    return module


def _module_exists(spec: str) -> bool:
    if not all(part.isidentifier() for part in spec.split(".")):
        return False
    try:
        return importlib.util.find_spec(spec) is not None
    except (ImportError, ValueError):
        return False  # its parent package is missing


#: How the contract calls each function: positional arguments, then keyword arguments.
_CALLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "train": (("problem", "initial", "X", "Y", "steps"), ("chunk", "sink", "progress")),
    "step": (("problem", "states", "X", "Y", "rows"), ()),
    "loss_and_grads": (("problem", "params", "X", "Y"), ()),
    "predict": (("problem", "params", "X"), ()),
    "precision_environment": ((), ()),
    "gradient_check": (("problem", "params", "X", "Y"), ("step", "atol", "rtol")),
    "autodiff_view": (("problem", "params", "X", "Y"), ()),
}


def validate(module: object, spec: str | None = None) -> None:
    """Check that ``module`` provides the contract's names, of the right kinds.

    Checks: every name in ``contract.REQUIRED`` is defined; ``NAME`` is a plain name;
    ``DTYPES`` is a non-empty tuple or list of ``contract.DTYPES``;
    ``SUPPORTS``, when given, is a ``contract.Support`` within the contract's lists; every
    function can be called the way the contract calls it.

    Args:
        module: The implementation module (or any object with those attributes).
        spec: How it was named, for the message (default: its ``NAME`` or module name).

    Raises:
        PluginError: the first thing that is wrong, in one line.
    """
    label = spec or getattr(module, "NAME", None) or getattr(module, "__name__", repr(module))

    def fail(problem: str) -> PluginError:
        return PluginError(f"plugin {label!r}: {problem}")

    missing = [name for name in contract.REQUIRED if not hasattr(module, name)]
    if missing:
        raise fail(
            f"does not define {', '.join(missing)} (every implementation defines "
            f"{', '.join(contract.REQUIRED)}; see docs/plugins.md)"
        )
    name = module.NAME
    if not isinstance(name, str) or not name or any(c in name for c in ",/ \t\n"):
        raise fail(
            f"NAME must be a non-empty string without commas, slashes or spaces, got {name!r}"
        )
    _validate_dtypes(module.DTYPES, fail)
    supports = getattr(module, "SUPPORTS", None)
    if supports is not None:
        _validate_support(supports, fail)
    for function, (positional, keywords) in _CALLS.items():
        if function not in contract.REQUIRED and not hasattr(module, function):
            continue
        target = getattr(module, function)
        if not callable(target):
            raise fail(f"{function} must be a function, got {type(target).__name__}")
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            continue  # a builtin or extension function: nothing to inspect
        try:
            signature.bind(*positional, **{keyword: None for keyword in keywords})
        except TypeError as error:
            call = ", ".join([*positional, *(f"{k}=..." for k in keywords)])
            raise fail(f"{function} cannot be called as {function}({call}): {error}") from None


def _validate_dtypes(dtypes: object, fail: Callable[[str], PluginError]) -> None:
    if isinstance(dtypes, str) or not isinstance(dtypes, tuple | list) or not dtypes:
        raise fail(
            f"DTYPES must be a non-empty tuple of dtype names such as ('float64', 'float32'), "
            f"got {dtypes!r}"
        )
    unknown = [dtype for dtype in dtypes if dtype not in contract.DTYPES]
    if unknown:
        raise fail(f"DTYPES holds {unknown[0]!r}, not one of {', '.join(contract.DTYPES)}")


def _validate_support(supports: object, fail: Callable[[str], PluginError]) -> None:
    if not isinstance(supports, contract.Support):
        raise fail(
            f"SUPPORTS must be an implementations.contract.Support, got {type(supports).__name__}"
        )
    for field, known in (
        ("activations", contract.ACTIVATIONS),
        ("losses", contract.LOSSES),
        ("optimizers", contract.OPTIMIZERS),
        ("dtypes", contract.DTYPES),
    ):
        values = getattr(supports, field)
        if isinstance(values, str) or not isinstance(values, tuple | list):
            raise fail(f"SUPPORTS.{field} must be a tuple of names, got {values!r}")
        unknown = [value for value in values if value not in known]
        if unknown:
            raise fail(f"SUPPORTS.{field} holds {unknown[0]!r}, not one of {', '.join(known)}")


def support(module: object) -> contract.Support:
    """What ``module`` covers: its ``SUPPORTS`` (default: everything), dtypes limited to its
    ``DTYPES``."""
    declared = getattr(module, "SUPPORTS", None) or contract.Support()
    dtypes = tuple(dtype for dtype in declared.dtypes if dtype in tuple(module.DTYPES))
    return contract.Support(
        activations=tuple(declared.activations),
        losses=tuple(declared.losses),
        optimizers=tuple(declared.optimizers),
        dtypes=dtypes,
        biases=declared.biases,
        minibatches=declared.minibatches,
    )


def check_available(spec: str) -> None:
    """Raise as ``load`` would for a missing framework, file or plugin, without importing any
    framework (a cheap look-up; a plugin's own import errors show only when it is loaded).

    Raises:
        UnknownFramework: ``spec`` names nothing.
        FrameworkUnavailable: a built-in's framework is not installed.
        PluginError: ``spec`` is a path to a file that does not exist.
    """
    if spec in BUILTINS:
        builtin = BUILTINS[spec]
        missing = [p for p in builtin.packages if importlib.util.find_spec(p) is None]
        if missing:
            raise FrameworkUnavailable(
                f"{spec} is not installed (no {missing[0]}); install it with: "
                f"{builtin.install_line}"
            )
        return
    if _is_path(spec):
        if not Path(spec).is_file():
            raise PluginError(f"plugin {spec!r}: no such file {str(Path(spec).resolve())!r}")
        return
    if spec in _entry_points() or _module_exists(spec):
        return
    raise _unknown(spec)


def available() -> list[Available]:
    """Every built-in and every installed plugin (entry point), without importing either."""
    listed = []
    for builtin in BUILTINS.values():
        installed = all(importlib.util.find_spec(p) is not None for p in builtin.packages)
        listed.append(
            Available(
                builtin.name,
                builtin.kind,
                "built-in",
                installed,
                "" if installed else builtin.install_line,
            )
        )
    for name, point in sorted(_entry_points().items()):
        distribution = point.dist
        origin = (
            f"plugin from {distribution.name} {distribution.version}"
            if distribution is not None
            else f"plugin {point.value}"
        )
        listed.append(Available(name, "plugin", origin, True))
    return listed
