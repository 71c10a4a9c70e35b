"""The network as a PyTorch user writes it: ``nn.Linear`` layers, activation modules, a torch
loss module and a ``torch.optim`` optimizer, trained by ``zero_grad(); backward(); step()``.

Where ``torch_autograd`` writes the network as a function of weight tensors, this module uses
torch's own building blocks, so a bug that lives in how they are used (a weight loaded without
its transpose, a forgotten ``zero_grad``, the layers' default initialisation left in place) is
one the cross-check can catch here.

Design rules:

* One ``MLP`` per parameter point, held in an ``nn.ModuleList``, and one optimizer over all of
  their parameters (an ensemble). torch's optimizers update each parameter on its own, and the
  summed loss's backward pass hands each point exactly its own gradient, so the points share
  nothing.
* Weights enter through ``load_state_dict`` and leave through the modules' parameters; the
  layout conversion happens in ``state_dict_of`` and ``params_of_models`` and nowhere else.
* Modules are built on the ``meta`` device and then given empty memory, so torch's own
  initialisation never runs (and never draws random numbers): every parameter is injected.
* The optimizer's state goes in and out through ``optimizer.state``, in torch's own keys
  (``momentum_buffer``, ``step``, ``exp_avg``, ``exp_avg_sq``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from implementations.contract import (
    LEAKY_RELU_SLOPE,
    Network,
    Optimizer,
    Params,
    Problem,
    Progress,
    Sink,
    State,
    grad_quantity,
    param_quantity,
    params_of,
)

NAME = "torch_nn"

#: Dtypes this implementation computes natively in (torch's CPU kernels cover all four).
DTYPES = ("float64", "float32", "float16", "bfloat16")

TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

#: Activation name -> the module that computes it.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
    "gelu": lambda: nn.GELU(approximate="none"),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "identity": nn.Identity,
}


class MLP(nn.Module):
    """Dense layers, each an ``nn.Linear`` followed by its activation module."""

    def __init__(self, net: Network, dtype: torch.dtype) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for inputs, outputs, activation in zip(
            net.widths[:-1], net.widths[1:], net.activations, strict=True
        ):
            layers.append(nn.Linear(inputs, outputs, bias=net.biases, dtype=dtype))
            layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.layers(X)

    def named_params(self) -> dict[str, nn.Parameter]:
        """``{"W1": first layer's weight, "b1": its bias, ...}`` (torch's ``(out, in)``)."""
        linears = [layer for layer in self.layers if isinstance(layer, nn.Linear)]
        named: dict[str, nn.Parameter] = {}
        for number, linear in enumerate(linears, start=1):
            named[f"W{number}"] = linear.weight
            if linear.bias is not None:
                named[f"b{number}"] = linear.bias
        return named


def make_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss as torch's loss modules compute it (formulas in ``implementations.contract``).

    In float16 and bfloat16 the module runs on the outputs widened to float32 and its value rounds
    once to the dtype, as ``torch.autocast`` runs every loss (its float32 op list) and as the
    contract says: the modules' own 16-bit kernels round the sum before the mean, so a float16
    ``nn.CrossEntropyLoss()`` over 549 unscaled breast_cancer rows is inf (a sum of 214768 past
    65504) where the mean, 391, is finite.
    """
    module = _loss_module(name)

    def loss(A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        if A.dtype.itemsize >= 4:
            return module(A, Y)
        return module(A.float(), Y.float()).to(A.dtype)

    return loss


def _loss_module(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "half-mse":
        mse = nn.MSELoss()
        return lambda A, Y: mse(A, Y) / 2
    if name == "mse":
        return nn.MSELoss()
    if name == "half-sse":
        sse = nn.MSELoss(reduction="sum")
        return lambda A, Y: sse(A, Y) / 2
    if name == "cross-entropy":
        return nn.CrossEntropyLoss()  # Y holds class probabilities; A are logits
    if name == "binary-cross-entropy":
        return nn.BCELoss()  # clamps each log at -100, as the contract says
    raise ValueError(f"unknown loss {name!r}")


def make_optimizer(rule: Optimizer, parameters: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of ``rule``, every hyperparameter given explicitly (AdamW's
    default decay of 1e-2 in particular is never used by accident)."""
    if rule.name == "sgd":
        return torch.optim.SGD(parameters, lr=rule.lr, weight_decay=rule.weight_decay)
    if rule.name == "momentum":
        return torch.optim.SGD(
            parameters,
            lr=rule.lr,
            momentum=rule.momentum,
            dampening=rule.dampening,
            nesterov=rule.nesterov,
            weight_decay=rule.weight_decay,
        )
    adam = torch.optim.Adam if rule.name == "adam" else torch.optim.AdamW
    return adam(
        parameters,
        lr=rule.lr,
        betas=(rule.beta1, rule.beta2),
        eps=rule.eps,
        weight_decay=rule.weight_decay,
    )


def state_dict_of(net: Network, params: Params, point: int) -> dict[str, torch.Tensor]:
    """One point's parameters as an ``MLP`` state dict."""
    state_dict = {}
    for number in range(1, net.layers + 1):
        # The shared layout is (in, out), Z = A @ W; nn.Linear stores (out, in) and computes
        # A @ weight.T. So weights go in transposed here and come back transposed in
        # params_of_models: the one place this module converts.
        state_dict[f"layers.{2 * (number - 1)}.weight"] = torch.from_numpy(
            np.asarray(params[f"W{number}"][point], dtype=np.float64)
        ).T
        if net.biases:
            state_dict[f"layers.{2 * (number - 1)}.bias"] = torch.from_numpy(
                np.asarray(params[f"b{number}"][point], dtype=np.float64)
            )
    return state_dict


def build_models(net: Network, params: Params, dtype: str) -> nn.ModuleList:
    """One ``MLP`` per parameter point, holding the injected parameters in ``dtype``."""
    points = len(params[net.param_names[0]])
    with torch.device("meta"):  # no memory and no default initialisation: all is injected
        models = nn.ModuleList(MLP(net, TORCH_DTYPES[dtype]) for _ in range(points))
    models.to_empty(device="cpu")
    for point, model in enumerate(models):
        model.load_state_dict(state_dict_of(net, params, point))
    return models


def params_of_models(points: Sequence[Mapping[str, nn.Parameter]]) -> dict[str, torch.Tensor]:
    """Every point's parameters (``MLP.named_params`` of each), stacked: quantity ->
    ``(P, in, out)`` or ``(P, out)``."""
    stacked = {}
    for name in points[0]:
        tensor = torch.stack([named[name].detach() for named in points])
        stacked[param_quantity(name)] = tensor.transpose(-1, -2) if name[0] == "W" else tensor
    return stacked


def grads_of_models(points: Sequence[Mapping[str, nn.Parameter]]) -> dict[str, torch.Tensor]:
    """Every point's gradients (``.grad``), stacked like ``params_of_models``."""
    stacked = {}
    for name in points[0]:
        tensor = torch.stack([named[name].grad for named in points])
        stacked[grad_quantity(name)] = tensor.transpose(-1, -2) if name[0] == "W" else tensor
    return stacked


#: The contract's optimizer-state buffer -> torch's key in ``optimizer.state[param]``.
TORCH_STATE_KEYS = {"momentum": "momentum_buffer", "m": "exp_avg", "v": "exp_avg_sq"}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    points: Sequence[Mapping[str, nn.Parameter]],
    rule: Optimizer,
    state: State,
) -> None:
    """Put each point's optimizer state from ``state`` into ``optimizer.state``.

    SGD's momentum buffer is left out before a point's first update, so that torch applies its
    first-update rule (``buf = g``, no dampening) exactly as it would in a fresh run.
    """
    if rule.name == "sgd":
        return
    for point, named in enumerate(points):
        updates = int(state["state:step"][point])
        for name, param in named.items():
            entry: dict[str, torch.Tensor] = {}
            if rule.name != "momentum":
                entry["step"] = torch.tensor(float(updates))  # torch's own scalar dtype
            if rule.name != "momentum" or updates > 0:
                for kind in rule.state_kinds():
                    buffer = np.asarray(state[f"state:{kind}:{name}"][point])
                    tensor = torch.from_numpy(buffer.T if name[0] == "W" else buffer)
                    entry[TORCH_STATE_KEYS[kind]] = tensor.to(param.dtype).clone()
            optimizer.state[param] = entry


def optimizer_state_of(
    optimizer: torch.optim.Optimizer,
    points: Sequence[Mapping[str, nn.Parameter]],
    rule: Optimizer,
    updates: np.ndarray,
) -> dict[str, torch.Tensor]:
    """Every point's optimizer state, stacked: ``state:step`` (``updates``, SGD keeps none) and
    each buffer (zeros where torch has not made it yet)."""
    if rule.name == "sgd":
        return {}
    stacked = {"state:step": torch.from_numpy(np.asarray(updates, dtype=np.float64))}
    for kind in rule.state_kinds():
        for name in points[0]:
            buffers = []
            for named in points:
                param = named[name]
                buffer = optimizer.state[param].get(TORCH_STATE_KEYS[kind])
                buffers.append(torch.zeros_like(param) if buffer is None else buffer.detach())
            tensor = torch.stack(buffers)
            stacked[f"state:{kind}:{name}"] = tensor.transpose(-1, -2) if name[0] == "W" else tensor
    return stacked


class Ensemble:
    """``P`` independent networks, their loss and one optimizer over all of them."""

    def __init__(self, problem: Problem, state: State) -> None:
        self.problem = problem
        self.net = problem.network
        self.models = build_models(self.net, params_of(self.net, state), problem.dtype)
        self.points = [model.named_params() for model in self.models]
        self.loss = make_loss(self.net.loss)
        self.optimizer = make_optimizer(problem.optimizer, list(self.models.parameters()))
        load_optimizer_state(self.optimizer, self.points, problem.optimizer, state)
        self.updates = (
            np.array(state["state:step"], dtype=np.float64)
            if "state:step" in state
            else np.zeros(len(self.models))
        )

    def state(self) -> dict[str, torch.Tensor]:
        """The parameters and optimizer state of every point."""
        return {
            **params_of_models(self.points),
            **optimizer_state_of(self.optimizer, self.points, self.problem.optimizer, self.updates),
        }

    def forward_backward(
        self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Zero the gradients, then each point's loss on its batch and ``backward``.

        Returns:
            ``loss`` ``(P,)``, ``train_correct`` ``(P,)`` and the gradients, stacked.
        """
        self.optimizer.zero_grad()
        losses, correct = [], []
        for model, (X, Y) in zip(self.models, batches, strict=True):
            A = model(X)
            losses.append(self.loss(A, Y))
            correct.append((A.argmax(dim=-1) == Y.argmax(dim=-1)).sum())
        loss = torch.stack(losses)
        loss.sum().backward()  # each point's parameters get exactly their own loss's gradient
        return {
            "loss": loss.detach(),
            **grads_of_models(self.points),
            "train_correct": torch.stack(correct),
        }

    def update(self) -> None:
        """One optimizer step on every point."""
        self.optimizer.step()
        self.updates = self.updates + 1


def _tensor(array: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float64)).to(TORCH_DTYPES[dtype])


def _to_numpy(records: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {
        name: tensor.numpy().astype(np.int64)
        if name == "train_correct"
        else tensor.detach().to(torch.float64).numpy()
        for name, tensor in records.items()
    }


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
    """Train every point of ``initial`` for ``steps`` updates, handing records to ``sink``."""
    ensemble = Ensemble(problem, initial)
    X_all, Y_all = _tensor(X, problem.dtype), _tensor(Y, problem.dtype)
    points = len(ensemble.models)
    for start in range(0, steps + 1, chunk):
        stop = min(start + chunk, steps + 1)
        records: dict[str, list[torch.Tensor]] = {}
        for step_number, rows in zip(
            range(start, stop), problem.batches.chunk(start, stop), strict=True
        ):
            if problem.batches.full:
                batch = (X_all, Y_all)
            else:
                index = torch.from_numpy(rows)
                batch = (X_all[index], Y_all[index])
            state = ensemble.state()
            computed = ensemble.forward_backward([batch] * points)
            for name, tensor in {**computed, **state}.items():
                records.setdefault(name, []).append(tensor)
            if step_number < steps:
                ensemble.update()
        sink(start, _to_numpy({name: torch.stack(series) for name, series in records.items()}))
        if progress is not None:
            progress(stop)


def step(
    problem: Problem, states: State, X: np.ndarray, Y: np.ndarray, rows: np.ndarray | None
) -> tuple[dict[str, np.ndarray], State]:
    """One training step from each of ``P`` unrelated states: its records and the next states."""
    ensemble = Ensemble(problem, states)
    X_all, Y_all = _tensor(X, problem.dtype), _tensor(Y, problem.dtype)
    if rows is None:
        batches = [(X_all, Y_all)] * len(ensemble.models)
    else:
        indices = [torch.from_numpy(np.asarray(point_rows)) for point_rows in rows]
        batches = [(X_all[index], Y_all[index]) for index in indices]
    before = ensemble.state()
    computed = ensemble.forward_backward(batches)
    ensemble.update()
    records = _to_numpy({**computed, **before})
    return records, _to_numpy(ensemble.state())


def loss_and_grads(
    problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The loss ``(P,)`` and gradients ``{grad:W1: (P, in, out), ...}`` on all of ``X``."""
    net = problem.network
    models = build_models(net, params, problem.dtype)
    loss = make_loss(net.loss)
    X_all, Y_all = _tensor(X, problem.dtype), _tensor(Y, problem.dtype)
    losses = torch.stack([loss(model(X_all), Y_all) for model in models])
    losses.sum().backward()
    grads = grads_of_models([model.named_params() for model in models])
    return losses.detach().to(torch.float64).numpy(), _to_numpy(grads)


def predict(problem: Problem, params: Params, X: np.ndarray) -> np.ndarray:
    """The network output ``(P, R, O)`` for every parameter point."""
    models = build_models(problem.network, params, problem.dtype)
    X_all = _tensor(X, problem.dtype)
    with torch.no_grad():
        return torch.stack([model(X_all) for model in models]).to(torch.float64).numpy()


def precision_environment() -> dict[str, object]:
    """The global switches that decide torch's float32 arithmetic and its summation order."""
    return {
        "torch.float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch.backends.mkldnn.enabled": torch.backends.mkldnn.enabled,
        "torch.deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch.default_dtype": str(torch.get_default_dtype()),
        "torch.num_threads": torch.get_num_threads(),
    }


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
    """``torch.autograd.gradcheck`` of the module's loss at one point (no point axis), float64.

    The parameters are handed to the module with ``torch.func.functional_call``, so gradcheck
    perturbs exactly the tensors the module computes with.
    """
    net = problem.network
    one_point = {name: np.asarray(params[name])[None] for name in params}
    model = build_models(net, one_point, "float64")[0]
    loss = make_loss(net.loss)
    X_all, Y_all = _tensor(X, "float64"), _tensor(Y, "float64")
    names = [name for name, _ in model.named_parameters()]
    inputs = tuple(p.detach().clone().requires_grad_(True) for _, p in model.named_parameters())

    def loss_of(*tensors: torch.Tensor) -> torch.Tensor:
        outputs = torch.func.functional_call(model, dict(zip(names, tensors, strict=True)), X_all)
        return loss(outputs, Y_all)

    try:
        torch.autograd.gradcheck(loss_of, inputs, eps=step, atol=atol, rtol=rtol)
    except torch.autograd.gradcheck.GradcheckError as error:
        return {
            "checker": "torch.autograd.gradcheck",
            "passed": False,
            "error": None,
            "detail": str(error).strip().splitlines()[0],
        }
    return {
        "checker": "torch.autograd.gradcheck",
        "passed": True,
        "error": None,
        "detail": f"gradcheck passed on {len(inputs)} parameter tensors (eps={step:g})",
    }
