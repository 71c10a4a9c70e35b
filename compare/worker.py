"""One framework's worker: trains it, serves synced steps and oracles, streams records back.

``python -m compare.worker SPEC COMMANDS RESULTS`` imports implementation ``SPEC`` at once (so
the framework's import overlaps the harness's own start-up), then serves the messages the
harness pickles onto file descriptor ``COMMANDS`` and answers on ``RESULTS``. The harness can
also run a ``Worker`` in a thread of its own process, with the same messages over queues
(``compare.harness``: module overrides and ``isolate=False``).

The messages, harness to worker: ``("setup", problem, X, Y, X_test, options)``,
``("train", initial_state)``, ``("credit", limit)``, ``("synced", job, steps, states)``,
``("oracle", state, point, params)``, ``("stop",)``, ``("close",)``. Worker to harness:
``("ready", info)``, ``("unavailable" | "plugin" | "unsupported" | "error", line, text)``,
``("progress", n)``, ``("chunk", start, stop, steps, records, own_steps)``, ``("trained", facts)``,
``("synced", job, steps, records, next_states)``, ``("oracle", state, point, results)``,
``("environment", when, switches)``, ``("closed",)``.

Flow control: the worker may compute states only below the harness's latest ``credit`` limit.
After handing over a chunk it serves whatever is queued (synced jobs, oracles) and, while it is
at the limit, waits for more credit, serving jobs meanwhile. So a worker is never more than a
few chunks ahead of the slowest comparison, and memory stays bounded whatever the step count.

This module imports nothing heavy at the top (no scikit-learn, no framework): a worker imports
only the one framework it runs.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType

import numpy as np

import implementations
from compare import oracle
from implementations.contract import Problem

#: Bytes the intermediates of one ``step`` call may take, about: a job of many states times
#: many seeds is stepped in slices of at most ``step_points`` points.
STEP_BYTES = 64 * 2**20

#: Arrays of every row and unit an implementation's ``step`` holds at once per point, about
#: (pre-activations, activations, their derivatives and gradient factors of every layer; NumPy's
#: hand-written backward measured at about six).
STEP_COPIES = 8

#: ``send(message)``; ``receive(block) -> message or None``.
Send = Callable[[tuple], None]
Receive = Callable[[bool], "tuple | None"]


#: Bytes of one layer stack's activations (float64) a ``step`` call should hold at most, and the
#: most states one call takes (``step_group``).
STEP_GROUP_BYTES = 8 * 2**20
MAX_STEP_GROUP = 512


class Stopped(Exception):
    """The harness asked the worker to stop (Ctrl-C or another worker's failure)."""


def precision_environment(module: ModuleType) -> dict[str, object]:
    """The implementation's precision switches, or ``{}`` when it does not report them."""
    describe = getattr(module, "precision_environment", None)
    return {} if describe is None else dict(describe())


def kept(steps: np.ndarray, last: int, record_every: int) -> np.ndarray:
    """Which states are compared and kept with ``record_every = K``: every K-th state, the state
    after it (a synced step needs both ends) and the last state."""
    steps = np.asarray(steps)
    return (steps % record_every <= 1) | (steps == last) if record_every > 1 else steps >= 0


def step_points(problem: Problem, rows: int) -> int:
    """Points one ``step`` call may take so that its intermediates stay near ``STEP_BYTES``.

    Each point holds ``STEP_COPIES`` arrays of every row and unit past the input; the inputs
    count once per point only where each point has rows of its own (minibatches). Full-batch
    points share one ``X`` (digits 64-2-10: counting its 64 columns per point held a call to 7
    states, where 32 fit).
    """
    widths = problem.network.widths
    per_point = 8 * max(rows, 1) * sum(widths[1:]) * STEP_COPIES
    if not problem.batches.full:
        per_point += 8 * max(rows, 1) * (widths[0] + widths[-1])
    return max(1, STEP_BYTES // per_point)


def synced_states(steps: np.ndarray, last: int, record_every: int) -> np.ndarray:
    """Which kept states the synced mode steps from: every K-th and the last."""
    steps = np.asarray(steps)
    return (steps % record_every == 0) | (steps == last)


class Worker:
    """Serves one implementation: the same code in a worker process or a harness thread."""

    def __init__(self, name: str, module: ModuleType, send: Send, receive: Receive) -> None:
        self.name = name
        self.module = module
        self._send = send
        self._receive = receive
        self.limit = 0
        self.problem: Problem | None = None
        self.X = self.Y = self.X_test = None
        self.options: dict = {}
        self._training = False
        # The last kept state of the previous chunk (its step and state), stepped from with the
        # next chunk, so that the own steps cover chunk boundaries too.
        self._carry: tuple[int, dict[str, np.ndarray]] | None = None

    def serve(self) -> None:
        """Answer messages until ``close``."""
        self._send(
            (
                "ready",
                {"pid": os.getpid(), "environment": precision_environment(self.module)},
            )
        )
        while True:
            message = self._receive(True)
            if message is None or message[0] == "close":
                self._send(("environment", "at the end", precision_environment(self.module)))
                self._send(("closed",))
                return
            self._handle(message)

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "credit":
            self.limit = max(self.limit, message[1])
        elif kind == "setup":
            self.problem, self.X, self.Y, self.X_test, self.options = message[1:]
            self.limit = self.options["credit"]
            support = getattr(self.module, "SUPPORTS", None)
            missing = [] if support is None else support.missing(self.problem)
            if missing:
                self._send(
                    ("unsupported", f"{self.name} does not support {', '.join(missing)}", "")
                )
                raise Stopped
        elif kind == "train":
            self._train(message[1])
        elif kind == "synced":
            self._synced(*message[1:])
        elif kind == "oracle":
            self._oracle(*message[1:])
        elif kind == "stop":
            raise Stopped
        else:
            raise ValueError(f"unknown message {kind!r}")

    def _serve_queued(self, block: bool) -> None:
        """Handle every queued message (``block``: wait for at least one)."""
        message = self._receive(block)
        while message is not None:
            if message[0] in ("train", "setup", "close"):
                raise ValueError(f"{message[0]!r} arrived while training")
            self._handle(message)
            message = self._receive(False)

    def _train(self, initial: dict[str, np.ndarray]) -> None:
        problem, options = self.problem, self.options
        steps, record_every = options["steps"], options["record_every"]
        names = problem.state_names()
        last_state: dict[str, np.ndarray] = {}
        waited = 0.0

        def sink(start: int, records: dict[str, np.ndarray]) -> None:
            nonlocal waited
            entered = time.perf_counter()
            stop = start + len(records["loss"])
            numbers = np.arange(start, stop)
            keep = kept(numbers, steps, record_every)
            # Indexing copies: an implementation may reuse its buffers for the next chunk. The
            # point axis (one point per seed) stays: records are ``(states, P, ...)``.
            chunk = {q: np.asarray(v)[keep] for q, v in records.items()}
            if stop == steps + 1:
                last_state.update({q: np.array(records[q][-1]) for q in names})
            stepped = self._own_step(numbers[keep], chunk) if options["own_steps"] else None
            self._send(("chunk", start, stop, numbers[keep], chunk, stepped))
            self._serve_queued(block=False)
            while stop < steps + 1 and stop >= self.limit:
                self._serve_queued(block=True)
            waited += time.perf_counter() - entered

        def progress(done: int) -> None:
            self._send(("progress", int(done)))

        self._training = True
        self._carry = None
        started = time.perf_counter()
        self.module.train(
            problem,
            initial,
            self.X,
            self.Y,
            steps,
            chunk=options["chunk"],
            sink=sink,
            progress=progress,
        )
        seconds = time.perf_counter() - started - waited
        self._training = False
        self._send(("environment", "after training", precision_environment(self.module)))
        params = {name: last_state[q] for name, q in problem.network.param_quantities.items()}
        self._send(
            (
                "trained",
                {
                    "seconds": seconds,
                    "test_outputs": np.asarray(
                        self.module.predict(problem, params, self.X_test), np.float64
                    ),
                    "train_outputs": np.asarray(
                        self.module.predict(problem, params, self.X), np.float64
                    ),
                },
            )
        )

    def _synced(self, job: int, steps: np.ndarray, states: dict[str, np.ndarray]) -> None:
        """One full step from each of the reference's ``states``."""
        records, next_states = self._step(steps, states)
        self._send(("synced", job, steps, records, next_states))

    def _own_step(self, steps: np.ndarray, chunk: dict[str, np.ndarray]):
        """One ``step`` from each of this framework's own states whose next state is recorded
        (the previous chunk's last state included), or ``None``.

        Its training loop and its ``step`` must agree at every state: a bug in the loop alone
        (a stale gradient, a missing ``zero_grad``, an update skipped every n-th step) shows
        at the first state it touches, in every dtype.

        Returns:
            ``(steps, records, next_states)``; ``steps`` may start with the previous chunk's
            last state (the harness keeps its records).
        """
        names = self.problem.state_names()
        last = self.options["steps"]
        states = {q: chunk[q] for q in names}
        if self._carry is not None and len(steps) and self._carry[0] + 1 == steps[0]:
            steps = np.concatenate([[self._carry[0]], steps])
            states = {q: np.concatenate([self._carry[1][q][None], v]) for q, v in states.items()}
        if len(steps):
            self._carry = (int(steps[-1]), {q: v[-1] for q, v in states.items()})
        consecutive = (steps[:-1] + 1 == steps[1:]) & (steps[:-1] < last)
        positions = np.flatnonzero(consecutive)
        if positions.size == 0:
            return None
        records, next_states = self._step(
            steps[positions], {q: v[positions] for q, v in states.items()}
        )
        return steps[positions], records, next_states

    def _step(self, steps: np.ndarray, states: dict[str, np.ndarray]):
        """``step`` from each of ``states`` (the states of ``steps``, shaped ``(n, P, ...)``:
        every seed's state at each step), grouped by batch length.

        The ``n`` steps times ``P`` seeds are flattened into one point axis of ``n * P`` points,
        stepped in calls of at most ``step_group`` points per batch length, and the results
        shaped back to ``(n, P, ...)``.
        """
        problem = self.problem
        n = len(steps)
        points = next(iter(states.values())).shape[1]
        flat = {q: v.reshape(n * points, *v.shape[2:]) for q, v in states.items()}
        records: dict[str, np.ndarray] = {}
        next_states: dict[str, np.ndarray] = {}
        if problem.batches.full:
            groups = [(np.arange(n * points), None)]
        else:
            rows = _rows(problem, steps)
            groups = []
            for length in sorted({len(r) for r in rows}):
                chosen = np.array([i for i, r in enumerate(rows) if len(r) == length])
                # Every seed of a step uses that step's rows.
                positions = (chosen[:, None] * points + np.arange(points)).ravel()
                groups.append(
                    (positions, np.repeat(np.stack([rows[i] for i in chosen]), points, axis=0))
                )
        for positions, group_rows in groups:
            # Slices of a bounded number of points: the intermediates of one step call grow
            # with its points times the rows. A power of two (``step_group``: a jitted step
            # compiles few shapes), fewer where many seeds would outgrow ``STEP_BYTES``.
            row_count = len(self.X) if group_rows is None else group_rows.shape[1]
            size = min(step_group(problem), step_points(problem, row_count))
            for start in range(0, len(positions), size):
                part = positions[start : start + size]
                found, after = self.module.step(
                    problem,
                    {q: v[part] for q, v in flat.items()},
                    self.X,
                    self.Y,
                    None if group_rows is None else group_rows[start : start + size],
                )
                for target, source in ((records, found), (next_states, after)):
                    for q, v in source.items():
                        v = np.asarray(v)
                        if q not in target:
                            target[q] = np.empty((n * points, *v.shape[1:]), dtype=v.dtype)
                        target[q][part] = v
        records = {
            q: np.asarray(v).reshape(n, points, *np.shape(v)[1:]) for q, v in records.items()
        }
        next_states = {
            q: np.asarray(v, dtype=np.float64).reshape(n, points, *np.shape(v)[1:])
            for q, v in next_states.items()
        }
        return records, next_states

    def _oracle(self, state: int, point: int, params: dict[str, np.ndarray]) -> None:
        results = oracle.check(self.name, self.module, self.problem, state, params, self.X, self.Y)
        self._send(("oracle", state, point, results))


def step_group(problem: Problem) -> int:
    """States per ``step`` call: a power of two whose activations fill about
    ``STEP_GROUP_BYTES``, between 1 and ``MAX_STEP_GROUP``.

    A step from many states at once saves the per-call overhead of each framework, but past a
    cache's worth of activations the elementwise passes of every layer stream from memory and
    a call of hundreds of states holds hundreds of MB. A power of two keeps the shapes a jitted
    step sees (``jax_grad`` pads to one) few.
    """
    batches = problem.batches
    rows = batches.rows if batches.full else min(batches.size, batches.rows)
    per_state = 8 * rows * sum(problem.network.widths[1:])
    fits = max(1, STEP_GROUP_BYTES // max(per_state, 1))
    return int(min(MAX_STEP_GROUP, 2 ** (int(fits).bit_length() - 1)))


def _rows(problem: Problem, steps: np.ndarray) -> list[np.ndarray]:
    """The training rows of each of ``steps`` (consecutive runs drawn a chunk at a time)."""
    steps = [int(s) for s in steps]
    if steps and steps[-1] - steps[0] == len(steps) - 1:
        return problem.batches.chunk(steps[0], steps[-1] + 1)
    return [problem.batches.indices(s) for s in steps]


def error_message(error: BaseException) -> tuple[str, str]:
    """``(last line, full traceback)`` of an exception, for the harness."""
    text = "".join(traceback.format_exception(error))
    line = "".join(traceback.format_exception_only(error)).strip().splitlines()
    return (line[-1] if line else type(error).__name__), text


def load_or_report(spec: str, send: Send) -> ModuleType | None:
    """Import ``spec``; on failure tell the harness why (install line, plugin error, crash)."""
    try:
        return implementations.load(spec)
    except implementations.FrameworkUnavailable as error:
        send(("unavailable", str(error), ""))
    except implementations.PluginError as error:
        send(("plugin", str(error), ""))
    except Exception as error:  # a bug in the implementation's import: a crash, reported
        send(("error", *error_message(error)))
    return None


def serve(name: str, module: ModuleType, send: Send, receive: Receive) -> None:
    """Run a ``Worker`` until ``close``; report any failure as an ``error`` message."""
    try:
        Worker(name, module, send, receive).serve()
    except Stopped:
        pass
    except Exception as error:
        send(("error", *error_message(error)))


def _main(spec: str, commands_fd: int, results_fd: int) -> None:
    # Ctrl-C is the harness's to handle: it kills its workers and reports the interruption once,
    # rather than each worker printing a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results = os.fdopen(results_fd, "wb")
    commands = os.fdopen(commands_fd, "rb")
    inbox: queue.Queue = queue.Queue()
    lock = threading.Lock()

    def send(message: tuple) -> None:
        with lock:
            pickle.dump(message, results, protocol=pickle.HIGHEST_PROTOCOL)
            results.flush()

    def read() -> None:
        while True:
            try:
                message = pickle.load(commands)
            except (EOFError, OSError, pickle.UnpicklingError):
                # The harness is gone (or closed us): end now, even in the middle of a job.
                os._exit(0)
            inbox.put(message)
            if message[0] == "close":
                return

    def receive(block: bool) -> tuple | None:
        try:
            return inbox.get(block=block)
        except queue.Empty:
            return None

    threading.Thread(target=read, daemon=True).start()
    module = load_or_report(spec, send)
    if module is not None:
        serve(spec, module, send, receive)
    results.close()


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
