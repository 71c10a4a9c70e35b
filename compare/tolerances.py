"""Every tolerance crosscheck judges by, per dtype and per comparison mode, with its reasoning.

Two values agree when ``|a - b| <= atol + rtol * |b|``, ``b`` the reference's value: the
convention of ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close``, with rtol and
atol set together. Every default below is derived from the dtype's machine epsilon ``eps`` (the
gap between 1 and the next representable number: 2.2e-16 in float64, 1.2e-7 in float32,
9.8e-4 in float16, 7.8e-3 in bfloat16), so one rule serves every dtype.

**Synced mode** (every framework evaluates the loss and gradients at the *same* parameters, the
reference's, so nothing has accumulated): two correct implementations then differ only by the
rounding of one forward and one backward pass. Each gradient element is a sum over the ``n``
training rows, and rounding errors in such a sum grow like ``sqrt(n) * eps`` relative to the
sum of the magnitudes of its terms (the probabilistic bound; the worst case is ``n * eps``):

* ``rtol = 8 * sqrt(n) * eps``. The factor 8 covers the few roundings per element before the
  sum (the matmul, the sigmoid and its derivative, the loss derivative). On the reference recipe
  (n = 130) that is 1.1e-5 in float32 and 2.0e-14 in float64; the measured worst element-wise
  disagreement, scaled as below, is 22 eps in float32 (2.6e-6), five times inside. It is
  capped at the independent mode's ``sqrt(eps)``: in float16 and bfloat16 the formula would
  pass a 70% error, while every framework sums those types in float32 and rounds once (the
  NumPy implementation too, as torch's and XLA's CPU kernels do), so their one-step errors are
  a few ULPs of the dtype.
* ``atol = rtol * max|b|``, the quantity's largest reference magnitude over every step. A
  gradient element that passes through zero is the small difference of large terms, so its
  rounding error is set by the size of those terms, not by its own tiny value (measured: errors
  of 1.5e-8 on float32 elements of 1e-5, a relative error of 1e-3 that is pure cancellation).
  Judging it against the quantity's scale is the normwise error bound that numerical analysis
  uses for sums; it still catches a 1% error in the smallest gradient of the run.

**Independent mode** (each framework follows its own trajectory): rounding differences are fed
back into the weights at every step and training amplifies them, so the tolerance must be
loose: ``rtol = sqrt(eps)`` (half the digits) and ``atol = rtol * 1e-3``, which lets values a
thousand times below the O(1) scale of this problem's losses, weights and outputs be judged
absolutely. A wrong formula moves the leading digits (a missing sigmoid factor changes a
gradient by 100%) and still fails. In float64 the amplified rounding stays far inside half the
digits (observed on the reference recipe: 2e-12 relative at worst), so per-step drift is a
reliable failure signal there. In float32 it is not: on the reference recipe the weights
already differ by up to 3.1e-4 relative (2.2e-2 on elements near zero, inside only thanks to
atol), against sqrt(eps) = 3.45e-4, and longer or less well-conditioned runs cross it. That is why
``both`` mode judges float32 (and half precision) trajectories by the synced gradients and the
final test predictions, and only *reports* per-step drift (see ``drift_is_verdict``).

Class predictions and accuracies are compared exactly (``EXACT``): they are what a user sees.

``--rtol`` and ``--atol`` override the defaults; given ``--rtol`` alone, atol follows it by the
same rule as the default (``rtol * max|b|`` in synced mode, ``rtol * 1e-3`` in independent
mode), so a tighter rtol is not silently undone by a default atol.

This module only computes numbers; it imports no framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Machine epsilon of every dtype an implementation computes in. bfloat16 keeps 8 significant
#: bits (NumPy has no ``finfo`` for it without ml_dtypes).
EPS: dict[str, float] = {
    "float64": float(np.finfo(np.float64).eps),
    "float32": float(np.finfo(np.float32).eps),
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,
}

#: Significant bits (the implicit leading bit included) of every dtype, for errors in ULPs.
PRECISION_BITS: dict[str, int] = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}

#: Smallest normal exponent (``frexp`` convention, mantissa in [0.5, 1)), for ULPs near zero.
MIN_EXPONENT: dict[str, int] = {"float64": -1021, "float32": -125, "float16": -13, "bfloat16": -125}

#: Rounding steps per gradient element before its sum over rows (see the module docstring).
SYNCED_SAFETY = 8.0

#: Independent mode: atol is this fraction of rtol (quantities here are of order one).
INDEPENDENT_ATOL_SCALE = 1e-3

#: Comparison modes, and the one ``crosscheck run`` uses by default.
MODES = ("independent", "synced", "both")


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * |b|``."""

    rtol: float
    atol: float


