"""The network in PyTorch: the forward pass by hand, every gradient from autograd.

No derivative is written here: ``torch.autograd.grad`` differentiates the loss and a no-grad
``W -= lr * dW`` applies the update (what ``torch.optim.SGD`` does without momentum, minus its
per-step bookkeeping, which costs more than this whole network's arithmetic).
``loss_and_grads`` evaluates many parameter points at once with ``torch.func.vmap`` over
``torch.func.grad_and_value``.

Weights are leaf tensors built from the shared NumPy draw (never from torch's own generator) in
an explicit dtype; torch's default dtype (float32) is never relied on.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import torch

from implementations.contract import Network, Params, Progress, Trajectory, check_params

NAME = "torch"

#: Dtypes this implementation computes natively in (torch's CPU kernels cover all four).
DTYPES = ("float64", "float32", "float16", "bfloat16")

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "identity": lambda Z: Z,
}


def _torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"{NAME} does not compute in {dtype}; it supports {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def forward(net: Network, weights: list[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """The network output ``A_L``; ``Z = A_prev @ W``, ``A = activation(Z)`` per layer."""
    A = X
    for W, activation in zip(weights, net.activations, strict=True):
        Z = A @ W
        A = ACTIVATIONS[activation](Z)
    return A


def loss(A_out: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``sum((A_out - Y) ** 2) / (2 * Y.numel())``."""
    return ((A_out - Y) ** 2).sum() / (2 * Y.numel())


def _tensors(net: Network, params: Params, X: np.ndarray, Y: np.ndarray | None, dtype: str):
    check_params(net, params)
    tdtype = _torch_dtype(dtype)
    weights = [torch.tensor(np.asarray(params[n]), dtype=tdtype) for n in net.param_names]
    X = torch.as_tensor(np.asarray(X), dtype=tdtype)
    Y = None if Y is None else torch.as_tensor(np.asarray(Y), dtype=tdtype)
    return weights, X, Y


