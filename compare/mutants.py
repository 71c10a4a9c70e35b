"""Fault injection: realistic backpropagation bugs, each run through the harness to prove it bites.

A mutant is one shipped implementation with one small edit: the exact text of one line (or a
few) replaced by a buggy version, as a mutation-testing tool would. The edited source is
compiled into a fresh module object of its own; the shipped files and the registry's modules are
never touched. Each mutant's edit must match its implementation's source exactly once, so a
change to the implementations that makes a mutant stale fails loudly (``MutantError``) instead
of quietly testing nothing.

Every mutant trains beside a correct implementation (the reference) through ``harness.run`` and
is judged by ``agreement.compare_run``, exactly as ``crosscheck run`` judges frameworks. A mutant
is caught when some comparison fails; the catalogue is only worth something if all are.
Hand-written NumPy bugs are checked against JAX (autodiff cannot share them); bugs planted in
PyTorch or JAX are checked against the NumPy reference.

This module computes and returns facts; the ``crosscheck mutants`` command at the bottom prints.
"""

from __future__ import annotations

import argparse
import sys
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import implementations
from compare import agreement, harness, report
from compare.agreement import Comparison
from compare.recipe import Recipe

#: Steps a mutant trains for: enough for bugs that show only once the weights move (a sign
#: error in the update shows at step 1), short enough that the whole catalogue runs in seconds.
STEPS = 200


class MutantError(RuntimeError):
    """A mutant that cannot be built: its edit no longer matches the implementation's source."""


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: ``find`` replaced by ``replace`` in one implementation's source.

    Attributes:
        name: Short identifier (``--only`` takes it).
        description: The bug in words.
        framework: Registry name of the implementation edited.
        find: Exact source text to replace; must occur exactly once.
        replace: The buggy text.
        recipe_changes: Recipe settings this bug needs to be reachable at all, with ``why``.
        why: Why the recipe differs from the reference one (empty when it does not).
    """

    name: str
    description: str
    framework: str
    find: str
    replace: str
    recipe_changes: dict[str, object] = field(default_factory=dict)
    why: str = ""

    @property
    def reference(self) -> str:
        """The correct implementation this mutant is compared with."""
        return "jax" if self.framework == "numpy" else "numpy"

    def recipe(self, steps: int = STEPS) -> Recipe:
        """The reference recipe, shortened to ``steps``, with this mutant's changes."""
        return Recipe(**{"steps": steps, **self.recipe_changes})


CATALOGUE: tuple[Mutant, ...] = (
    Mutant(
        name="loss-typo",
        description="the tutorial's typo: (A - Y) * 2 for (A - Y) ** 2 in the loss",
        framework="numpy",
        find="squared = (A_out - Y) ** 2",
        replace="squared = (A_out - Y) * 2",
    ),
    Mutant(
        name="missing-sigmoid-derivative",
        description="delta = dL/dA, the activation's derivative factor left out",
        framework="numpy",
        find="delta = dL_dA * dA_dZ  #",
        replace="delta = dL_dA  #",
    ),
    Mutant(
        name="derivative-at-Z",
        description="sigmoid derivative taken at Z instead of A: Z (1 - Z)",
        framework="numpy",
        find="return A * (1 - A)",
        replace="return Z * (1 - Z)",
    ),
    Mutant(
        name="rows-normaliser",
        description="loss gradient divided by the rows, not the elements, of Y",
        framework="numpy",
        find="dL_dA = (layers[-1].A - Y) / Y.size",
        replace="dL_dA = (layers[-1].A - Y) / Y.shape[-2]",
    ),
    Mutant(
        name="transposed-weight",
        description="W2 for W2^T when backpropagating from the output layer to the hidden one",
        framework="numpy",
        # Written out layer by layer (as the tutorial does) the bug is one line, dA1 = dZ2 @ W2;
        # in this loop it takes a condition to hit the output layer alone.
        find="dL_dA_prev = matmul(delta, np.swapaxes(W, -1, -2))",
        replace=(
            "dL_dA_prev = matmul(delta, W if index == len(layers) - 1 else np.swapaxes(W, -1, -2))"
        ),
        recipe_changes={"hidden": (3,)},
        why="hidden width 3 makes W2 square (3x3), the only shape where this bug runs silently",
    ),
    Mutant(
        name="update-sign",
        description="gradient ascent: W += lr * dW",
        framework="torch",
        find="W -= lr * dW_i",
        replace="W += lr * dW_i",
    ),
    Mutant(
        name="off-by-one-step",
        description="step k records the gradient taken after update k",
        framework="jax",
        find="return updated, (step_loss, grads, params,",
        replace="return updated, (step_loss, value_and_grad(updated, net, X, Y)[1], params,",
    ),
    Mutant(
        name="hidden-float32",
        description="a float32 cast hidden in the forward pass of a float64 run",
        framework="jax",
        find="A = ACTIVATIONS[activation](Z)",
        replace="A = ACTIVATIONS[activation](Z.astype(jnp.float32))",
    ),
    Mutant(
        name="stop-gradient",
        description="stop_gradient on each layer's input: no gradient reaches W1",
        framework="jax",
        find="Z = A @ params[name]",
        replace="Z = jax.lax.stop_gradient(A) @ params[name]",
    ),
)


