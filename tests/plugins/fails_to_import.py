"""A plugin whose import fails (a dependency it needs is missing)."""

from __future__ import annotations

import a_module_that_is_not_installed  # noqa: F401

NAME = "fails_to_import"
