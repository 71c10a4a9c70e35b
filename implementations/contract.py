"""The contract every implementation meets, in NumPy terms only.

Design rules, fixed once here and followed by every implementation (built in or plugin):

* **The network.** A stack of dense layers. Layer ``l`` (counted from 1) computes
  ``Z_l = A_{l-1} @ W_l (+ b_l)`` and ``A_l = activation_l(Z_l)``, with ``A_0 = X``. Weights are
  shaped ``(in, out)`` and biases ``(out,)``. An implementation whose framework stores weights
  another way (torch ``nn.Linear``: ``(out, in)``) converts at its own edge.
* **The loss** is one of ``LOSSES`` on a batch of ``R`` rows with ``O`` outputs (``A`` the last
  layer's output, ``Y`` the targets shaped ``(R, O)``):

  - ``half-mse``: ``sum((A - Y)**2) / (2 * R * O)`` (the tutorial's, the default);
  - ``mse``: ``sum((A - Y)**2) / (R * O)`` (torch ``MSELoss``, Keras);
  - ``half-sse``: ``sum((A - Y)**2) / 2`` (the textbook ``E = 1/2 sum (t - o)^2``);
  - ``cross-entropy``: ``-sum(Y * log_softmax(A)) / R``; ``A`` are logits, so the output
    activation must be ``identity`` (torch ``CrossEntropyLoss`` with probability targets,
    ``optax.softmax_cross_entropy``);
  - ``binary-cross-entropy``: ``-sum(Y log A + (1 - Y) log1p(-A)) / (R * O)`` on sigmoid
    outputs, each log clamped below at ``BCE_LOG_FLOOR`` as torch ``BCELoss`` does, and its
    derivative ``(A - Y) / max(A (1 - A), BCE_GRAD_EPS) / (R * O)`` as torch's backward
    computes it; the output activation must be ``sigmoid``.
* **The optimizer** is ``Optimizer``; its formulas are torch's, written out in its docstring.
  Its state (``state_names``) is part of the training state and is recorded and compared like
  the weights.
* **Steps** count updates from 0. State ``k`` is the parameters and optimizer state before
  update ``k``; a run of ``steps`` updates has ``steps + 1`` states; step ``k``'s loss,
  gradient and correct count are taken at state ``k`` on batch ``k`` (``Batches``). The last
  state (``k = steps``) is recorded with its loss and gradient on batch ``steps`` too, though no
  update follows it.
* **Points.** Every parameter and state array carries a leading *point* axis ``P``: ``train``
  trains ``P`` independent networks at once (a batch of seeds; ``P = 1`` for a plain run), and
  ``step`` evaluates ``P`` unrelated states at once (the reference's states of many steps).
  The points share nothing: each one's numbers must be what it would get alone (up to the
  rounding of a batched matrix product, which may differ from a single one in the last bit).
* **Records** are dicts from quantity name (``QUANTITY NAMES`` below) to float64 NumPy arrays.
  Every array that crosses this boundary is NumPy; implementations compute natively in the
  requested dtype and hand back float64 (``int64`` for ``train_correct``).
* **Randomness**: only the recipe's NumPy draws (initial weights, split, batch order).
  Implementations never draw random numbers.

Quantity names (keys of ``State`` and of records):

* ``weight:W1``, ``bias:b1``: parameters;
* ``state:step`` (the optimizer's update count, a float scalar per point), ``state:momentum:W1``
  (SGD's momentum buffer), ``state:m:W1`` and ``state:v:W1`` (Adam's moments): optimizer state;
* ``loss``, ``grad:W1``, ``grad:b1``, ``train_correct`` (rows of the batch whose top output is
  the top target): what step ``k`` computed at state ``k``.

An implementation module provides (``REQUIRED`` and ``OPTIONAL`` list the names):

* ``NAME``: its registry name; ``DTYPES``: the dtypes it computes in natively;
  ``SUPPORTS``: optional ``Support`` saying which activations, losses, optimizers and features
  it covers (default: everything in this module).
* ``train(problem, initial, X, Y, steps, *, chunk, sink, progress=None) -> None``: train from
  ``initial`` (a ``State`` with point axis ``P``) for ``steps`` updates on ``X (N, in)``,
  ``Y (N, O)`` using the rows ``problem.batches`` names at each step; hand the records of states
  ``[start, stop)`` to ``sink(start, records)`` in order, at most ``chunk`` states at a time,
  every array shaped ``(stop - start, P, ...)`` (``train_correct``: ``(stop - start, P)``).
  The records of ``steps + 1`` states are handed over in all; nothing need be kept after a
  chunk is handed over. ``progress(states_done)`` may be called at any time.
* ``step(problem, states, X, Y, rows) -> (records, next_states)``: one full training step from
  each of ``P`` states at once: ``records`` as ``train`` would record at those states (arrays
  ``(P, ...)``), and ``next_states`` the states after the update. ``rows`` is ``None`` (every
  point uses all of ``X``), an int array ``(P, R)`` (the training rows of each point's batch),
  or a sequence of ``P`` int arrays when the batches differ in length (an epoch's last,
  partial batch).
* In float16 and bfloat16, sums (matrix products, the loss's sum and its mean) accumulate in
  float32 and round once to the dtype, as torch's and XLA's CPU kernels do. Elementwise
  activations and their derivatives compute in float32 and round once to the dtype, as torch's
  CPU kernels do (``jax.nn``'s functions round after every operation instead).
* ``loss_and_grads(problem, params, X, Y) -> (losses (P,), grads {quantity: (P, ...)})``: the
  loss and gradient at ``P`` parameter points on all of ``X``, without any update.
* ``predict(problem, params, X) -> (P, R, O)``: the network output for ``P`` parameter points.
* optional ``precision_environment() -> dict``: the switches that decide its precision.
* optional ``release() -> None``: drop what it compiled and cached for past problems. JAX's
  compiled executables each hold memory mappings (about 330 for one check): a process that
  checks a few hundred recipes in threads reaches the kernel's map limit (``vm.max_map_count``,
  65,530) and LLVM fails to allocate. ``implementations.release`` calls it between sweep cells
  run in-process.
* optional ``gradient_check(problem, params, X, Y, *, step, atol, rtol) -> dict``: runs its
  own library's finite-difference checker (``scipy.optimize.check_grad``,
  ``torch.autograd.gradcheck``, ``jax.test_util.check_grads``) at one point (parameters with
  no point axis), in float64, with finite-difference step ``step`` and tolerances ``atol``,
  ``rtol`` chosen by the caller (``compare.oracle``, which owns the thresholds); returns
  ``{"checker": str, "passed": bool, "error": float | None, "detail": str}`` (``error``: the
  greatest ``|finite difference - gradient|`` where the checker reports one).
* optional ``autodiff_view(problem, params, X, Y) -> dict``: at one point (parameters with no
  point axis, or a point axis of length 1; gradients returned without it), what its autodiff
  did, for
  ``crosscheck explain``: ``{"title": str, "text": str (ready-to-print lines), "loss": float,
  "grads": {name: array}}`` plus implementation-specific structured keys (NumPy: ``"factors"``,
  the named chain-rule factors per layer; torch: ``"nodes"``, the autograd graph; JAX:
  ``"jaxpr"`` and ``"inputs"``).

This module must not import any framework.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: Activations every built-in implementation provides, by name. ``gelu`` is the exact form
#: (``x * Phi(x)``, torch's default); ``gelu_tanh`` the tanh approximation (``jax.nn.gelu``'s
#: default). ``leaky_relu`` has slope ``LEAKY_RELU_SLOPE`` below zero. At exactly 0, relu's
#: derivative is 0 and leaky_relu's is the slope: torch's convention (``jax.nn.leaky_relu`` takes
#: the slope 1 there, so JAX-side implementations write it out).
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "gelu_tanh", "identity")
LEAKY_RELU_SLOPE = 0.01

#: Losses, by name (formulas in the module docstring).
LOSSES = ("half-mse", "mse", "half-sse", "cross-entropy", "binary-cross-entropy")

#: torch ``BCELoss`` clamps each log at -100 so that a saturated output gives a finite loss,
#: and its backward divides by ``max(A (1 - A), 1e-12)`` with 1e-12 a float32 constant.
BCE_LOG_FLOOR = -100.0
BCE_GRAD_EPS = float(np.float32(1e-12))

#: Optimizers, by name (formulas in ``Optimizer``).
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")

#: Dtypes an implementation may be asked to compute in.
DTYPES = ("float64", "float32", "float16", "bfloat16")

#: Names every implementation module must define, and names it may define.
REQUIRED = ("NAME", "DTYPES", "train", "step", "loss_and_grads", "predict")
OPTIONAL = ("SUPPORTS", "precision_environment", "gradient_check", "autodiff_view", "release")

#: A training state or a set of parameters: quantity name -> array (leading point axis).
State = dict[str, np.ndarray]
Params = Mapping[str, np.ndarray]
#: ``sink(start, records)``: receives the records of states ``[start, start + n)``.
Sink = Callable[[int, dict[str, np.ndarray]], None]
#: ``progress(states_done)``.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Network:
    """The shape of a dense network, its activations, biases and loss.

    Attributes:
        widths: Input width, hidden widths, output width, e.g. ``(4, 2, 3)``.
        activations: One activation name per layer (``len(widths) - 1`` of them).
        biases: Whether every layer adds a bias ``b_l`` shaped ``(out,)``.
        loss: One of ``LOSSES``.
    """

    widths: tuple[int, ...]
    activations: tuple[str, ...]
    biases: bool = False
    loss: str = "half-mse"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "activations", tuple(self.activations))
        if len(self.widths) < 2:
            raise ValueError("a network needs at least an input and an output width")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"layer widths must be positive integers, got {self.widths}")
        if len(self.activations) != self.layers:
            raise ValueError(
                f"{self.layers} layers need {self.layers} activations, got {len(self.activations)}"
            )
        unknown = sorted(set(self.activations) - set(ACTIVATIONS))
        if unknown:
            raise ValueError(f"unknown activation {unknown[0]!r}; choose from {ACTIVATIONS}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {LOSSES}")
        if self.loss == "cross-entropy" and self.activations[-1] != "identity":
            raise ValueError(
                "cross-entropy takes the last layer's output as logits, so the output "
                f"activation must be identity, not {self.activations[-1]} (a softmax or sigmoid "
                "before a loss that applies its own softmax is the classic bug)"
            )
        if self.loss == "binary-cross-entropy" and self.activations[-1] != "sigmoid":
            raise ValueError(
                "binary-cross-entropy takes probabilities, so the output activation must be "
                f"sigmoid, not {self.activations[-1]}"
            )

    @property
    def layers(self) -> int:
        """Number of dense layers."""
        return len(self.widths) - 1

    @property
    def weight_names(self) -> tuple[str, ...]:
        """``("W1", "W2", ...)``, input side first."""
        return tuple(f"W{layer}" for layer in range(1, self.layers + 1))

    @property
    def bias_names(self) -> tuple[str, ...]:
        """``("b1", "b2", ...)``, or ``()`` without biases."""
        return tuple(f"b{layer}" for layer in range(1, self.layers + 1)) if self.biases else ()

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter, layer by layer: ``("W1", "b1", "W2", "b2")`` (no ``b`` without
        biases)."""
        names = []
        for layer in range(1, self.layers + 1):
            names.append(f"W{layer}")
            if self.biases:
                names.append(f"b{layer}")
        return tuple(names)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape: ``(in, out)`` for weights, ``(out,)`` for biases."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(1, self.layers + 1):
            shapes[f"W{layer}"] = (self.widths[layer - 1], self.widths[layer])
            if self.biases:
                shapes[f"b{layer}"] = (self.widths[layer],)
        return shapes

    @property
    def param_quantities(self) -> dict[str, str]:
        """Parameter name -> quantity name: ``{"W1": "weight:W1", "b1": "bias:b1", ...}``."""
        return {name: param_quantity(name) for name in self.param_names}

    @property
    def size(self) -> int:
        """Number of parameters."""
        return sum(math.prod(shape) for shape in self.param_shapes.values())

    def describe(self) -> str:
        """``"4-2-3 (sigmoid, sigmoid), biases, cross-entropy"``."""
        text = "-".join(map(str, self.widths)) + f" ({', '.join(self.activations)})"
        if self.biases:
            text += ", biases"
        return text + f", {self.loss}"


