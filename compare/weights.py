"""The initial parameters every implementation starts from: drawn once in NumPy, or given.

The same seed number in NumPy's, PyTorch's and JAX's own generators gives three different
networks, so the weights are drawn once here, in NumPy, and handed to all three.

Drawn weights come from one ``numpy.random.RandomState(init_seed)``, ``W1`` first, then ``W2``
and so on, each shaped ``(in, out)``. The tutorial called ``np.random.seed(10)`` and then
``np.random.normal(scale=0.5, size=...)`` for W1, then W2: NumPy's legacy global generator, so
a private ``RandomState(seed)`` gives the identical stream without touching the caller's global
random state. The schemes, with ``s`` the recipe's ``init_scale``, ``fan_in``/``fan_out`` a
layer's input/output width:

* ``normal``: ``N(0, s^2)`` (``s`` default 0.5: the tutorial);
* ``uniform``: ``U[-s, s)`` (``s`` default 0.5);
* ``glorot`` (Glorot and Bengio 2010; torch ``xavier_uniform_``, Keras ``glorot_uniform``):
  ``U[-a, a)`` with ``a = s * sqrt(6 / (fan_in + fan_out))`` (``s`` is the gain, default 1);
* ``he`` (He et al. 2015; torch ``kaiming_normal_`` with fan_in and relu's gain):
  ``N(0, (s * sqrt(2 / fan_in))^2)`` (``s`` default 1);
* ``lecun`` (LeCun et al. 1998): ``N(0, (s * sqrt(1 / fan_in))^2)`` (``s`` default 1).

``he`` and ``lecun`` draw a plain normal, as torch does; Keras' and JAX's ``he_normal`` and
``lecun_normal`` draw a truncated one, so their numbers differ in law, not only in seed.

Biases start at zero unless given: drawing them would shift every later weight's draw.
Explicit parameters come from an NPZ file (``allow_pickle=False``) or from the recipe itself,
named ``W1``, ``b1``, ...; a missing bias is zero, a wrong name or shape is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from compare.recipe import Recipe, RecipeError
from implementations.contract import Network


def initial_params(recipe: Recipe, network: Network) -> dict[str, np.ndarray]:
    """The initial parameters of one run: ``{"W1": (in, out), "b1": (out,), ...}`` float64.

    Raises:
        RecipeError: explicit parameters with a wrong name or shape, or an unreadable file.
    """
    if recipe.explicit_weights:
        return explicit_params(recipe, network)
    return draw(network, recipe.init_scheme, recipe.init_seed, recipe.init_scale)


def initial_params_batch(
    recipe: Recipe, network: Network, seeds: Iterable[int]
) -> dict[str, np.ndarray]:
    """The initial parameters of a seed sweep: each array gains a leading axis ``(S, ...)``,
    point ``i`` being what ``initial_params(recipe.replace(init_seed=seeds[i]), network)``
    draws.

    Raises:
        RecipeError: the recipe's parameters are explicit (no seed to sweep), or a bad seed.
    """
    if recipe.explicit_weights:
        raise RecipeError("explicit initial weights have no seed to sweep")
    points = [initial_params(recipe.replace(init_seed=seed), network) for seed in seeds]
    if not points:
        raise RecipeError("a seed sweep needs at least one seed")
    return {name: np.stack([point[name] for point in points]) for name in network.param_names}


def draw(network: Network, scheme: str, seed: int, scale: float) -> dict[str, np.ndarray]:
    """Draw ``W1, W2, ...`` in order from one ``RandomState(seed)``; biases are zeros."""
    generator = np.random.RandomState(seed)
    params = {}
    for layer in range(1, network.layers + 1):
        fan_in, fan_out = network.widths[layer - 1], network.widths[layer]
        shape = (fan_in, fan_out)
        if scheme == "normal":
            W = generator.normal(scale=scale, size=shape)
        elif scheme == "uniform":
            W = generator.uniform(-scale, scale, size=shape)
        elif scheme == "glorot":
            limit = scale * np.sqrt(6.0 / (fan_in + fan_out))
            W = generator.uniform(-limit, limit, size=shape)
        elif scheme == "he":
            W = generator.normal(scale=scale * np.sqrt(2.0 / fan_in), size=shape)
        elif scheme == "lecun":
            W = generator.normal(scale=scale * np.sqrt(1.0 / fan_in), size=shape)
        else:
            raise RecipeError(f"unknown init scheme {scheme!r}")
        params[f"W{layer}"] = W
        if network.biases:
            params[f"b{layer}"] = np.zeros(fan_out)
    return params


def explicit_params(recipe: Recipe, network: Network) -> dict[str, np.ndarray]:
    """The recipe's explicit parameters, checked against ``network``; missing biases are zero.

    Raises:
        RecipeError: a wrong name or shape (one line naming it), or an unreadable file.
    """
    if recipe.weights_path is not None:
        source = Path(recipe.weights_path).name
        given = _read_npz(recipe.weights_path)
    else:
        source = "the recipe's [init]"
        given = {name: np.asarray(values, dtype=np.float64) for name, values in recipe.weights}
    return check_explicit(given, network, source)


def check_explicit(
    given: Mapping[str, np.ndarray], network: Network, source: str
) -> dict[str, np.ndarray]:
    """``given`` as float64 parameters of ``network``, zero biases filled in.

    Raises:
        RecipeError: an unknown or missing name, a wrong shape, or a non-finite value.
    """
    shapes = network.param_shapes
    for name in given:
        if name not in shapes:
            if name.startswith("b") and name.replace("b", "W", 1) in shapes:
                reason = "the recipe has no biases (set biases)"
            else:
                reason = f"the {network.describe()} network has {', '.join(network.param_names)}"
            raise RecipeError(f"{source} gives {name!r}, but {reason}")
    params = {}
    for name, shape in shapes.items():
        if name not in given:
            if name.startswith("W"):
                raise RecipeError(f"{source} lacks {name}, shaped {shape}")
            params[name] = np.zeros(shape)
            continue
        array = np.asarray(given[name])
        if array.dtype.kind not in "iuf":
            raise RecipeError(f"{source}: {name} must hold numbers, got {array.dtype}")
        if array.shape != shape:
            hint = (
                "; it looks transposed: weights are shaped (in, out)"
                if array.shape == shape[::-1] and len(shape) == 2
                else ""
            )
            raise RecipeError(
                f"{source}: {name} must be shaped {shape} for a "
                f"{'-'.join(map(str, network.widths))} network, got {array.shape}{hint}"
            )
        if not np.all(np.isfinite(array)):
            raise RecipeError(f"{source}: {name} must hold finite numbers only")
        params[name] = array.astype(np.float64)
    return params


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise RecipeError(f"weights file {path!r} not found") from None
    except (OSError, ValueError) as error:
        raise RecipeError(f"cannot read weights file {path!r}: {error}") from None
