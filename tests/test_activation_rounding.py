"""The JAX-side activations in float16 and bfloat16 agree with torch's CPU kernels bit for bit.

The contract says elementwise activations and their derivatives compute in float32 and round
once to the 16-bit dtype, as torch's CPU kernels do. ``jax.nn`` rounds after every operation
instead, which put about one bfloat16 sigmoid value in five an ulp off torch's, enough to flip
a saturated binary cross-entropy term. Forward values and ``dL/dZ`` (``jax.vjp`` under
``jax.jit``, times a seeded upstream gradient) are compared with torch autograd on a grid.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")
torch = pytest.importorskip("torch")

import jax  # noqa: E402  (after the skips: optional frameworks)
import jax.numpy as jnp  # noqa: E402

from implementations import flax_nnx, jax_grad, numpy_manual, torch_autograd  # noqa: E402
from implementations.contract import ACTIVATIONS  # noqa: E402

MODULES = {"jax": jax_grad, "flax_nnx": flax_nnx}

#: Below about -3, ``1 + erf(Z / sqrt 2)`` (and the tanh form's ``1 + tanh(u)``) cancel in
#: float32, so every library's GELU there is as good as its erf or tanh and no two agree (torch
#: and the NumPy reference differ too); the grid keeps them where float32 is accurate.
LOWEST_INPUT = {"gelu": -3.0, "gelu_tanh": -3.0}

#: Activations whose float32 formula is computed differently by XLA and torch (erf, tanh of a
#: polynomial): after one rounding, a value that lies within a float32 ulp or two of a 16-bit
#: rounding boundary may still round the other way. At most this fraction, each one ulp off.
#: (``jax.nn.gelu`` rounding after every operation put 10 to 30% off, some by several ulps.)
NEAR_BOUNDARY = {"gelu": 2e-3, "gelu_tanh": 2e-3}


def grid(activation: str, dtype: np.dtype) -> np.ndarray:
    """Inputs in ``dtype``: dense in [lowest, 20] and saturated out to 1e4 on either side."""
    lowest = LOWEST_INPUT.get(activation, -20.0)
    dense = np.linspace(lowest, 20.0, 50_001)
    far = np.geomspace(20.0, 1e4, 500)
    far = np.concatenate([far, -far]) if lowest == -20.0 else far
    return np.concatenate([dense, far]).astype(dtype)


def upstream(size: int, dtype: np.dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(size) * 10.0 ** rng.uniform(-4, 1, size)).astype(dtype)


def torch_values(activation: str, Z: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dtype = getattr(torch, Z.dtype.name)
    Z_torch = torch.tensor(Z.astype(np.float32)).to(dtype).requires_grad_(True)
    A = torch_autograd.ACTIVATIONS[activation](Z_torch)
    (dZ,) = torch.autograd.grad(A, Z_torch, torch.tensor(G.astype(np.float32)).to(dtype))
    return A.detach().float().numpy(), dZ.float().numpy()


def jax_values(module, activation: str, Z: np.ndarray, G: np.ndarray):
    @jax.jit
    def forward_and_backward(Z, G):
        A, pullback = jax.vjp(module.ACTIVATIONS[activation], Z)
        return A, pullback(G)[0]

    A, dZ = forward_and_backward(jnp.asarray(Z), jnp.asarray(G))
    return np.asarray(A, np.float32), np.asarray(dZ, np.float32)


def differences(
    got: np.ndarray, expected: np.ndarray, Z: np.ndarray, dtype: np.dtype, allowed: float
) -> str:
    """An empty string when ``got`` agrees with ``expected``: equal, except that at most a
    fraction ``allowed`` may be one ``dtype`` ulp off; else what differs. NaN equals NaN, and
    values below float32's smallest normal number are not compared: XLA's CPU backend flushes
    float32 subnormals to zero (sigmoid(-88) is 6e-39 in torch, 0 in JAX)."""
    tiny = np.finfo(np.float32).tiny
    same = (
        (got == expected)
        | (np.isnan(got) & np.isnan(expected))
        | (np.abs(expected) < tiny)
        | (np.abs(got) < tiny)
    )
    if same.all():
        return ""
    where = np.flatnonzero(~same)
    bits = np.dtype(f"int{8 * dtype.itemsize}")
    ulps = np.abs(
        got[where].astype(dtype).view(bits).astype(np.int64)
        - expected[where].astype(dtype).view(bits).astype(np.int64)
    )
    if where.size <= allowed * same.size and ulps.max() <= 1:
        return ""
    shown = ", ".join(f"Z={Z[i]:.6g}: {got[i]:.6g} vs {expected[i]:.6g}" for i in where[:3])
    return (
        f"{where.size} / {same.size} ({where.size / same.size:.3%}) differ, up to {ulps.max()} "
        f"ulp ({allowed:.2%} allowed, by 1 ulp), e.g. {shown}"
    )


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("implementation", sorted(MODULES))
def test_16_bit_activation_matches_torch(implementation, activation, dtype_name):
    dtype = numpy_manual.numpy_dtype(dtype_name)
    Z = grid(activation, dtype)
    G = upstream(Z.size, dtype)
    A, dZ = jax_values(MODULES[implementation], activation, Z, G)
    torch_A, torch_dZ = torch_values(activation, Z, G)
    allowed = NEAR_BOUNDARY.get(activation, 0.0)
    message = differences(A, torch_A, Z.astype(np.float32), dtype, allowed)
    assert not message, f"{implementation} {activation} forward in {dtype_name}: {message}"
    if dtype_name == "float16" and activation == "sigmoid":
        # torch 2.x's CPU sigmoid backward rounds float16 after each product
        # (``g * (1 - A) * A`` in Half); the contract's rule is float32, rounded once.
        wide = torch_A
        torch_dZ = ((1 - wide) * wide * G.astype(np.float32)).astype(dtype).astype(np.float32)
    message = differences(dZ, torch_dZ, Z.astype(np.float32), dtype, allowed)
    assert not message, f"{implementation} {activation} backward in {dtype_name}: {message}"


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_wide_dtypes_run_the_jax_rule_without_conversions(activation, dtype):
    """float32 and float64 are computed as before: the same jaxpr as the plain function."""
    Z = jnp.linspace(-5, 5, 11, dtype=dtype)
    rule = jax_grad.ACTIVATIONS[activation]
    jaxpr = jax.make_jaxpr(jax.grad(lambda z: rule(z).sum()))(Z)
    primitives = {str(equation.primitive) for equation in jaxpr.eqns}
    assert "convert_element_type" not in primitives, (
        f"{activation} in {jnp.dtype(dtype).name} converts dtypes: {sorted(primitives)}"
    )


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_16_bit_rule_maps_over_points(activation):
    """``jax.vmap`` (the point axis) gives each row what it gets alone, forward and backward."""
    Z = jnp.linspace(-6, 6, 24, dtype=jnp.bfloat16).reshape(4, 6)
    rule = jax_grad.ACTIVATIONS[activation]

    def value_and_gradient(z):
        return rule(z), jax.grad(lambda z: (rule(z) * z).sum())(z)

    mapped = jax.jit(jax.vmap(value_and_gradient))(Z)
    for row in range(Z.shape[0]):
        alone = value_and_gradient(Z[row])
        for got, expected in zip(mapped, alone, strict=True):
            np.testing.assert_array_equal(
                np.asarray(got[row], np.float32), np.asarray(expected, np.float32)
            )
