"""The network in PyTorch: the forward pass with torch ops, every gradient from autograd, every
update from ``torch.optim``.

Design rules:

* No derivative is written here. ``torch.autograd.grad`` differentiates the loss; the update is
  ``torch.optim.SGD``, ``Adam`` or ``AdamW`` (``make_optimizer``), every hyperparameter passed
  explicitly so that no torch default decides the mathematics (``AdamW``'s default decay is
  1e-2; ``foreach``, ``fused``, ``maximize``, ``amsgrad``, ``capturable``, ``differentiable``
  and ``decoupled_weight_decay`` are spelled out too).
* The losses are torch's own functions (``F.mse_loss``, ``F.cross_entropy`` with probability
  targets, ``F.binary_cross_entropy``), taken element by element (``reduction="none"``) and
  reduced by the contract's formula, so that each point's loss is exactly the contract's.
* Points: every parameter is one tensor shaped ``(P, in, out)`` or ``(P, 1, out)`` (a bias
  keeps a row axis so that it broadcasts over the batch rows); ``@`` broadcasts over ``P``.
  Autograd of the per-point losses with a ones cotangent (the gradient of their sum) gives
  each point its own exact gradient, because the points share nothing, and the optimizer's
  updates are element by element, so one optimizer over these tensors updates each point as
  it would update that point alone. With ``P == 1`` the point axis is dropped inside (a plain
  ``mm`` makes a step about a quarter cheaper than a broadcast ``matmul``). Independent is
  meant mathematically: torch's kernels pick their blocking and vector paths by shape, so a
  point trained among others may round differently, in the last bits, from the same point
  trained alone (measured: 2e-16 on a gradient of order 1).
* torch.optim keeps one update count per tensor (Adam's bias correction, SGD's first-step
  momentum rule). Points whose ``state:step`` differ (``step`` from the states of many steps)
  therefore get tensors of their own, one per distinct count, and the same ``optimizer.step()``
  updates them all: ``train`` and ``step`` run the one code path (``Points``), so an update bug
  shows in both.
* Dtypes are explicit everywhere (data, parameters, optimizer state); torch's default dtype is
  never relied on and never changed. Adam's update count is kept as a float64 tensor (torch
  creates a float32 one, whose count stops at 2**24 updates).
* Importing this module changes no global torch state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's documentation spells it F)
from torch.autograd.gradcheck import GradcheckError

from implementations.contract import (
    LEAKY_RELU_SLOPE,
    Optimizer,
    Params,
    Problem,
    Progress,
    Sink,
    State,
    Support,
    check_params,
    grad_quantity,
    param_quantity,
)

NAME = "torch"

#: Dtypes this implementation computes natively in (torch's CPU kernels cover all four).
DTYPES = ("float64", "float32", "float16", "bfloat16")

#: Everything the contract defines.
SUPPORTS = Support()

#: torch.optim's single-tensor code path (its own choice for CPU tensors). ``train`` and
#: ``step`` both use it; the single-tensor path never writes into ``p.grad``, so the gradients
#: handed to the optimizer are recorded without a copy.
FOREACH = False

#: Each activation as torch computes it. ``gelu`` is the exact (erf) form, ``gelu_tanh`` the
#: tanh approximation; both named explicitly rather than left to ``F.gelu``'s default.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda Z: F.leaky_relu(Z, negative_slope=LEAKY_RELU_SLOPE),
    "gelu": lambda Z: F.gelu(Z, approximate="none"),
    "gelu_tanh": lambda Z: F.gelu(Z, approximate="tanh"),
    "identity": lambda Z: Z,
}

#: The squared-error losses: ``sum((A - Y)**2) / divisor(R, O)`` per point.
SQUARED_ERROR_DIVISORS: dict[str, Callable[[int, int], int]] = {
    "half-mse": lambda rows, outputs: 2 * rows * outputs,
    "mse": lambda rows, outputs: rows * outputs,
    "half-sse": lambda rows, outputs: 2,
}

#: torch.optim's name for each optimizer-state kind of the contract.
STATE_KEYS = {"momentum": "momentum_buffer", "m": "exp_avg", "v": "exp_avg_sq"}


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype named ``dtype``, one of ``DTYPES``."""
    if dtype not in DTYPES:
        raise ValueError(f"{NAME} does not compute in {dtype}; it supports {', '.join(DTYPES)}")
    return getattr(torch, dtype)


class Layer(NamedTuple):
    """Forward values of one layer: ``Z = A_prev @ W (+ b)``, ``A = activation(Z)``."""

    Z: torch.Tensor
    A: torch.Tensor


