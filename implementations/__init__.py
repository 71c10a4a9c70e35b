"""The registry of implementations: name -> module, imported lazily.

A framework is imported only when its implementation is first asked for, so the core (NumPy)
works without torch or JAX installed, and JAX's x64 switch is flipped before any JAX array
exists. A missing framework becomes ``FrameworkUnavailable`` with the command that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: Registry name -> (module path, the package it needs, the pip extra that installs it).
IMPLEMENTATIONS: dict[str, tuple[str, str, str]] = {
    "numpy": ("implementations.numpy_manual", "numpy", "crosscheck"),
    "torch": ("implementations.torch_autograd", "torch", "crosscheck[torch]"),
    "jax": ("implementations.jax_grad", "jax", "crosscheck[jax]"),
}

NAMES = tuple(IMPLEMENTATIONS)


class FrameworkUnavailable(ImportError):
    """A registered implementation whose framework cannot be imported."""


def load(name: str) -> ModuleType:
    """Import and return the implementation module registered as ``name``.

    Raises:
        KeyError: ``name`` is not registered.
        FrameworkUnavailable: its framework is not installed (the message says what to install).
    """
    if name not in IMPLEMENTATIONS:
        raise KeyError(f"unknown framework {name!r}; choose from {', '.join(NAMES)}")
    module_path, package, extra = IMPLEMENTATIONS[name]
    try:
        return importlib.import_module(module_path)
    except ImportError as error:
        if error.name is None or error.name.split(".")[0] != package:
            raise  # a bug in our own module, not a missing framework
        raise FrameworkUnavailable(
            f"{name} is not installed ({error}); install it with: "
            f"pip install -c constraints.txt '{extra}'"
        ) from error


def check_available(name: str) -> None:
    """Raise as ``load`` would, but without importing the framework (a cheap look-up).

    Raises:
        KeyError: ``name`` is not registered.
        FrameworkUnavailable: its framework is not installed.
    """
    if name not in IMPLEMENTATIONS:
        raise KeyError(f"unknown framework {name!r}; choose from {', '.join(NAMES)}")
    _, package, extra = IMPLEMENTATIONS[name]
    if importlib.util.find_spec(package) is None:
        raise FrameworkUnavailable(
            f"{name} is not installed; install it with: pip install -c constraints.txt '{extra}'"
        )