def param_quantity(name: str) -> str:
    """``"W1"`` -> ``"weight:W1"``, ``"b1"`` -> ``"bias:b1"``."""
    return ("weight:" if name.startswith("W") else "bias:") + name


def grad_quantity(name: str) -> str:
    """``"W1"`` -> ``"grad:W1"``."""
    return f"grad:{name}"


@dataclass(frozen=True)
class Optimizer:
    """The update rule and its hyperparameters. The formulas are torch's (``torch.optim``).

    With ``g`` the gradient of parameter ``p`` at state ``k`` and ``t = k + 1``:

    * ``sgd``: ``g <- g + weight_decay * p`` (L2, as torch's ``SGD(weight_decay)``);
      ``p <- p - lr * g``. No state.
    * ``momentum`` (torch ``SGD(momentum=mu)``): ``g <- g + weight_decay * p``; the buffer is
      ``buf <- g`` at the first update (``state:step == 0``: torch applies no dampening then),
      else ``buf <- mu * buf + (1 - dampening) * g``; then ``g <- g + mu * buf`` with
      ``nesterov``, else ``g <- buf``; ``p <- p - lr * g``. State: ``state:step``,
      ``state:momentum:<p>`` (zeros before the first update).
    * ``adam`` (torch ``Adam``, L2 decay): ``g <- g + weight_decay * p``;
      ``m <- beta1 m + (1 - beta1) g``; ``v <- beta2 v + (1 - beta2) g^2``;
      ``p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)`` (eps outside the
      square root). State: ``state:step``, ``state:m:<p>``, ``state:v:<p>``.
    * ``adamw`` (torch ``AdamW``, decoupled decay): ``p <- p * (1 - lr * weight_decay)``, then
      the Adam update above with no L2 term.

    ``state:step`` counts the updates already applied (0 at state 0).

    Attributes:
        name: One of ``OPTIMIZERS``.
        lr: Learning rate.
        momentum: ``mu`` of ``momentum``.
        dampening: Of ``momentum``.
        nesterov: Of ``momentum``.
        beta1: Of ``adam`` and ``adamw``.
        beta2: Of ``adam`` and ``adamw``.
        eps: Of ``adam`` and ``adamw`` (added outside the square root).
        weight_decay: L2 coefficient (``sgd``, ``momentum``, ``adam``) or decoupled decay
            (``adamw``).
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose from {OPTIMIZERS}")
        if self.name == "momentum" and self.momentum <= 0:
            # torch's SGD keeps no buffer without momentum: that is the sgd optimizer.
            raise ValueError("the momentum optimizer needs momentum > 0 (use sgd without it)")
        if self.nesterov and self.dampening != 0:
            raise ValueError("Nesterov momentum requires zero dampening (as torch.optim.SGD)")

    def state_kinds(self) -> tuple[str, ...]:
        """The per-parameter buffers: ``()``, ``("momentum",)`` or ``("m", "v")``."""
        return {"sgd": (), "momentum": ("momentum",), "adam": ("m", "v"), "adamw": ("m", "v")}[
            self.name
        ]

    def state_names(self, net: Network) -> tuple[str, ...]:
        """Every optimizer-state quantity: ``()`` for sgd, else ``("state:step", ...)``."""
        if self.name == "sgd":
            return ()
        buffers = tuple(
            f"state:{kind}:{name}" for kind in self.state_kinds() for name in net.param_names
        )
        return ("state:step", *buffers)


@dataclass(frozen=True)
class Batches:
    """Which training rows step ``k`` uses: one seeded order, the same for every framework.

    ``size == 0`` (or ``size >= rows``) is full-batch training: every step uses every row, in
    order. Otherwise each epoch is a fresh permutation of the rows drawn from
    ``numpy.random.default_rng((seed, epoch))``, cut into batches of ``size`` rows in order;
    the last, partial batch of an epoch is kept. Any step's rows are computed directly, so a
    run of 10^9 steps needs no table of them.

    Attributes:
        rows: Number of training rows.
        size: Rows per batch (0: all of them).
        seed: Seed of the batch order.
    """

    rows: int
    size: int = 0
    seed: int = 0

    @property
    def full(self) -> bool:
        """Every step uses every row."""
        return self.size <= 0 or self.size >= self.rows

    @property
    def per_epoch(self) -> int:
        """Batches per epoch."""
        return 1 if self.full else -(-self.rows // self.size)

    def indices(self, step: int) -> np.ndarray:
        """The training rows of step ``step``, as an int64 array."""
        if self.full:
            return np.arange(self.rows)
        epoch, position = divmod(int(step), self.per_epoch)
        order = np.random.default_rng((self.seed, epoch)).permutation(self.rows)
        return order[position * self.size : (position + 1) * self.size]

    def chunk(self, start: int, stop: int) -> list[np.ndarray]:
        """The rows of steps ``start .. stop - 1``."""
        if self.full:
            rows = np.arange(self.rows)
            return [rows] * (stop - start)
        out, cached = [], {}
        for step in range(start, stop):
            epoch, position = divmod(step, self.per_epoch)
            if epoch not in cached:
                cached.clear()
                cached[epoch] = np.random.default_rng((self.seed, epoch)).permutation(self.rows)
            out.append(cached[epoch][position * self.size : (position + 1) * self.size])
        return out


@dataclass(frozen=True)
class Problem:
    """Everything an implementation needs to know besides the arrays.

    Attributes:
        network: The network and its loss.
        optimizer: The update rule.
        dtype: The dtype to compute in.
        batches: The rows of every step.
    """

    network: Network
    optimizer: Optimizer
    dtype: str
    batches: Batches

    def state_names(self) -> tuple[str, ...]:
        """Every quantity of a training state: parameters, then optimizer state."""
        return (
            *self.network.param_quantities.values(),
            *self.optimizer.state_names(self.network),
        )

    def record_names(self) -> tuple[str, ...]:
        """Every quantity ``train`` records, in a fixed order."""
        grads = tuple(grad_quantity(name) for name in self.network.param_names)
        return ("loss", *grads, "train_correct", *self.state_names())


@dataclass(frozen=True)
class Support:
    """What an implementation covers (a plugin may cover less than the built-ins).

    The harness refuses a recipe outside it, naming what is missing; the conformance kit
    (``compare.testing``) runs every combination it declares.
    """

    activations: tuple[str, ...] = ACTIVATIONS
    losses: tuple[str, ...] = LOSSES
    optimizers: tuple[str, ...] = OPTIMIZERS
    dtypes: tuple[str, ...] = DTYPES
    biases: bool = True
    minibatches: bool = True

    def missing(self, problem: Problem) -> list[str]:
        """What ``problem`` asks for that this does not cover, one phrase each."""
        net = problem.network
        missing = [
            f"activation {a}" for a in dict.fromkeys(net.activations) if a not in self.activations
        ]
        if net.loss not in self.losses:
            missing.append(f"loss {net.loss}")
        if problem.optimizer.name not in self.optimizers:
            missing.append(f"optimizer {problem.optimizer.name}")
        if problem.dtype not in self.dtypes:
            missing.append(f"dtype {problem.dtype}")
        if net.biases and not self.biases:
            missing.append("biases")
        if not problem.batches.full and not self.minibatches:
            missing.append("minibatches")
        return missing


def initial_state(problem: Problem, params: Params) -> State:
    """The training state before the first update: the parameters (with their point axis) and
    the optimizer's state, all zeros (``state:step`` = 0)."""
    state: State = {}
    points = None
    for name, quantity in problem.network.param_quantities.items():
        array = np.array(params[name], dtype=np.float64)
        state[quantity] = array
        points = array.shape[0]
    for quantity in problem.optimizer.state_names(problem.network):
        if quantity == "state:step":
            state[quantity] = np.zeros(points)
        else:
            state[quantity] = np.zeros_like(state[param_quantity(quantity.rsplit(":", 1)[1])])
    return state


