"""Benchmark: how often each implementation's 16-bit activations differ from torch's CPU result.

torch's CPU kernels compute a float16 or bfloat16 activation, and its derivative times the
upstream gradient, in float32 and round once to the dtype; so does the NumPy reference
(``numpy_manual.elementwise``), and the contract says every implementation does. This
measures, for every activation, on a grid of inputs (``GRID_SIZE`` values in [-20, 20] plus
saturated and tiny ones) and one seeded upstream gradient, the fraction of forward values and
of backward values (``dL/dZ`` from ``dL/dA``) where an implementation's result differs in any
bit from torch's and from the NumPy reference's, over the whole grid and over ``Z >= -3``
alone: below about -3 the GELUs' ``1 + erf`` and ``1 + tanh`` cancel in float32, so each
library's value there is as good as its erf or tanh and no two agree. One ulp is enough to flip
a saturated term of a bfloat16 run, so the target is 0. (Values below float32's smallest normal
number count as differences too: XLA's CPU backend flushes them to zero, torch keeps them.)

Usage: ``python benchmarks/activation_rounding.py [--dtypes bfloat16,float16]``
"""

from __future__ import annotations

import argparse

import numpy as np

from implementations.contract import ACTIVATIONS

GRID_SIZE = 100_000

#: Where the GELUs stop cancelling (see the module docstring).
ACCURATE_FROM = -3.0


def inputs(dtype: np.dtype) -> np.ndarray:
    """The grid in ``dtype``: ``GRID_SIZE`` values in [-20, 20], then saturated ones out to
    +-1e4 and tiny ones down to +-1e-6, where the activations round differently."""
    grid = np.linspace(-20, 20, GRID_SIZE)
    far = np.geomspace(20, 1e4, 2_000)
    tiny = np.geomspace(1e-6, 1e-1, 2_000)
    values = np.concatenate([grid, far, -far, tiny, -tiny])
    return values.astype(dtype)


def upstream(dtype: np.dtype, size: int) -> np.ndarray:
    """A seeded upstream gradient ``dL/dA`` in ``dtype``, spread over several decades."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(size) * 10.0 ** rng.uniform(-4, 1, size)).astype(dtype)


def numpy_reference(name: str, Z: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and ``dL/dZ`` as ``numpy_manual.backward`` computes them."""
    from implementations import numpy_manual

    rule = numpy_manual.ACTIVATIONS[name]
    A = rule.function(Z)
    return A, G * rule.derivative(Z, A)


def torch_result(name: str, Z: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and ``dL/dZ`` from torch autograd on the CPU."""
    import torch

    from implementations import torch_autograd

    dtype = getattr(torch, str(Z.dtype))
    Z_torch = torch.tensor(Z.astype(np.float32)).to(dtype).requires_grad_(True)
    A = torch_autograd.ACTIVATIONS[name](Z_torch)
    (dZ,) = torch.autograd.grad(A, Z_torch, torch.tensor(G.astype(np.float32)).to(dtype))
    return A.detach().float().numpy(), dZ.float().numpy()


def jax_result(module, name: str, Z: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and ``dL/dZ`` (``jax.vjp``) of ``module.ACTIVATIONS[name]``, under ``jax.jit``."""
    import jax

    @jax.jit
    def forward_and_backward(Z, G):
        A, pullback = jax.vjp(module.ACTIVATIONS[name], Z)
        return A, pullback(G)[0]

    A, dZ = forward_and_backward(Z, G)
    return np.asarray(A).astype(np.float32), np.asarray(dZ).astype(np.float32)


def mismatch(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Fraction of elements (of those ``where`` selects) that differ (NaN matches NaN)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return float(np.mean(differ if where is None else differ[where]))


def measure(dtypes: tuple[str, ...]) -> list[dict[str, object]]:
    """One row per implementation, dtype and activation: mismatch fractions against torch and
    the NumPy reference, forward and backward."""
    from implementations import flax_nnx, jax_grad, numpy_manual

    rows = []
    for dtype_name in dtypes:
        dtype = numpy_manual.numpy_dtype(dtype_name)
        Z = inputs(dtype)
        G = upstream(dtype, Z.size)
        accurate = Z.astype(np.float32) >= ACCURATE_FROM
        for name in ACTIVATIONS:
            torch_A, torch_dZ = torch_result(name, Z, G)
            numpy_A, numpy_dZ = numpy_reference(name, Z, G)
            candidates = {
                "numpy": (numpy_A, numpy_dZ),
                "jax": jax_result(jax_grad, name, Z, G),
                "flax_nnx": jax_result(flax_nnx, name, Z, G),
            }
            for implementation, (A, dZ) in candidates.items():
                rows.append(
                    {
                        "dtype": dtype_name,
                        "activation": name,
                        "implementation": implementation,
                        "forward_vs_torch": mismatch(A, torch_A),
                        "backward_vs_torch": mismatch(dZ, torch_dZ),
                        "forward_vs_numpy": mismatch(A, numpy_A),
                        "backward_vs_numpy": mismatch(dZ, numpy_dZ),
                        "forward_vs_torch_accurate": mismatch(A, torch_A, accurate),
                        "backward_vs_torch_accurate": mismatch(dZ, torch_dZ, accurate),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bfloat16,float16")
    args = parser.parse_args()
    rows = measure(tuple(args.dtypes.split(",")))
    print(
        f"{'dtype':9} {'activation':11} {'impl':9} "
        f"{'fwd/torch':>10} {'bwd/torch':>10} {'fwd/numpy':>10} {'bwd/numpy':>10} "
        f"{'fwd/torch Z>=-3':>16} {'bwd/torch Z>=-3':>16}"
    )
    for row in rows:
        print(
            f"{row['dtype']:9} {row['activation']:11} {row['implementation']:9} "
            f"{row['forward_vs_torch']:10.4%} {row['backward_vs_torch']:10.4%} "
            f"{row['forward_vs_numpy']:10.4%} {row['backward_vs_numpy']:10.4%} "
            f"{row['forward_vs_torch_accurate']:16.4%} {row['backward_vs_torch_accurate']:16.4%}"
        )


if __name__ == "__main__":
    main()