#: Class predictions and accuracies must match exactly: they are what the user sees.
EXACT = Tolerance(rtol=0.0, atol=0.0)


@dataclass(frozen=True)
class ToleranceRule:
    """How one mode sets the tolerance of a quantity.

    Attributes:
        rtol: Relative tolerance.
        atol: A fixed absolute tolerance, or ``None``: ``rtol`` times the largest finite
            magnitude of the reference's series (the quantity's own scale).
    """

    rtol: float
    atol: float | None

    def for_series(self, expected: np.ndarray) -> Tolerance:
        """The tolerance for one reference series."""
        if self.atol is not None:
            return Tolerance(self.rtol, self.atol)
        magnitudes = np.abs(np.asarray(expected, dtype=np.float64))
        finite = magnitudes[np.isfinite(magnitudes)]
        scale = float(finite.max()) if finite.size else 0.0
        return Tolerance(self.rtol, self.rtol * scale)


def independent(dtype: str, rtol: float | None = None, atol: float | None = None) -> ToleranceRule:
    """Independent-mode rule: ``rtol = sqrt(eps)``, ``atol = rtol * 1e-3`` unless given."""
    rtol = math.sqrt(EPS[dtype]) if rtol is None else rtol
    return ToleranceRule(rtol, rtol * INDEPENDENT_ATOL_SCALE if atol is None else atol)


def synced(
    dtype: str, rows: int, rtol: float | None = None, atol: float | None = None
) -> ToleranceRule:
    """Synced-mode rule: ``rtol = min(8 sqrt(rows) eps, sqrt(eps))``, ``atol = rtol * max|b|``.

    Args:
        dtype: The compute dtype.
        rows: Training rows: the length of the sum behind every gradient element.
        rtol: Overrides the derived rtol.
        atol: A fixed atol instead of the scaled one.
    """
    if rtol is None:
        eps = EPS[dtype]
        rtol = min(SYNCED_SAFETY * math.sqrt(max(rows, 1)) * eps, math.sqrt(eps))
    return ToleranceRule(rtol, atol)


def drift_is_verdict(dtype: str, mode: str) -> bool:
    """Whether per-step independent differences decide the verdict (else they are reported).

    In ``independent`` mode they always do: the user asked whether the trajectories match. In
    ``both`` mode only in float64, where the independent tolerance leaves eight orders of
    magnitude between rounding and a failure; in float32 and below training amplifies
    rounding into that range (see the module docstring), and the synced gradients are the test.
    """
    return mode == "independent" or dtype == "float64"


def ulp_scale(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype``'s numbers (one ULP) at each of ``values``' magnitudes.

    Below the smallest normal number the spacing is constant (the subnormal spacing).
    """
    _, exponent = np.frexp(np.abs(np.asarray(values, dtype=np.float64)))
    exponent = np.maximum(exponent, MIN_EXPONENT[dtype])
    return np.ldexp(1.0, exponent - PRECISION_BITS[dtype])


#: Finite-difference oracles (``compare.oracle``), always in float64: a gradient passes when
#: ``|finite difference - gradient| <= ATOL + RTOL * |gradient|`` (scipy's check, in norms). A
#: step of 1e-6 balances
#: truncation (``h^2`` for the central differences of gradcheck and check_grads, ``h`` for
#: scipy's forward differences) against rounding (``eps * |L| / h``, about 1e-11 here); both
#: stay orders of magnitude inside these tolerances, which a wrong gradient (a missing factor,
#: a transpose) exceeds by orders of magnitude. Looser than any comparison of two frameworks,
#: as ``jax.test_util.check_grads`` and ``torch.autograd.gradcheck`` are.
FINITE_DIFFERENCE_STEP = 1e-6
FINITE_DIFFERENCE_RTOL = 1e-4
FINITE_DIFFERENCE_ATOL = 1e-7

#: The Taylor test passes when the observed order of the remainder is within this of 2.
TAYLOR_ORDER_TOLERANCE = 0.25

#: Taylor remainders below this many float64 roundings of the loss are noise and not used.
TAYLOR_NOISE_ROUNDINGS = 1e3