def build(mutant: Mutant) -> types.ModuleType:
    """Compile ``mutant``'s edited copy of its implementation into a new module object.

    Raises:
        implementations.FrameworkUnavailable: the framework is not installed.
        MutantError: the edit does not match the source exactly once.
    """
    original = implementations.load(mutant.framework)  # also flips JAX's x64 switch first
    path = Path(original.__file__)
    source = path.read_text()
    found = source.count(mutant.find)
    if found != 1:
        raise MutantError(
            f"mutant {mutant.name} no longer applies: {mutant.find!r} occurs {found} times "
            f"in {path.name} (expected once)"
        )
    mutated = source.replace(mutant.find, mutant.replace)
    module = types.ModuleType(f"{original.__name__}__mutant_{mutant.name.replace('-', '_')}")
    module.__file__ = str(path)
    # Registered while it executes: dataclasses and typing look a class's module up by name.
    sys.modules[module.__name__] = module
    try:
        exec(compile(mutated, f"{path} ({mutant.name} mutant)", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


@dataclass(frozen=True)
class MutantResult:
    """What the harness made of one mutant.

    Attributes:
        mutant: The mutant run.
        comparisons: Every comparison of the mutant with its reference.
        error: Set when the mutant crashed instead of training (it is then not caught: a bug
            that crashes needs no cross-check, so the catalogue must hold only silent ones).
    """

    mutant: Mutant
    comparisons: tuple[Comparison, ...] = ()
    error: str | None = None

    @property
    def first_failure(self) -> Comparison | None:
        """The comparison that failed earliest, or ``None`` when the mutant escaped."""
        return report.first_failure(list(self.comparisons))

    @property
    def caught(self) -> bool:
        """Some comparison failed."""
        return self.error is None and self.first_failure is not None


def run_mutant(mutant: Mutant, steps: int = STEPS) -> MutantResult:
    """Train ``mutant`` beside its reference on its recipe and compare them.

    A mutant that cannot be built (``MutantError``) or crashes is returned with ``error`` set.

    Raises:
        implementations.FrameworkUnavailable: a framework it needs is not installed.
    """
    try:
        module = build(mutant)
    except MutantError as error:
        return MutantResult(mutant, error=str(error))
    modules = {
        mutant.reference: implementations.load(mutant.reference),
        mutant.framework: module,
    }
    try:
        # Bugs overflow and divide by zero; that is for the comparison to judge, not to warn about.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            result = harness.run(
                mutant.recipe(steps), [mutant.framework], mutant.reference, modules=modules
            )
    except Exception as error:  # a crashing mutant is a result to report, not a failure here
        return MutantResult(mutant, error=f"{type(error).__name__}: {error}")
    return MutantResult(mutant, tuple(agreement.compare_run(result)))


def run_catalogue(mutants: Sequence[Mutant] = CATALOGUE, steps: int = STEPS) -> list[MutantResult]:
    """``run_mutant`` for each of ``mutants``, in order."""
    return [run_mutant(mutant, steps) for mutant in mutants]


def exit_code(results: Sequence[MutantResult]) -> int:
    """0 when every mutant was caught, 1 when any escaped or crashed."""
    return 0 if all(result.caught for result in results) else 1


# The command ---------------------------------------------------------------------------------


def add_parsers(commands) -> None:
    """Register ``crosscheck mutants``."""
    from compare import cli

    parser = commands.add_parser(
        "mutants",
        help="plant realistic backprop bugs and show that the cross-check catches each one",
        description="Run a catalogue of deliberately wrong implementations through the harness. "
        "Exit 0 when every mutant is caught, 1 when any escapes, 2 on bad input.",
    )
    parser.add_argument(
        "--only",
        type=cli._choice_list([m.name for m in CATALOGUE], "mutant"),
        metavar="NAME[,NAME...]",
        help="run only these mutants (default: all)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=STEPS,
        help="gradient-descent steps each mutant trains (default: %(default)s)",
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the table as Markdown"
    )
    parser.add_argument(
        "--force", action="store_true", help="let --markdown replace a file it did not write"
    )
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace, console) -> int:
    from compare import cli, files

    if args.steps < 1:
        raise cli.UsageError(f"steps must be a positive integer, got {args.steps}")
    if args.markdown is not None:
        files.check_writable(args.markdown, schema=report.MARKDOWN_SCHEMA, force=args.force)
    chosen = [m for m in CATALOGUE if args.only is None or m.name in args.only]
    results = run_catalogue(chosen, args.steps)
    report.render_mutants(console, results)
    if args.markdown is not None:
        files.write_atomic(args.markdown, report.mutants_markdown(results))
    return exit_code(results)