def loss_and_grads(
    net: Network, params_batch: Params, X: np.ndarray, Y: np.ndarray, dtype: str = "float64"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Loss ``(B,)`` and gradients ``{name: (B, in, out)}`` at a batch of parameter points.

    The weights carry the batch axis and ``@`` broadcasts over it, so one forward pass computes
    every point's loss; autograd of their sum gives every point's own gradient, exactly (the
    points share nothing, so each loss's gradient reaches only its own weights, scaled by 1).
    ``torch.func.vmap`` would do the same, but its first call in a process costs about two
    seconds of set-up, thirty times this whole evaluation.
    """
    weights, X, Y = _tensors(net, params_batch, X, Y, dtype)
    for W in weights:
        W.requires_grad_(True)
    A_out = forward(net, weights, X)
    losses = ((A_out - Y) ** 2).sum(dim=(-2, -1)) / (2 * Y.numel())
    grads = torch.autograd.grad(losses.sum(), weights)
    return losses.detach().double().numpy(), {
        name: g.double().numpy() for name, g in zip(net.param_names, grads, strict=True)
    }


def predict(net: Network, params: Params, X: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The network output ``A_L`` for the rows of ``X``, computed in ``dtype``."""
    weights, X, _ = _tensors(net, params, X, None, dtype)
    with torch.no_grad():
        return forward(net, weights, X).double().numpy()


def precision_environment() -> dict[str, object]:
    """The global switches that decide torch's float32 arithmetic and its summation order."""
    return {
        "torch.float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch.backends.mkldnn.enabled": torch.backends.mkldnn.enabled,
        "torch.deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch.default_dtype": str(torch.get_default_dtype()),
        "torch.num_threads": torch.get_num_threads(),
        "torch.num_interop_threads": torch.get_num_interop_threads(),
    }


def train(
    net: Network,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    lr: float,
    steps: int,
    dtype: str = "float64",
    progress: Progress | None = None,
) -> Trajectory:
    """Full-batch gradient descent with autograd, recording every step."""
    started = time.perf_counter()
    weights, X, Y = _tensors(net, params, X, Y, dtype)
    for W in weights:
        W.requires_grad_(True)
    lr = torch.tensor(lr, dtype=weights[0].dtype)
    # Records are kept as tensors in lists and stacked once after the loop: indexing into a
    # preallocated tensor costs a dispatcher call per record, more than the network itself.
    losses, predictions, history, grad_history = [], [], [], []
    report_every = max(1, steps // 100)
    for step in range(steps + 1):
        A_out = forward(net, weights, X)
        step_loss = loss(A_out, Y)
        losses.append(step_loss.detach())
        predictions.append(A_out.detach().argmax(dim=-1))
        history.append([W.detach().clone() for W in weights])
        if step == steps:
            break  # the last state is the trained model: no update follows it
        dW = torch.autograd.grad(step_loss, weights)
        grad_history.append(dW)
        with torch.no_grad():
            for W, dW_i in zip(weights, dW, strict=True):
                W -= lr * dW_i
        if progress is not None and (step + 1) % report_every == 0:
            progress(step + 1)

    def stacked(records: list, index: int) -> np.ndarray:
        return torch.stack([record[index] for record in records]).double().numpy()

    return Trajectory(
        framework=NAME,
        dtype=dtype,
        losses=torch.stack(losses).double().numpy(),
        grads={n: stacked(grad_history, i) for i, n in enumerate(net.param_names)},
        weights={n: stacked(history, i) for i, n in enumerate(net.param_names)},
        train_predictions=torch.stack(predictions).numpy(),
        seconds=time.perf_counter() - started,
    )


class GraphNode(NamedTuple):
    """One node of the autograd graph, as ``autograd_graph`` lists them.

    Attributes:
        depth: Steps from the loss's own node (0) towards the inputs.
        name: The backward node's name (``"MmBackward0"``), or ``None`` where an input that
            needs no gradient (X, Y, a constant) sits.
        weight: For the ``AccumulateGrad`` node of a weight: that weight's name.
        repeated: The node was already listed above (a value used twice); its inputs are not
            listed again.
    """

    depth: int
    name: str | None
    weight: str | None
    repeated: bool


def autograd_graph(
    net: Network, params: Params, X: np.ndarray, Y: np.ndarray, dtype: str = "float64"
) -> tuple[list[GraphNode], float, dict[str, np.ndarray]]:
    """The graph autograd recorded for the loss, node by node, and the gradients it gave.

    The forward pass records one backward node per operation; ``loss.grad_fn`` is the last one
    and each node's ``next_functions`` lead towards the inputs, ending in one
    ``AccumulateGrad`` node per weight (which stores the gradient in ``W.grad``). This walks
    that graph depth first from the loss, then runs ``loss.backward()``.

    Returns:
        ``(nodes, loss, grads)``: the nodes in depth-first order from the loss, the loss, and
        ``{name: W.grad}`` as float64 NumPy arrays.
    """
    weights, X, Y = _tensors(net, params, X, Y, dtype)
    for W in weights:
        W.requires_grad_(True)
    step_loss = loss(forward(net, weights, X), Y)
    weight_names = {id(W): name for W, name in zip(weights, net.param_names, strict=True)}
    nodes: list[GraphNode] = []
    seen: set[int] = set()

    def walk(node, depth: int) -> None:
        if node is None:
            nodes.append(GraphNode(depth, None, None, False))
            return
        variable = getattr(node, "variable", None)
        weight = None if variable is None else weight_names.get(id(variable))
        name = node.name().removeprefix("torch::autograd::")
        nodes.append(GraphNode(depth, name, weight, id(node) in seen))
        if id(node) in seen:
            return
        seen.add(id(node))
        for next_node, _ in node.next_functions:
            walk(next_node, depth + 1)

    walk(step_loss.grad_fn, 0)
    step_loss.backward()
    grads = {
        name: W.grad.double().numpy() for name, W in zip(net.param_names, weights, strict=True)
    }
    return nodes, float(step_loss.detach().double()), grads
