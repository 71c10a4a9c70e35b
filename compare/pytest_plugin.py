"""A pytest plugin (loaded through the ``pytest11`` entry point) that registers the markers of
``compare.matrix``, so ``-m crosscheck`` and ``-m "not slow"`` work without warnings in any
project that installs crosscheck. It adds no tests and no options.
"""

from __future__ import annotations


def pytest_configure(config) -> None:
    """Register the matrix's markers."""
    config.addinivalue_line("markers", "crosscheck: a framework x dtype x recipe cross-check")
    config.addinivalue_line("markers", "slow: runs a full-length recipe (seconds per case)")
