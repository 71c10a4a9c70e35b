"""The user-facing pytest matrix (``compare.matrix``), run as part of this suite.

Importing the test function is enough for pytest to collect it here with its parameters and
markers: ``-m "not slow"`` skips the full-length recipes, ``-k torch`` selects by framework.
"""

from compare.matrix import test_framework_agrees_with_numpy  # noqa: F401
