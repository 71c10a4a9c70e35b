"""The one seeded draw of initial weights, shared by every implementation.

The same seed number in NumPy's, PyTorch's and JAX's own generators gives three different
networks, so the weights are drawn once here, in NumPy, and handed to all three.

The reference recipe reproduces the tutorial, which called ``np.random.seed(10)`` and then
``np.random.normal(scale=0.5, size=...)`` for W1, then W2. That is NumPy's legacy global
generator, a ``RandomState``; drawing from a private ``RandomState(seed)`` gives the identical
stream without touching the caller's global random state.
"""

from __future__ import annotations

import numpy as np

from implementations.contract import Network


def initial_weights(net: Network, seed: int, scale: float) -> dict[str, np.ndarray]:
    """Draw ``W1, W2, ...`` in order from ``normal(0, scale)`` with the legacy generator."""
    generator = np.random.RandomState(seed)
    return {
        name: generator.normal(scale=scale, size=shape) for name, shape in net.param_shapes.items()
    }
