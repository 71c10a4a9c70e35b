"""crosscheck: train the same network in NumPy (by hand), PyTorch and JAX, and check they agree.

The library's front door::

    from compare import Recipe, check
    result = check(Recipe(steps=200))
    result.verdict  # "pass" or "fail"

``Recipe`` (``compare.recipe``) says what to train; ``check`` (``compare.check``) trains every
framework, compares them and reaches the verdict; ``check_seeds`` does so for many
initial-weight seeds in one run (trained side by side, each judged alone). They are imported on
first use, so importing ``compare`` (as every worker process does) imports nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compare.check import CheckResult, check, check_seeds
    from compare.recipe import Recipe

__all__ = ["CheckResult", "Recipe", "check", "check_seeds"]


def __getattr__(name: str):
    if name in ("check", "check_seeds", "CheckResult"):
        module = importlib.import_module("compare.check")
        # Importing the submodule bound ``compare.check`` to it; the public name is the
        # function (the module stays callable for code that imported it first).
        globals()["check"] = module.check
        return getattr(module, name)
    if name == "Recipe":
        return importlib.import_module("compare.recipe").Recipe
    raise AttributeError(f"module 'compare' has no attribute {name!r}")
