"""The one table of compared quantities: what each is, when it exists, and how it is judged.

Every other module (agreement, check, presentation, baselines, trajectories) asks this module
what a quantity is; none spells a quantity name or a prefix rule of its own. A quantity's name
is ``kind`` or ``kind:detail`` (``loss``, ``grad:W1``, ``state:m:W1``); the record names come
from ``implementations.contract`` (``Problem.record_names``), and ``train_correct``, the one
record that is a count, is compared as ``train_accuracy``.

Columns of the table (``Kind``):

* **per state or final.** A per-state quantity has one value at every training state ``k``
  (state ``k`` is the parameters before update ``k``); a final one exists once, for the trained
  model (the outputs, classes and accuracy on the test rows).
* **exact or float.** Counts, classes and accuracies must match exactly; floating-point values
  are judged within a tolerance (``compare.tolerances``).
* **modes.** ``independent``: each framework's own trajectory against the reference's.
  ``synced``: at the reference's state ``k`` each framework takes one full step; the quantities
  computed *at* state ``k`` (loss, gradients, correct count) are compared as ``record``, and the
  state after the step (parameters and optimizer state) as ``next-state`` against the
  reference's state ``k + 1``.
* **per update.** Gradients drive an update; the last state's gradient is recorded but no
  update follows it, so whole-trajectory files keep ``steps`` of them, not ``steps + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from implementations.contract import Batches, Problem, grad_quantity

#: The two ways frameworks are compared (``compare.tolerances.MODES`` adds ``both``).
INDEPENDENT = "independent"
SYNCED = "synced"

#: What the synced comparison takes of a quantity (see the module docstring).
RECORD = "record"
NEXT_STATE = "next-state"


@dataclass(frozen=True)
class Kind:
    """One row of the table.

    Attributes:
        name: The kind: the quantity name up to its first ``:``.
        per_state: One value per training state (else one for the trained model).
        exact: Compared exactly (counts, classes, accuracies).
        independent: Compared between independent trajectories.
        synced: ``RECORD``, ``NEXT_STATE`` or ``None`` (not compared in synced mode).
        per_update: The value drives update ``k`` (so ``steps`` values, not ``steps + 1``).
        row_sum: A sum over the batch's rows of the layer input times the backpropagated
            delta (its tolerance floor follows flushed subnormals: ``tolerances.flush_floor``).
        record: The record it is computed from (its own name when that is the record).
        description: What it is, in a few words.
    """

    name: str
    per_state: bool
    exact: bool
    independent: bool
    synced: str | None
    per_update: bool = False
    row_sum: bool = False
    record: str | None = None
    description: str = ""


#: The table. ``state:step`` (the optimizer's update count) is the one exact ``state:``.
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("loss", True, False, True, RECORD, description="the loss of step k's batch"),
        Kind(
            "grad",
            True,
            False,
            True,
            RECORD,
            per_update=True,
            row_sum=True,
            description="dL/dparameter",
        ),
        Kind(
            "train_accuracy",
            True,
            True,
            True,
            RECORD,
            record="train_correct",
            description="fraction of step k's batch whose top output is the top target",
        ),
        Kind("weight", True, False, True, NEXT_STATE, description="a weight matrix"),
        Kind("bias", True, False, True, NEXT_STATE, description="a bias vector"),
        Kind("state", True, False, True, NEXT_STATE, description="the optimizer's state"),
        Kind("test_outputs", False, False, True, None, description="outputs on the test rows"),
        Kind("test_predictions", False, True, True, None, description="classes of the test rows"),
        Kind("test_accuracy", False, True, True, None, description="accuracy on the test rows"),
    )
}

#: The optimizer's update count: a state quantity that is an integer.
STEP_COUNT = "state:step"


#: Record name -> the kind compared from it, where the two differ.
_FROM_RECORD = {kind.record: kind for kind in KINDS.values() if kind.record is not None}


def kind_of(quantity: str) -> Kind:
    """The table row of a quantity or record (``"grad:W1"`` -> the ``grad`` row,
    ``"train_correct"`` -> the ``train_accuracy`` row).

    Raises:
        KeyError: not a known quantity.
    """
    if quantity in _FROM_RECORD:
        return _FROM_RECORD[quantity]
    return KINDS[quantity.split(":", 1)[0]]


def is_exact(quantity: str) -> bool:
    """Whether ``quantity`` is compared exactly."""
    return quantity == STEP_COUNT or kind_of(quantity).exact


def is_final(quantity: str) -> bool:
    """Whether ``quantity`` exists once, for the trained model (else once per state)."""
    return not kind_of(quantity).per_state


def synced_role(quantity: str) -> str | None:
    """``RECORD``, ``NEXT_STATE`` or ``None``: how synced mode compares ``quantity``."""
    return kind_of(quantity).synced


def is_per_update(quantity: str) -> bool:
    """Whether ``quantity`` is one value per update (the last state's is not used)."""
    return kind_of(quantity).per_update


def parameter(quantity: str) -> str | None:
    """The parameter a quantity belongs to: ``"grad:W1"``, ``"state:m:W1"`` -> ``"W1"``."""
    kind = kind_of(quantity)
    if kind.name in ("weight", "bias", "grad") or (kind.name == "state" and quantity != STEP_COUNT):
        return quantity.rsplit(":", 1)[1]
    return None


def buffer(quantity: str) -> str | None:
    """The optimizer buffer of a ``state:`` quantity (``"state:m:W1"`` -> ``"m"``), or the
    ``"param"`` of a weight or bias, else ``None``."""
    kind = kind_of(quantity)
    if kind.name in ("weight", "bias"):
        return "param"
    if kind.name == "state" and quantity != STEP_COUNT:
        return quantity.split(":")[1]
    return None


def gradient_of(quantity: str) -> str | None:
    """The gradient quantity that drives a parameter or its optimizer buffers."""
    name = parameter(quantity)
    return None if name is None or kind_of(quantity).name == "grad" else grad_quantity(name)


def optimizer_buffers(problem: Problem, param: str) -> dict[str, str]:
    """The optimizer's buffers of one parameter: ``{"m": "state:m:W1", "v": "state:v:W1"}``."""
    return {
        buffer(q): q
        for q in problem.optimizer.state_names(problem.network)
        if q != STEP_COUNT and parameter(q) == param
    }


def per_state(problem: Problem, mode: str) -> tuple[str, ...]:
    """Every per-state quantity ``mode`` compares for ``problem``, in reading order:
    the loss, the gradients, the training accuracy, then the state (parameters, optimizer).

    Args:
        problem: The problem (its network and optimizer name the quantities).
        mode: ``INDEPENDENT`` or ``SYNCED``.
    """
    grads = tuple(grad_quantity(name) for name in problem.network.param_names)
    names = ("loss", *grads, "train_accuracy", *problem.state_names())
    return tuple(q for q in names if _compared_in(q, mode))


def records_at_state(problem: Problem) -> tuple[str, ...]:
    """The quantities synced mode compares at the reference's state ``k`` (``RECORD``)."""
    return tuple(q for q in per_state(problem, SYNCED) if synced_role(q) == RECORD)


def next_state(problem: Problem) -> tuple[str, ...]:
    """The quantities synced mode compares after one step (``NEXT_STATE``)."""
    return tuple(q for q in per_state(problem, SYNCED) if synced_role(q) == NEXT_STATE)


def final() -> tuple[str, ...]:
    """Every quantity of the trained model, in reading order."""
    return tuple(name for name, kind in KINDS.items() if not kind.per_state)


def _compared_in(quantity: str, mode: str) -> bool:
    kind = kind_of(quantity)
    return kind.independent if mode == INDEPENDENT else kind.synced is not None


def source(quantity: str) -> str:
    """The record a per-state quantity is read from (``train_accuracy`` -> ``train_correct``)."""
    return kind_of(quantity).record or quantity


def batch_rows(batches: Batches, steps: np.ndarray) -> np.ndarray:
    """``(n,)``: how many training rows the batch of each of ``steps`` has (the last batch of an
    epoch may be partial), without drawing the batch order."""
    steps = np.asarray(steps, dtype=np.int64)
    if batches.full:
        return np.full(steps.shape, batches.rows, dtype=np.int64)
    position = steps % batches.per_epoch
    return np.minimum(batches.size, batches.rows - position * batches.size)


def values(
    quantity: str, records: dict[str, np.ndarray], steps: np.ndarray, batches: Batches
) -> np.ndarray:
    """The compared values of a per-state quantity from records with a leading state axis.

    Args:
        quantity: A per-state quantity.
        records: Record name -> ``(n, ...)`` (any axes after the states: points, elements).
        steps: ``(n,)``: the state of each record.
        batches: The batch order (the training accuracy divides by the batch's rows).
    """
    if kind_of(quantity).record is None:
        return records[quantity]
    correct = np.asarray(records[source(quantity)], dtype=np.float64)
    rows = batch_rows(batches, steps)
    return correct / rows.reshape(rows.shape + (1,) * (correct.ndim - rows.ndim))


def state_of(problem: Problem, records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The training state (parameters and optimizer state) held in ``records``."""
    return {q: records[q] for q in problem.state_names()}


def params_of(problem: Problem, records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"W1": ..., "b1": ...}`` from records or a state keyed by quantity."""
    return {name: records[q] for name, q in problem.network.param_quantities.items()}