def forward(problem: Problem, params: Mapping[str, torch.Tensor], X: torch.Tensor) -> list[Layer]:
    """Run the network on ``X``; autograd records every operation for the backward pass.

    Args:
        problem: Says the layers and activations.
        params: ``{"W1": ..., "b1": ...}``, weights ``(..., in, out)`` and biases
            ``(..., 1, out)`` (any leading point axes), in the compute dtype.
        X: The input rows, ``(R, in)`` shared by every point or ``(..., R, in)``.

    Returns:
        One ``Layer`` per dense layer, input side first; arrays ``(..., R, out)``.
    """
    net = problem.network
    layers = []
    A = X
    for layer, activation in enumerate(net.activations, start=1):
        Z = A @ params[f"W{layer}"]
        if net.biases:
            Z = Z + params[f"b{layer}"]  # b (..., 1, out) is added to every row
        A = ACTIVATIONS[activation](Z)
        layers.append(Layer(Z, A))
    return layers


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """The precision sums accumulate in: float32 for float16 and bfloat16 (torch's CPU opmath,
    the contract's rule), else ``dtype`` itself."""
    return torch.float32 if dtype.itemsize < 4 else dtype


def loss(problem: Problem, A_out: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Each point's loss (contract formulas): ``(..., R, O)`` -> ``(...)``.

    ``Y`` is ``(R, O)`` shared by every point, or shaped like ``A_out``. In float16 and bfloat16
    the loss runs on the outputs widened to float32 (``accumulator``), its sum over rows and the
    division too, and rounds once to the dtype, as the contract says; the backward pass then
    computes ``dL/dA`` in float32 and rounds it once where it meets the cast. torch's own 16-bit
    kernels round every intermediate instead, which two measured false alarms (float16, unscaled
    breast_cancer, cross-entropy) showed to overflow where the contract's loss is finite: the
    ``reduction="mean"`` sum of 549 rows, 214768 past float16's 65504 (inf, for a mean of 391),
    and a log-softmax of -75000 on a class of target 0 (``0 * -inf``: NaN, for a row loss of
    2e4).
    """
    net = problem.network
    rows, outputs = A_out.shape[-2], A_out.shape[-1]
    dtype, wide = A_out.dtype, accumulator(A_out.dtype)
    A_out, Y = A_out.to(wide), Y.to(wide)

    def reduce(values: torch.Tensor, dims: tuple[int, ...], divisor: int) -> torch.Tensor:
        return (values.sum(dim=dims) / divisor).to(dtype)

    if Y.shape != A_out.shape:
        Y = Y.expand_as(A_out)  # torch's losses warn on (and some refuse) broadcast targets
    if net.loss in SQUARED_ERROR_DIVISORS:
        squared = F.mse_loss(A_out, Y, reduction="none")
        return reduce(squared, (-2, -1), SQUARED_ERROR_DIVISORS[net.loss](rows, outputs))
    if net.loss == "cross-entropy":
        # F.cross_entropy wants (N, C); each row's loss comes back and is summed per point.
        per_row = F.cross_entropy(
            A_out.reshape(-1, outputs),
            Y.reshape(-1, outputs),
            reduction="none",
            label_smoothing=0.0,
        )
        return reduce(per_row.reshape(A_out.shape[:-1]), (-1,), rows)
    if net.loss == "binary-cross-entropy":
        # torch clamps each log at -100 (the contract's BCE_LOG_FLOOR). Its range check refuses
        # NaN, but a diverged run's NaN is data: NaN outputs go in as 0.5 and come out as NaN.
        nan = torch.isnan(A_out)
        per_element = F.binary_cross_entropy(torch.where(nan, 0.5, A_out), Y, reduction="none")
        per_element = torch.where(nan, A_out, per_element)
        return reduce(per_element, (-2, -1), rows * outputs)
    raise ValueError(f"{NAME} has no loss {net.loss!r}")


def make_optimizer(optimizer: Optimizer, tensors: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of the contract's ``optimizer``, every setting explicit."""
    if optimizer.name in ("sgd", "momentum"):
        momentum = optimizer.momentum if optimizer.name == "momentum" else 0.0
        if optimizer.name == "momentum" and momentum == 0:
            # torch.optim.SGD keeps no buffer at momentum 0, where the contract keeps one.
            raise ValueError("optimizer momentum needs momentum > 0 (use sgd for none)")
        return torch.optim.SGD(
            tensors,
            lr=optimizer.lr,
            momentum=momentum,
            dampening=optimizer.dampening if optimizer.name == "momentum" else 0.0,
            weight_decay=optimizer.weight_decay,
            nesterov=optimizer.nesterov if optimizer.name == "momentum" else False,
            maximize=False,
            foreach=FOREACH,
            differentiable=False,
            fused=False,
        )
    settings = {
        "lr": optimizer.lr,
        "betas": (optimizer.beta1, optimizer.beta2),
        "eps": optimizer.eps,
        "weight_decay": optimizer.weight_decay,
        "amsgrad": False,
        "foreach": FOREACH,
        "maximize": False,
        "capturable": False,
        "differentiable": False,
        "fused": False,
    }
    if optimizer.name == "adam":
        return torch.optim.Adam(tensors, decoupled_weight_decay=False, **settings)
    if optimizer.name == "adamw":
        return torch.optim.AdamW(tensors, **settings)
    raise ValueError(f"{NAME} has no optimizer {optimizer.name!r}")


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    # torch.tensor copies (the caller's array is never shared or written) and casts once.
    return torch.tensor(np.asarray(array, dtype=np.float64), dtype=dtype)


def _inputs(problem: Problem, X: np.ndarray, Y: np.ndarray | None):
    dtype = torch_dtype(problem.dtype)
    X_t = _tensor(X, dtype)
    if Y is None:
        return X_t, None, None
    Y_t = _tensor(Y, dtype)
    return X_t, Y_t, Y_t.argmax(dim=-1)  # the top target of each row (ties: the first)


def _internal(name: str, array: np.ndarray) -> np.ndarray:
    """A parameter-shaped array (``(P, ...)``) in the layout ``forward`` takes."""
    return array[..., None, :] if name.startswith("b") else array


class Points:
    """``P`` training states as torch leaf tensors, with the ``torch.optim`` optimizer over them.

    The one code path of ``train`` and ``step``: ``evaluate`` (loss, gradients and each row's
    top output at the current parameters on one batch), ``snapshot`` (the state, copied) and
    ``update`` (one ``optimizer.step()``). Points that share an update count share tensors.
    """

    def __init__(self, problem: Problem, state: Mapping[str, np.ndarray]) -> None:
        net, optimizer = problem.network, problem.optimizer
        params = {name: np.asarray(state[q]) for name, q in net.param_quantities.items()}
        check_params(net, params)
        missing = [q for q in problem.state_names() if q not in state]
        if missing:
            raise ValueError(f"the state lacks {', '.join(missing)}")
        self.problem = problem
        self.dtype = torch_dtype(problem.dtype)
        self.points = len(params[net.param_names[0]])
        self.kinds = optimizer.state_kinds()
        counts = (
            np.asarray(state["state:step"], dtype=np.float64).reshape(self.points)
            if optimizer.name != "sgd"
            else np.zeros(self.points)
        )
        values, self.group_of_point = np.unique(counts, return_inverse=True)
        self.counts = [float(v) for v in values]
        sizes = np.bincount(self.group_of_point).tolist()
        # Groups in count order, each a contiguous run of points: every quantity becomes one
        # tensor, split into views (one per group), so P groups cost no P conversions.
        by_group = np.argsort(self.group_of_point, kind="stable")
        self.order = None if len(sizes) == 1 else torch.from_numpy(np.argsort(by_group))
        # One point: no point axis inside (mm instead of a broadcast matmul).
        self.squeezed = self.points == 1

        def group_tensors(name: str, array: np.ndarray) -> list[torch.Tensor]:
            internal = _internal(name, np.asarray(array, dtype=np.float64))
            if self.squeezed:
                return [_tensor(internal[0], self.dtype)]
            return list(torch.split(_tensor(internal[by_group], self.dtype), sizes))

        self.leaves = {
            name: [leaf.requires_grad_(True) for leaf in group_tensors(name, params[name])]
            for name in net.param_names
        }
        self.all_leaves = [leaf for leaves in self.leaves.values() for leaf in leaves]
        self.single = {name: leaves[0] for name, leaves in self.leaves.items()}
        self.optimizer = make_optimizer(optimizer, self.all_leaves)
        for name, leaves in self.leaves.items():
            buffers = {
                STATE_KEYS[kind]: group_tensors(name, state[f"state:{kind}:{name}"])
                for kind in self.kinds
            }
            for g, leaf in enumerate(leaves):
                own = {key: tensors[g] for key, tensors in buffers.items()}
                if self.kinds == ("momentum",) and self.counts[g] == 0:
                    own = {}  # no buffer yet: torch's first update sets buf = g (no dampening)
                elif optimizer.name in ("adam", "adamw"):
                    own["step"] = torch.tensor(self.counts[g], dtype=torch.float64)
                self.optimizer.state[leaf] = own
        self.ones = torch.ones(() if self.squeezed else (self.points,), dtype=self.dtype)

    def per_point(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """One tensor from the groups' tensors, points in their given order."""
        if self.order is None:
            return tensors[0]
        return torch.cat(list(tensors)).index_select(0, self.order)

    def params(self) -> dict[str, torch.Tensor]:
        """The parameters as ``forward`` takes them (differentiable)."""
        if self.order is None:  # one group: the leaves themselves, updated in place
            return self.single
        return {name: self.per_point(leaves) for name, leaves in self.leaves.items()}

    def evaluate(
        self, X: torch.Tensor, Y: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        """Loss per point, the gradient of every leaf, and each row's top output (its index)."""
        A_out = forward(self.problem, self.params(), X)[-1].A
        losses = loss(self.problem, A_out, Y)
        grads = torch.autograd.grad(losses, self.all_leaves, grad_outputs=self.ones)
        # Rows are compared with the labels once per chunk: a per-step sum of booleans costs
        # more than the whole forward pass of a small network.
        return losses.detach(), grads, A_out.argmax(dim=-1)

    def snapshot(self) -> list[torch.Tensor]:
        """Copies of the parameters, then of the optimizer state (``state_names`` order, the
        update count per group first); call under ``torch.no_grad``."""
        out = [self.per_point(leaves).clone() for leaves in self.leaves.values()]
        if not self.kinds:
            return out
        if "step" in self.optimizer.state[self.all_leaves[0]]:
            first = [leaves[0] for leaves in zip(*self.leaves.values(), strict=True)]
            out.append(torch.stack([self.optimizer.state[leaf]["step"] for leaf in first]))
        else:  # torch.optim.SGD counts nothing; the count is ours
            out.append(torch.tensor(self.counts, dtype=torch.float64))
        for kind in self.kinds:
            for leaves in self.leaves.values():
                buffers = []
                for leaf in leaves:
                    buffer = self.optimizer.state[leaf].get(STATE_KEYS[kind])
                    # No momentum buffer before the first update: the contract's zeros.
                    buffers.append(torch.zeros_like(leaf) if buffer is None else buffer)
                out.append(self.per_point(buffers).clone())
        return out

    def update(self, grads: Sequence[torch.Tensor]) -> None:
        """One ``optimizer.step()`` with ``grads`` (one per leaf)."""
        for leaf, grad in zip(self.all_leaves, grads, strict=True):
            leaf.grad = grad
        try:
            self.optimizer.step()
        except RuntimeError as error:
            if "without overflow" not in str(error):
                raise
            # torch.optim passes lr (or Adam's lr / (1 - beta1^t)) as an alpha in the
            # parameter's dtype, so float16 refuses a learning rate beyond its range.
            raise ValueError(
                f"torch.optim cannot apply {self.problem.optimizer.name} with lr "
                f"{self.problem.optimizer.lr:g} to {self.problem.dtype} parameters ({error})"
            ) from error
        self.counts = [count + 1 for count in self.counts]

    def records(self, rows: list[list[torch.Tensor]]) -> dict[str, np.ndarray]:
        """Records of ``len(rows)`` states as the contract's float64 arrays ``(n, P, ...)``; each
        row is ``[loss, *grads, top output, labels, *snapshot]`` of one state."""
        problem, net = self.problem, self.problem.network
        n, points = len(rows), self.points
        names = problem.record_names()
        shapes = net.param_shapes
        columns = list(zip(*rows, strict=True))
        out: dict[str, np.ndarray] = {}
        column = iter(columns)
        out["loss"] = _float64(torch.stack(next(column)).reshape(n, points))
        grad_columns = [next(column) for _ in self.all_leaves]
        position = 0
        for name in net.param_names:
            per_group = grad_columns[position : position + len(self.leaves[name])]
            position += len(per_group)
            stacked = torch.stack(
                [self.per_point(step_grads) for step_grads in zip(*per_group, strict=True)]
            )
            out[grad_quantity(name)] = _float64(stacked.reshape(n, points, *shapes[name]))
        predicted, labels = next(column), next(column)
        shapes_seen = {(p.shape, lab.shape) for p, lab in zip(predicted, labels, strict=True)}
        if len(shapes_seen) == 1:
            stacked_labels = torch.stack(labels)
            if stacked_labels.dim() < predicted[0].dim() + 1:
                stacked_labels = stacked_labels.unsqueeze(1)  # one batch shared by every point
            correct = (torch.stack(predicted) == stacked_labels).sum(dim=-1)
        else:  # a partial last batch of an epoch: rows differ in number
            correct = torch.stack(
                [(p == labels_k).sum(dim=-1) for p, labels_k in zip(predicted, labels, strict=True)]
            )
        out["train_correct"] = correct.reshape(n, points).to(torch.int64).numpy()
        for name in net.param_names:
            stacked = torch.stack(next(column))
            out[param_quantity(name)] = _float64(stacked.reshape(n, points, *shapes[name]))
        if self.kinds:
            counts = torch.stack(next(column)).to(torch.float64).numpy()
            out["state:step"] = counts[:, self.group_of_point]
            for kind in self.kinds:
                for name in net.param_names:
                    stacked = torch.stack(next(column))
                    out[f"state:{kind}:{name}"] = _float64(
                        stacked.reshape(n, points, *shapes[name])
                    )
        return {name: out[name] for name in names}


def _float64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.to(torch.float64).numpy()


def train(
    problem: Problem,
    initial: State,
    X: np.ndarray,
    Y: np.ndarray,
    steps: int,
    *,
    chunk: int,
    sink: Sink,
    progress: Progress | None = None,
) -> None:
    """Train ``P`` points from ``initial`` for ``steps`` updates, handing records to ``sink``.

    Each step: forward, per-point losses, ``torch.autograd.grad``, one ``optimizer.step()``.
    The records of a chunk are kept as tensors and stacked once when the chunk is handed
    over (a dispatcher call per record and step into a preallocated array would cost more
    than the network); nothing is synchronised to Python inside the loop.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    points = Points(problem, initial)
    X_all, Y_all, labels_all = _inputs(problem, X, Y)
    batches = problem.batches
    report_every = max(1, (steps + 1) // 100)
    for start in range(0, steps + 1, chunk):
        stop = min(start + chunk, steps + 1)
        chunk_records: list[list[torch.Tensor]] = []
        for k, batch in zip(range(start, stop), batches.chunk(start, stop), strict=True):
            if batches.full:
                X_b, Y_b, labels_b = X_all, Y_all, labels_all
            else:
                index = torch.from_numpy(batch)
                X_b, Y_b, labels_b = X_all[index], Y_all[index], labels_all[index]
            losses, grads, predicted = points.evaluate(X_b, Y_b)
            with torch.no_grad():
                chunk_records.append([losses, *grads, predicted, labels_b, *points.snapshot()])
            if k < steps:  # the last state is the trained model: no update follows it
                points.update(grads)
            if progress is not None and (k + 1) % report_every == 0:
                progress(k + 1)
        sink(start, points.records(chunk_records))
        del chunk_records  # handed over: nothing of the chunk is kept
        if progress is not None:
            progress(stop)


def step(
    problem: Problem, states: State, X: np.ndarray, Y: np.ndarray, rows: np.ndarray | None
) -> tuple[dict[str, np.ndarray], State]:
    """One training step from each of ``P`` unrelated states, through ``train``'s code path.

    Returns:
        ``(records, next_states)``: what ``train`` records at each state (arrays ``(P, ...)``)
        and the states after the update.
    """
    points = Points(problem, states)
    X_all, Y_all, labels_all = _inputs(problem, X, Y)
    if rows is None:
        X_b, Y_b, labels_b = X_all, Y_all, labels_all
    else:
        index = torch.tensor(np.asarray(rows), dtype=torch.int64)
        if index.ndim != 2 or len(index) != points.points:
            raise ValueError(
                f"rows must be shaped (P={points.points}, R), got {tuple(index.shape)}"
            )
        if points.squeezed:
            index = index[0]
        X_b, Y_b, labels_b = X_all[index], Y_all[index], labels_all[index]
    losses, grads, predicted = points.evaluate(X_b, Y_b)
    with torch.no_grad():
        before = [losses, *grads, predicted, labels_b, *points.snapshot()]
    points.update(grads)
    with torch.no_grad():
        after = [losses, *grads, predicted, labels_b, *points.snapshot()]
    records = {name: value[0] for name, value in points.records([before]).items()}
    following = points.records([after])
    next_states = {name: following[name][0] for name in problem.state_names()}
    return records, next_states


def _param_leaves(problem: Problem, params: Params, *, point_axis: bool = True):
    check_params(problem.network, params, point_axis=point_axis)
    dtype = torch_dtype(problem.dtype)
    return {
        name: _tensor(_internal(name, np.asarray(params[name])), dtype).requires_grad_(True)
        for name in problem.network.param_names
    }


def loss_and_grads(
    problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Loss ``(P,)`` and gradients ``{"grad:W1": (P, in, out), ...}`` at ``P`` parameter points
    on all of ``X``, without any update."""
    net = problem.network
    leaves = _param_leaves(problem, params)
    X_t, Y_t, _ = _inputs(problem, X, Y)
    losses = loss(problem, forward(problem, leaves, X_t)[-1].A, Y_t)
    grads = torch.autograd.grad(losses, list(leaves.values()), grad_outputs=torch.ones_like(losses))
    points = len(losses)
    return _float64(losses.detach()), {
        grad_quantity(name): _float64(grad.reshape(points, *net.param_shapes[name]))
        for name, grad in zip(leaves, grads, strict=True)
    }


def predict(problem: Problem, params: Params, X: np.ndarray) -> np.ndarray:
    """The network output ``(P, R, O)`` at ``P`` parameter points, computed in the dtype."""
    leaves = _param_leaves(problem, params)
    X_t, _, _ = _inputs(problem, X, None)
    with torch.no_grad():
        return _float64(forward(problem, leaves, X_t)[-1].A)


def precision_environment() -> dict[str, object]:
    """The global switches that decide torch's float32 arithmetic and its summation order."""
    return {
        # A plain str: torch.__version__ is a TorchVersion, whose unpickling imports torch into
        # the harness (200 MB and a second and a half, for one line of a report).
        "torch.version": str(torch.__version__),
        "torch.float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch.backends.mkldnn.enabled": torch.backends.mkldnn.enabled,
        "torch.deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch.default_dtype": str(torch.get_default_dtype()),
        "torch.num_threads": torch.get_num_threads(),
        "torch.num_interop_threads": torch.get_num_interop_threads(),
        "torch.optim.foreach": FOREACH,
    }


#: Elements of one layer's activations over all perturbed points that ``gradient_check``
#: evaluates at once (32 MB in float64) when it measures its error figure.
FINITE_DIFFERENCE_ELEMENTS = 2**22


def _one_point(problem: Problem, params: Params) -> dict[str, np.ndarray]:
    """Parameters without a point axis (a leading axis of length 1 is dropped)."""
    point = {}
    for name, shape in problem.network.param_shapes.items():
        array = np.asarray(params[name], dtype=np.float64)
        point[name] = array[0] if array.shape == (1, *shape) else array
    check_params(problem.network, point, point_axis=False)
    return point


def gradient_check(
    problem: Problem,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    step: float,
    atol: float,
    rtol: float,
) -> dict[str, object]:
    """``torch.autograd.gradcheck`` on the loss as a function of the flattened parameters.

    In float64 at one point (``params`` without a point axis, or with one of length 1),
    central differences with step
    ``step``, every element judged by ``|numerical - analytical| <= atol + rtol * |numerical|``.
    gradcheck answers pass or fail; the error figure (the greatest ``|numerical -
    analytical|``) is measured beside it with the same central difference, all perturbed
    points evaluated in batches through the point axis.

    Returns:
        ``{"checker", "passed", "error", "detail"}`` as the contract describes.
    """
    net = problem.network
    point = _one_point(problem, params)
    float64_problem = dataclasses.replace(problem, dtype="float64")
    X_t, Y_t, _ = _inputs(float64_problem, X, Y)
    shapes = {name: _internal(name, value).shape for name, value in point.items()}
    sizes = [math.prod(shape) for shape in shapes.values()]
    theta = torch.cat([_tensor(np.ravel(point[name]), torch.float64) for name in net.param_names])

    def unflatten(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        # flat: (..., size) -> {name: (..., *shape)}
        parts = torch.split(flat, sizes, dim=-1)
        return {
            name: part.reshape(*flat.shape[:-1], *shape)
            for (name, shape), part in zip(shapes.items(), parts, strict=True)
        }

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        return loss(float64_problem, forward(float64_problem, unflatten(flat), X_t)[-1].A, Y_t)

    checker = "torch.autograd.gradcheck"
    try:
        passed = torch.autograd.gradcheck(
            loss_of,
            (theta.clone().requires_grad_(True),),
            eps=step,
            atol=atol,
            rtol=rtol,
            raise_exception=True,
            nondet_tol=0.0,
            check_undefined_grad=False,
            check_grad_dtypes=False,
            check_batched_grad=False,
            check_batched_forward_grad=False,
            check_forward_ad=False,
            check_backward_ad=True,
            fast_mode=False,
            masked=False,
        )
        message = ""
    except GradcheckError as error:
        passed = False
        message = str(error).splitlines()[0]

    leaf = theta.clone().requires_grad_(True)
    (analytical,) = torch.autograd.grad(loss_of(leaf), leaf)
    numerical = torch.empty_like(theta)
    batch = max(1, FINITE_DIFFERENCE_ELEMENTS // (len(X_t) * max(net.widths)))
    with torch.no_grad():
        for first in range(0, len(theta), batch):
            count = min(batch, len(theta) - first)
            shift = torch.zeros(count, len(theta), dtype=torch.float64)
            shift[torch.arange(count), torch.arange(first, first + count)] = step
            numerical[first : first + count] = (loss_of(theta + shift) - loss_of(theta - shift)) / (
                2 * step
            )
    error = float((numerical - analytical).abs().max())
    detail = (
        f"gradcheck (central differences, eps={step:g}, atol={atol:g}, rtol={rtol:g}) on "
        f"{len(theta)} parameters: {'passed' if passed else 'failed'}; greatest "
        f"|numerical - analytical| {error:.3g}"
    )
    if message:
        detail += f"; {message}"
    return {"checker": checker, "passed": bool(passed), "error": error, "detail": detail}


class GraphNode(NamedTuple):
    """One node of the autograd graph, as ``autodiff_view`` lists them.

    Attributes:
        depth: Steps from the loss's own node (0) towards the inputs.
        name: The backward node's name (``"MmBackward0"``), or ``None`` where a tensor that
            needs no gradient enters (``input`` says which).
        weight: For the ``AccumulateGrad`` node of a parameter: its name (``"W1"``, ``"b1"``).
        repeated: The node was already listed above (a value used twice); its inputs are not
            listed again.
        input: Where ``name`` is ``None``: ``"X"``, ``"Y"``, ``"constant"`` or ``"input"`` (a
            tensor that needs no gradient, not recognised).
        value: The value of a scalar constant (a divisor of the loss), else ``None``.
    """

    depth: int
    name: str | None
    weight: str | None
    repeated: bool
    input: str | None = None
    value: float | None = None


#: What each kind of backward node does, shown once beside its first appearance.
NODE_MEANINGS = {
    "DivBackward": "divide by a constant",
    "SumBackward": "sum",
    "MseLossBackward": "(A - Y)^2 element by element; backward: 2 (A - Y)",
    "BinaryCrossEntropyBackward": (
        "-(Y log A + (1 - Y) log(1 - A)), logs clamped at -100; backward: (A - Y) / (A (1 - A))"
    ),
    "WhereBackward": "passes a diverged run's NaN outputs by torch's BCE range check",
    "LogSoftmaxBackward": "log_softmax(A) over the outputs; backward: g - softmax(A) sum(g)",
    "MulBackward": "times the targets Y",
    "NegBackward": "negate",
    "ViewBackward": "reshape",
    "ReshapeAliasBackward": "reshape",
    "ExpandBackward": "broadcast",
    "SigmoidBackward": "A = sigmoid(Z); backward: times A (1 - A)",
    "TanhBackward": "A = tanh(Z); backward: times 1 - A^2",
    "ReluBackward": "A = relu(Z); backward: times (Z > 0)",
    "LeakyReluBackward": f"A = leaky_relu(Z); backward: times 1 or {LEAKY_RELU_SLOPE}",
    "GeluBackward": "A = gelu(Z); backward: times gelu'(Z)",
    "AddBackward": "Z = A_prev @ W + b; backward: passes the gradient to both",
    "MmBackward": "Z = A_prev @ W; backward: times W^T and A_prev^T",
    "AccumulateGrad": "stores the gradient in",
}

#: The argument of a backward node's n-th input, as the node saves it (``_saved_<name>``).
SAVED_ARGUMENTS = (("self", "input"), ("other", "mat2", "target"))


def _entering(node, position: int, known: Mapping[str, torch.Tensor]) -> tuple[str, float | None]:
    """What enters ``node`` at ``position`` when no gradient flows there: X, Y or a constant.

    The backward node saves the forward's arguments it needs (``_saved_self``,
    ``_saved_other``, ...); a saved tensor that shares X's or Y's memory is that input, and a
    saved scalar is a constant such as the loss's divisor.
    """
    names = SAVED_ARGUMENTS[position] if position < len(SAVED_ARGUMENTS) else ()
    for argument in names:
        saved = getattr(node, f"_saved_{argument}", None)
        if isinstance(saved, (int, float)):
            return "constant", float(saved)
        if not isinstance(saved, torch.Tensor):
            continue
        for label, tensor in known.items():
            if saved.data_ptr() == tensor.data_ptr() and saved.numel() == tensor.numel():
                return label, None
        if saved.numel() == 1:
            return "constant", float(saved)
    return "input", None


def _graph(loss_value: torch.Tensor, names: Mapping[int, str], known) -> list[GraphNode]:
    nodes: list[GraphNode] = []
    seen: set[int] = set()

    def walk(node, depth: int, parent=None, position: int = 0) -> None:
        if node is None:
            label, value = _entering(parent, position, known)
            nodes.append(GraphNode(depth, None, None, False, label, value))
            return
        variable = getattr(node, "variable", None)
        weight = None if variable is None else names.get(id(variable))
        name = node.name().removeprefix("torch::autograd::")
        nodes.append(GraphNode(depth, name, weight, id(node) in seen))
        if id(node) in seen:
            return
        seen.add(id(node))
        for index, (next_node, _) in enumerate(node.next_functions):
            walk(next_node, depth + 1, node, index)

    walk(loss_value.grad_fn, 0)
    return nodes


INPUT_TEXT = {
    "X": "X, the input rows (no gradient)",
    "Y": "Y, the targets (no gradient)",
    "input": "a tensor that needs no gradient",
}


#: Each loss's divisor (the constant that autograd's graph shows entering the last division).
DIVISORS = {
    "half-mse": "2 R O",
    "mse": "R O",
    "half-sse": "2",
    "cross-entropy": "R",
    "binary-cross-entropy": "R O",
}


def graph_lines(nodes: Sequence[GraphNode], constant_note: str = "") -> list[str]:
    """The autograd graph as an indented tree, one node per line, with what each node does.

    Args:
        nodes: From ``autodiff_view``.
        constant_note: Said beside each constant (e.g. ``"= 2 R O"``).
    """
    lines = []
    explained: set[str] = set()
    for node in nodes:
        indent = "  " * node.depth
        if node.name is None:
            if node.input == "constant":
                lines.append(f"{indent}(constant {node.value:.10g}{constant_note})")
            else:
                lines.append(f"{indent}({INPUT_TEXT[node.input or 'input']})")
            continue
        # Each kind of node is explained once, where it first appears, to keep lines short.
        meaning = next(
            (text for prefix, text in NODE_MEANINGS.items() if node.name.startswith(prefix)), ""
        )
        if node.name in explained and not node.weight:
            meaning = ""
        explained.add(node.name)
        if node.weight:
            meaning = f"{meaning} {node.weight}.grad"
        again = " (listed above)" if node.repeated else ""
        lines.append(f"{indent}{node.name}{again}  # {meaning}" if meaning else indent + node.name)
    return lines


def autodiff_view(problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray) -> dict:
    """The graph autograd recorded for the loss at one point, and the gradients it gave.

    The forward pass records one backward node per operation; the loss's ``grad_fn`` is the
    last one and each node's ``next_functions`` lead towards the inputs, ending in one
    ``AccumulateGrad`` node per parameter (which stores its gradient in ``.grad``). This walks
    that graph depth first from the loss, then runs ``loss.backward()``.

    Args:
        problem: The problem (its dtype is used).
        params: One point's parameters, without a point axis (``W1 (in, out)``), or with a
            point axis of length 1.
        X: Input rows.
        Y: Targets.

    Returns:
        ``{"title", "text", "nodes" (GraphNode list, depth first from the loss), "loss",
        "grads" ({name: array without a point axis})}``.
    """
    net = problem.network
    leaves = _param_leaves(problem, _one_point(problem, params), point_axis=False)
    X_t, Y_t, _ = _inputs(problem, X, Y)
    loss_value = loss(problem, forward(problem, leaves, X_t)[-1].A, Y_t)
    names = {id(leaf): name for name, leaf in leaves.items()}
    nodes = _graph(loss_value, names, {"X": X_t, "Y": Y_t})
    loss_value.backward()
    grads = {
        name: _float64(leaf.grad).reshape(net.param_shapes[name]) for name, leaf in leaves.items()
    }
    rows, outputs = Y_t.shape
    note = f" = {DIVISORS[net.loss]}, R = {rows} rows, O = {outputs} outputs"
    text = [
        f"loss = {float(loss_value.detach().double()):.10g} ({net.loss}, {problem.dtype})",
        "autograd's graph, from the loss back to the parameters:",
        *graph_lines(nodes, note),
    ]
    return {
        "title": "torch: the graph autograd recorded",
        "text": "\n".join(text),
        "nodes": nodes,
        "loss": float(loss_value.detach().double()),
        "grads": grads,
    }