def params_of(net: Network, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"W1": ..., "b1": ...}`` from a state or record keyed by quantity."""
    return {name: state[quantity] for name, quantity in net.param_quantities.items()}


def check_params(net: Network, params: Params, point_axis: bool = True) -> None:
    """Raise ``ValueError`` unless ``params`` holds exactly ``net``'s parameters, right shaped.

    Args:
        net: The network.
        params: Parameter name -> array.
        point_axis: Each array carries a leading point axis (any length) before its shape.
    """
    if sorted(params) != sorted(net.param_names):
        raise ValueError(f"expected parameters {net.param_names}, got {tuple(params)}")
    for name, shape in net.param_shapes.items():
        got = tuple(np.shape(params[name]))
        ok = got[1:] == shape if point_axis else got == shape
        if not ok or (point_axis and len(got) != len(shape) + 1):
            expected = f"(P, {', '.join(map(str, shape))})" if point_axis else str(shape)
            raise ValueError(f"{name} must be shaped {expected}, got {got}")


def correct_count(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rows whose top output is the top target: ``(..., R, O)`` -> ``(...)`` int64.

    For implementations that hand outputs to NumPy anyway; others compute the same in their
    framework (argmax ties go to the first index everywhere).
    """
    return np.sum(np.argmax(outputs, axis=-1) == np.argmax(targets, axis=-1), axis=-1)


@dataclass
class Trajectory:
    """Whole per-state records of one framework, for ``--trajectories`` and small runs.

    Attributes:
        framework: Registry name.
        records: Quantity -> ``(steps + 1, P, ...)`` float64 (``train_correct`` int64).
        seconds: Wall time of training.
    """

    framework: str
    records: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
