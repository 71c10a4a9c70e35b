"""The one runner: a worker per framework, records streamed in chunks, compared as they arrive.

Every framework runs in a worker (``compare.worker``): a ``python -m compare.worker SPEC``
process of its own, or, for module overrides and ``isolate=False``, a thread of this process
that speaks the same messages over queues. Workers are started (``Workers``) before the caller
loads the data, so each framework's import overlaps scikit-learn's. Then ``run``:

* every training framework trains from the same initial state and hands over the records of
  its states in chunks (``implementations.contract``: ``train(..., chunk, sink)``);
* the reference's chunks are kept only until every comparison that needs them is done; each
  other framework's chunk is compared with the reference's chunk of the same states as soon as
  both are here, then dropped (independent mode);
* for every reference state ``k`` each other framework runs one full ``step`` from it in its
  worker (batched over a chunk's states), and its records at ``k`` and its state ``k + 1`` are
  compared with the reference's (synced mode); a worker serves these jobs while it trains;
* every training worker also steps from each of its own states (mode synced or both), so a bug
  in its training loop alone (not in its ``step``) shows at the first state it touches;
* the gradient oracles run in every worker at a few of the reference's states;
* flow control bounds memory: a worker may compute only up to a credit limit the harness
  raises as comparisons finish, so no framework runs more than a few chunks ahead of the
  slowest comparison, whatever the number of steps.

What is compared how is the consumer's business (``compare.check``); the harness only aligns
the states and drives the workers. Ctrl-C kills the workers at once and re-raises.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

import implementations
from compare import agreement
from compare import worker as worker_module
from compare.recipe import RecipeError
from implementations.contract import Problem, State

#: Called as ``progress(framework, states_done, states_total)``.
Progress = Callable[[str, int, int], None]

#: A chunk holds about this many bytes of records, at most ``MAX_CHUNK`` states, and about
#: ``CHUNK_SEED_BYTES`` of each seed's (``chunk_size``).
CHUNK_BYTES = 8 * 2**20
CHUNK_SEED_BYTES = 2 * 2**20
MAX_CHUNK = 500

#: How many chunks a worker may run ahead of the slowest comparison that needs its records.
WINDOW_CHUNKS = 3

#: Copies of a chunk alive at once: the implementation's, the pickle in the pipe, the harness's,
#: and the records and next states of the worker's steps from its own states, sent with it.
CHUNK_COPIES = 4

#: Memory of a worker process before any record (an imported framework: torch and JAX take a
#: few hundred MB; NumPy far less).
WORKER_BASELINE_BYTES = 400 * 2**20

#: Bytes the consumer holds per comparison and seed, whatever the steps: an accumulator's plot
#: bins (``agreement.PLOT_POINTS`` floats) and its few numbers and growth curve. A sweep's
#: seeds each hold every comparison, so with thousands of seeds this outweighs the chunks.
COMPARISON_BYTES = 8 * agreement.PLOT_POINTS + 4096

#: Share of the available memory a run may plan to use.
MEMORY_SHARE = 0.8

#: Seconds between checks for Ctrl-C and dead workers while waiting for messages.
POLL_SECONDS = 0.2

#: Seconds a worker whose pipe closed is given to exit, before its exit status is read.
EXIT_SECONDS = 5.0


class WorkerError(RuntimeError):
    """A framework's worker failed; the message ends with its last error line."""


class Unsupported(RecipeError):
    """A recipe outside what an implementation declares it covers (``SUPPORTS``); one line."""


class TooLarge(RuntimeError):
    """A run refused up front: its estimated memory exceeds what the machine has (one line)."""


@dataclass(frozen=True)
class Plan:
    """What ``run`` does.

    Attributes:
        problem: Network, optimizer, dtype and batch order.
        initial: State 0 with a point axis ``P``: one point per seed, trained side by side
            (``contract.initial_state``).
        X: Training inputs (float64).
        Y: Training targets (float64).
        X_test: Test inputs (float64).
        steps: Number of updates.
        reference: The reference framework (trains in every mode).
        frameworks: Every framework, the reference first.
        trainers: Frameworks that train (the reference; every one unless mode is synced).
        independent: Frameworks whose own trajectory is compared with the reference's.
        synced: Frameworks that step from the reference's states.
        chunk: States per chunk.
        record_every: Compare and keep every K-th state (and the one after it).
        oracle_states: States at which every framework runs the gradient oracles.
        oracle_points: The points (seeds) the oracles run at: they check gradient formulas,
            which do not depend on the seed, so a sweep runs them for its first seed or few.
    """

    problem: Problem
    initial: State
    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    steps: int
    reference: str
    frameworks: tuple[str, ...]
    trainers: tuple[str, ...]
    independent: tuple[str, ...]
    synced: tuple[str, ...]
    chunk: int
    record_every: int = 1
    oracle_states: tuple[int, ...] = ()
    oracle_points: tuple[int, ...] = (0,)

    @property
    def points(self) -> int:
        """``P``: the seeds trained side by side."""
        return len(next(iter(self.initial.values())))

    @property
    def window(self) -> int:
        """States a worker may run ahead of the slowest comparison that needs its records."""
        return WINDOW_CHUNKS * self.chunk


class Consumer(Protocol):
    """What the harness hands over as records arrive (``compare.check`` implements it).

    Every ``records`` argument maps quantity -> ``(n, P, ...)`` for the states ``steps`` and the
    plan's ``P`` points (seeds); calls for one framework and one kind come in step order.
    """

    def reference_chunk(self, steps: np.ndarray, records: dict) -> dict:
        """The reference's records; returns per-state annotations stored along with them."""

    def framework_chunk(self, framework: str, steps: np.ndarray, records: dict) -> None:
        """Any training framework's own records (the reference's too)."""

    def independent(self, framework: str, steps: np.ndarray, actual: dict, expected: dict) -> None:
        """A framework's own records and the reference's (with annotations) at ``steps``."""

    def synced_records(
        self, framework: str, steps: np.ndarray, actual: dict, expected: dict
    ) -> None:
        """A framework's records at the reference's states ``steps``, and the reference's."""

    def synced_next(
        self, framework: str, steps: np.ndarray, actual: dict, expected: dict, before: dict
    ) -> None:
        """A framework's state after one step from the reference's ``steps``, the reference's
        records at ``steps + 1`` (``expected``) and at ``steps`` (``before``)."""

    def own_step(
        self,
        framework: str,
        steps: np.ndarray,
        actual: dict,
        actual_next: dict,
        expected: dict,
        expected_next: dict,
    ) -> None:
        """A framework's ``step`` from its own states ``steps`` (records and next state), and
        its training loop's records at ``steps`` and ``steps + 1``."""

    def trained(self, framework: str, facts: dict) -> None:
        """A framework finished training: seconds, test and train outputs of its model."""

    def oracle(self, framework: str, state: int, point: int, results: list) -> None:
        """A framework's oracle results at the reference's ``state`` of point ``point``."""

    def environment(self, framework: str, when: str, switches: dict) -> None:
        """A reading of a framework's precision switches."""


def chunk_size(problem: Problem, points: int = 1) -> int:
    """States per chunk: at most ``CHUNK_BYTES`` of records of ``points`` seeds and
    ``CHUNK_SEED_BYTES`` of one seed's, between 1 and ``MAX_CHUNK``.

    A chunk costs a fixed amount besides its states (messages, a compiled call, a pass of
    every seed's judge), so many seeds want long chunks, bounded by ``CHUNK_BYTES``. One seed of
    a wide network needs no long ones: digits 64-64-10 (76 kB a state) spends about 10 ms of
    arithmetic a state, and 27 states a chunk instead of 110 keep a quarter of the records in
    flight (``CHUNK_COPIES`` times the window, per framework).
    """
    fits = min(
        CHUNK_BYTES // state_bytes(problem, points), CHUNK_SEED_BYTES // state_bytes(problem)
    )
    return max(1, min(MAX_CHUNK, fits))


def state_bytes(problem: Problem, points: int = 1) -> int:
    """Bytes of the records of one state of ``points`` seeds (float64): loss, gradients,
    count, state."""
    params = problem.network.size
    buffers = len(problem.optimizer.state_kinds())
    return 8 * (2 + 2 * params + buffers * params + 1) * points


def estimate_memory(plan: Plan, trajectories: bool, processes: int) -> dict[str, int]:
    """Bytes the run is expected to need, by part.

    Args:
        plan: The run.
        trajectories: Whole trajectories are kept (every kept state of every trainer).
        processes: Worker processes (each holds an imported framework).
    """
    per_state = state_bytes(plan.problem, plan.points)
    frameworks = len(plan.frameworks)
    step_row_bytes = 8 * sum(plan.problem.network.widths) * worker_module.STEP_COPIES
    in_flight = (plan.window + 2 * plan.chunk) * per_state * CHUNK_COPIES * frameworks
    data = (plan.X.nbytes + plan.Y.nbytes + plan.X_test.nbytes) * (frameworks + 1)
    kept_states = (
        (plan.steps + 1) if plan.record_every == 1 else 2 * (plan.steps // plan.record_every + 1)
    )
    whole = kept_states * per_state * len(plan.trainers) * 2 if trajectories else 0
    # Per seed: every record compared by each independent framework, twice by each synced one
    # (its records and next state), twice by each trainer's own steps; a loss curve per trainer.
    own = 2 * len(plan.trainers) if plan.synced else 0
    series = len(plan.independent) + 2 * len(plan.synced) + own
    comparisons = len(plan.problem.record_names()) * series + len(plan.trainers)
    return {
        "records in flight": in_flight,
        "data": data,
        "workers": processes * WORKER_BASELINE_BYTES,
        "trajectories": whole,
        "comparisons": plan.points * comparisons * COMPARISON_BYTES,
        # Each framework's training intermediates (every seed's activations on every row) and
        # one step call's (bounded by ``worker.STEP_BYTES``).
        "computation": frameworks
        * (
            min(worker_module.STEP_BYTES, plan.points * len(plan.X) * step_row_bytes)
            + plan.points * len(plan.X) * step_row_bytes
        ),
    }


def available_memory() -> int | None:
    """Bytes of memory available to new work (``MemAvailable``), or ``None`` if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_memory(plan: Plan, trajectories: bool, processes: int) -> None:
    """Refuse a run whose estimated memory exceeds what the machine has.

    Raises:
        TooLarge: one line with the estimate and what to change.
    """
    available = available_memory()
    if available is None:
        return
    parts = estimate_memory(plan, trajectories, processes)
    total = sum(parts.values())
    if total <= MEMORY_SHARE * available:
        return
    gb = 2**30
    if parts["trajectories"] > max(parts["records in flight"], parts["comparisons"]):
        fix = (
            "keep fewer states (--record-every K keeps every K-th) or run fewer steps, or "
            "do not ask for whole trajectories"
        )
    elif plan.points > 1:
        fix = "the records and comparisons of this many seeds are too large; check fewer at once"
    else:
        fix = "the network's records are too large for one chunk; use a smaller network"
    raise TooLarge(
        f"this run would need about {total / gb:.1f} GB of memory "
        f"({', '.join(f'{k} {v / gb:.1f} GB' for k, v in parts.items() if v)}) and "
        f"{available / gb:.1f} GB is available: {fix}"
    )


class _Handle:
    """One worker, as the harness sees it: where to send, how to stop it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pid: int | None = None

    def send(self, message: tuple) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def last_error_line(self) -> str:
        return ""

    def finish(self) -> None:
        """Release what the worker held, after it closed."""


class _ProcessHandle(_Handle):
    """A ``python -m compare.worker`` process, talking over two pipes."""

    def __init__(self, name: str, spec: str, inbox: queue.Queue, folder: Path) -> None:
        super().__init__(name)
        self._errors_path = folder / f"{len(list(folder.iterdir()))}.err"
        commands_read, commands_write = os.pipe()
        results_read, results_write = os.pipe()
        environment = {**os.environ}
        # One OpenMP thread per worker unless the user chose otherwise: these networks' arrays
        # are far below the size at which intra-op threads pay, and with the frameworks
        # training side by side, spinning OpenMP threads starve the other workers.
        environment.setdefault("OMP_NUM_THREADS", "1")
        # The worker imports the same compare and implementations packages as this process.
        root = str(Path(worker_module.__file__).resolve().parents[1])
        environment["PYTHONPATH"] = os.pathsep.join(
            [root, *filter(None, [environment.get("PYTHONPATH")])]
        )
        with self._errors_path.open("wb") as errors:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "compare.worker",
                    spec,
                    str(commands_read),
                    str(results_write),
                ],
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
                env=environment,
                pass_fds=(commands_read, results_write),
            )
        os.close(commands_read)
        os.close(results_write)
        self.pid = self.process.pid
        self._commands = os.fdopen(commands_write, "wb")
        self._results = os.fdopen(results_read, "rb")
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(inbox,), daemon=True).start()

    def _read(self, inbox: queue.Queue) -> None:
        while True:
            try:
                message = pickle.load(self._results)
            except Exception:  # end of the pipe: the worker exited (or was killed)
                inbox.put((self.name, ("exited",)))
                return
            inbox.put((self.name, message))

    def send(self, message: tuple) -> None:
        with self._lock, contextlib.suppress(BrokenPipeError, ValueError, OSError):
            pickle.dump(message, self._commands, protocol=pickle.HIGHEST_PROTOCOL)
            self._commands.flush()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.finish()

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._commands.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def last_error_line(self) -> str:
        # Its results pipe closed because it is exiting: give it a moment to be reaped, so that
        # its last words and exit status are known.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=EXIT_SECONDS)
        with contextlib.suppress(OSError):
            text = self._errors_path.read_text(errors="replace")
            lines = [line for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        code = self.process.poll()
        return f"exit status {code}" if code is not None else "it stopped answering"


#: Serialises the imports of in-process workers (see ``_ThreadHandle``).
_THREAD_IMPORTS = threading.Lock()


class _ThreadHandle(_Handle):
    """A ``compare.worker.Worker`` in a daemon thread of this process."""

    def __init__(self, name: str, spec: str, module: ModuleType | None, inbox: queue.Queue) -> None:
        super().__init__(name)
        self.pid = os.getpid()
        self._queue: queue.Queue = queue.Queue()

        def send(message: tuple) -> None:
            inbox.put((name, message))

        def receive(block: bool) -> tuple | None:
            try:
                return self._queue.get(block=block)
            except queue.Empty:
                return None

        def main() -> None:
            if module is not None:
                loaded = module
            else:
                # One import at a time: CPython 3.11's AST constructor is not thread-safe
                # ("SystemError: AST constructor recursion depth mismatch" when two threads
                # build ASTs at once, as imports of torch and JAX can).
                with _THREAD_IMPORTS:
                    loaded = worker_module.load_or_report(spec, send)
            if loaded is not None:
                worker_module.serve(name, loaded, send, receive)

        self._thread = threading.Thread(target=main, name=f"crosscheck-{name}", daemon=True)
        self._thread.start()

    def send(self, message: tuple) -> None:
        self._queue.put(message)

    def kill(self) -> None:
        # A thread cannot be killed: it stops at its next chunk (daemon, so it never blocks exit).
        self._queue.put(("stop",))


class Workers:
    """One worker per framework, started at once so that their imports overlap the caller's.

    Use as a context manager: leaving it early (an error, Ctrl-C) kills every worker.
    """

    def __init__(
        self,
        frameworks: Sequence[str],
        *,
        modules: Mapping[str, ModuleType] | None = None,
        isolate: bool = True,
    ) -> None:
        """
        Args:
            frameworks: Specs of the frameworks (registry names, plugin paths or modules).
            modules: Implementations to use instead of the registry's, by name (run in threads).
            isolate: Run every other framework in a worker process of its own (else a thread).
        """
        self.inbox: queue.Queue = queue.Queue()
        self._folder = tempfile.TemporaryDirectory(prefix="crosscheck-")
        self.handles: dict[str, _Handle] = {}
        modules = dict(modules or {})
        for name in frameworks:
            if name in modules or not isolate:
                handle = _ThreadHandle(name, name, modules.get(name), self.inbox)
            else:
                handle = _ProcessHandle(name, name, self.inbox, Path(self._folder.name))
            self.handles[name] = handle

    @property
    def processes(self) -> int:
        """How many workers are processes."""
        return sum(isinstance(h, _ProcessHandle) for h in self.handles.values())

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close(kill=exc_info[0] is not None)

    def close(self, kill: bool = True) -> None:
        """End every worker (``kill``: at once) and remove the temporary folder."""
        for handle in self.handles.values():
            if kill:
                handle.kill()
            else:
                handle.finish()
        with contextlib.suppress(OSError):
            self._folder.cleanup()


@dataclass
class _Chunk:
    start: int
    stop: int
    steps: np.ndarray
    records: dict


class _ReferenceStore:
    """The reference's chunks still needed by some comparison."""

    def __init__(self) -> None:
        self.chunks: deque[_Chunk] = deque()

    def add(self, chunk: _Chunk) -> None:
        self.chunks.append(chunk)

    def gather(self, steps: np.ndarray) -> dict:
        """The records of ``steps`` (sorted, all stored), concatenated."""
        pieces: list[dict] = []
        for chunk in self.chunks:
            if len(steps) == 0:
                break
            if chunk.stop <= steps[0] or chunk.start > steps[-1] or len(chunk.steps) == 0:
                continue
            positions = np.searchsorted(chunk.steps, steps)
            inside = (positions < len(chunk.steps)) & (
                chunk.steps[np.minimum(positions, len(chunk.steps) - 1)] == steps
            )
            if inside.any():
                pieces.append({q: v[positions[inside]] for q, v in chunk.records.items()})
        if len(pieces) == 1:
            return pieces[0]
        if not pieces:
            raise KeyError(f"reference states {steps[:3]}... are not stored")
        return {q: np.concatenate([p[q] for p in pieces]) for q in pieces[0]}

    def drop_before(self, low: int) -> None:
        """Forget every chunk whose states are all below ``low``."""
        while self.chunks and self.chunks[0].stop <= low:
            self.chunks.popleft()

    @property
    def states(self) -> int:
        """States held."""
        return sum(len(chunk.steps) for chunk in self.chunks)


@dataclass(frozen=True)
class RunStats:
    """What the harness held at most during a run (the bound on its memory).

    Attributes:
        chunk: States per chunk.
        window: States a worker may run ahead of the slowest comparison.
        reference_states: Most reference states stored at once.
        pending_states: Most other frameworks' states waiting for the reference at once.
    """

    chunk: int
    window: int
    reference_states: int
    pending_states: int


def run(
    workers: Workers, plan: Plan, consumer: Consumer, progress: Progress | None = None
) -> RunStats:
    """Train, step and check every framework of ``plan`` in ``workers``, handing records to
    ``consumer`` as they arrive; return what the harness held at most.

    Raises:
        implementations.FrameworkUnavailable: a worker cannot import its framework.
        implementations.PluginError: a plugin cannot be used.
        WorkerError: a worker failed.
        KeyboardInterrupt: Ctrl-C (the workers are killed first).
    """
    session = _Session(workers, plan, consumer, progress)
    session.run()
    return RunStats(
        plan.chunk, plan.window, session.peak_reference_states, session.peak_pending_states
    )


class _Session:
    """The state of one ``run``: cursors, stored reference records, jobs in flight."""

    def __init__(
        self, workers: Workers, plan: Plan, consumer: Consumer, progress: Progress | None
    ) -> None:
        self.workers = workers
        self.plan = plan
        self.consumer = consumer
        self.progress = progress
        self.store = _ReferenceStore()
        self.reference_frontier = 0
        self.pending: dict[str, deque[_Chunk]] = {f: deque() for f in plan.independent}
        self.independent_cursor = dict.fromkeys(plan.independent, 0)
        self.jobs: dict[str, deque[tuple[int, int]]] = {f: deque() for f in plan.synced}
        self.waiting_next: dict[str, deque[_Chunk]] = {f: deque() for f in plan.synced}
        self.next_job = 0
        self.oracles_out = 0
        self.trained: set[str] = set()
        self.closed: set[str] = set()
        self.credit: dict[str, int] = {}
        self.own_previous: dict[str, tuple[int, dict]] = {}
        self.state_names = plan.problem.state_names()
        self.peak_reference_states = 0
        self.peak_pending_states = 0

    def run(self) -> None:
        plan = self.plan
        options = {
            "steps": plan.steps,
            "chunk": plan.chunk,
            "record_every": plan.record_every,
            "credit": plan.window,
            "own_steps": bool(plan.synced),
        }
        for name in plan.frameworks:
            self._send(name, ("setup", plan.problem, plan.X, plan.Y, plan.X_test, options))
            self.credit[name] = plan.window
        for name in plan.trainers:
            self._send(name, ("train", plan.initial))
        while not self._finished():
            self._handle(*self._next_message())
        for name in plan.frameworks:
            self._send(name, ("close",))
        while len(self.closed) < len(plan.frameworks):
            self._handle(*self._next_message())
        for handle in self.workers.handles.values():
            handle.finish()

    def _send(self, name: str, message: tuple) -> None:
        self.workers.handles[name].send(message)

    def _next_message(self) -> tuple[str, tuple]:
        while True:
            try:
                return self.workers.inbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue

    def _finished(self) -> bool:
        return (
            len(self.trained) == len(self.plan.trainers)
            and not any(self.jobs.values())
            and not any(self.waiting_next.values())
            and not any(self.pending.values())
            and self.oracles_out == 0
        )

    def _handle(self, name: str, message: tuple) -> None:
        kind = message[0]
        if kind == "chunk":
            _, start, stop, steps, records, stepped = message
            chunk = _Chunk(start, stop, np.asarray(steps, dtype=np.int64), records)
            if name == self.plan.reference:
                self._reference_chunk(chunk)
            else:
                self._framework_chunk(name, chunk)
            if stepped is not None:
                self._own_steps(name, chunk, *stepped)
            if self.plan.synced:
                self._remember_last(name, chunk)
            self._advance()
        elif kind == "synced":
            self._synced_result(name, *message[1:])
            self._advance()
        elif kind == "progress":
            if self.progress is not None:
                self.progress(name, message[1], self.plan.steps + 1)
        elif kind == "trained":
            self.trained.add(name)
            self.consumer.trained(name, message[1])
        elif kind == "oracle":
            self.oracles_out -= 1
            self.consumer.oracle(name, *message[1:])
        elif kind == "environment":
            self.consumer.environment(name, message[1], message[2])
        elif kind == "ready":
            self.workers.handles[name].pid = message[1]["pid"]
            self.consumer.environment(name, "at the start", message[1]["environment"])
        elif kind == "closed":
            self.closed.add(name)
        elif kind == "unavailable":
            raise implementations.FrameworkUnavailable(message[1])
        elif kind == "plugin":
            raise implementations.PluginError(message[1])
        elif kind == "unsupported":
            raise Unsupported(message[1])
        elif kind == "error":
            raise WorkerError(f"the {name} worker failed: {message[1]}")
        elif kind == "exited":
            if name not in self.closed:
                line = self.workers.handles[name].last_error_line()
                raise WorkerError(f"the {name} worker failed: {line}")
        else:
            raise WorkerError(f"the {name} worker sent an unknown message {kind!r}")

    def _reference_chunk(self, chunk: _Chunk) -> None:
        plan = self.plan
        chunk.records.update(self.consumer.reference_chunk(chunk.steps, chunk.records))
        self.consumer.framework_chunk(plan.reference, chunk.steps, chunk.records)
        self.store.add(chunk)
        self.reference_frontier = chunk.stop
        mask = worker_module.synced_states(chunk.steps, plan.steps, plan.record_every)
        if plan.synced and mask.any():
            steps = chunk.steps[mask]
            states = {q: chunk.records[q][mask] for q in self.state_names}
            for name in plan.synced:
                self._send(name, ("synced", self.next_job, steps, states))
                self.jobs[name].append((self.next_job, int(steps[0])))
            self.next_job += 1
        for state in plan.oracle_states:
            position = np.searchsorted(chunk.steps, state)
            if position < len(chunk.steps) and chunk.steps[position] == state:
                for point in plan.oracle_points:
                    params = {
                        name: chunk.records[q][position, point]
                        for name, q in plan.problem.network.param_quantities.items()
                    }
                    if all(np.isfinite(p).all() for p in params.values()):
                        for name in plan.frameworks:
                            self._send(name, ("oracle", state, point, params))
                            self.oracles_out += 1

    def _framework_chunk(self, name: str, chunk: _Chunk) -> None:
        self.consumer.framework_chunk(name, chunk.steps, chunk.records)
        if name in self.pending:
            self.pending[name].append(chunk)

    def _own_steps(
        self, name: str, chunk: _Chunk, steps: np.ndarray, records: dict, next_states: dict
    ) -> None:
        steps = np.asarray(steps, dtype=np.int64)
        known_steps, known = chunk.steps, chunk.records
        previous = self.own_previous.get(name)
        if previous is not None and len(steps) and steps[0] == previous[0]:
            # The worker stepped from the previous chunk's last state too (a chunk boundary).
            known_steps = np.concatenate([[previous[0]], chunk.steps])
            known = {q: np.concatenate([previous[1][q][None], v]) for q, v in known.items()}
        at = np.searchsorted(known_steps, steps)
        after = np.searchsorted(known_steps, steps + 1)
        own = {q: v[at] for q, v in known.items()}
        own_next = {q: v[after] for q, v in known.items()}
        self.consumer.own_step(name, steps, records, next_states, own, own_next)

    def _remember_last(self, name: str, chunk: _Chunk) -> None:
        """Keep a chunk's last state's records: the next chunk's own steps may start there."""
        if len(chunk.steps):
            last = int(chunk.steps[-1])
            self.own_previous[name] = (last, {q: v[-1] for q, v in chunk.records.items()})

    def _synced_result(
        self, name: str, job: int, steps: np.ndarray, records: dict, next_states: dict
    ) -> None:
        expected_job, _ = self.jobs[name].popleft()
        if job != expected_job:
            raise WorkerError(f"the {name} worker answered job {job} out of order")
        steps = np.asarray(steps, dtype=np.int64)
        self.consumer.synced_records(name, steps, records, self.store.gather(steps))
        # The state after the last state is never compared: no update follows it.
        has_next = steps < self.plan.steps
        if has_next.any():
            following = _Chunk(
                int(steps[0]),
                int(steps[-1]) + 1,
                steps[has_next],
                {q: v[has_next] for q, v in next_states.items()},
            )
            self.waiting_next[name].append(following)
        if self.progress is not None and name not in self.plan.trainers:
            self.progress(name, int(steps[-1]) + 1, self.plan.steps + 1)

    def _advance(self) -> None:
        """Compare whatever has both sides here, drop what nothing needs, grant credit."""
        for name, chunks in self.pending.items():
            while chunks:
                chunk = chunks[0]
                ready = chunk.steps < self.reference_frontier
                if ready.any():
                    steps = chunk.steps[ready]
                    actual = {q: v[ready] for q, v in chunk.records.items()}
                    self.consumer.independent(name, steps, actual, self.store.gather(steps))
                if ready.all():
                    chunks.popleft()
                    self.independent_cursor[name] = chunk.stop
                    continue
                chunks[0] = _Chunk(
                    int(chunk.steps[~ready][0]),
                    chunk.stop,
                    chunk.steps[~ready],
                    {q: v[~ready] for q, v in chunk.records.items()},
                )
                self.independent_cursor[name] = self.reference_frontier
                break
        for name, chunks in self.waiting_next.items():
            while chunks:
                chunk = chunks[0]
                ready = chunk.steps + 1 < self.reference_frontier
                if ready.any():
                    steps = chunk.steps[ready]
                    self.consumer.synced_next(
                        name,
                        steps,
                        {q: v[ready] for q, v in chunk.records.items()},
                        self.store.gather(steps + 1),
                        self.store.gather(steps),
                    )
                if ready.all():
                    chunks.popleft()
                    continue
                chunks[0] = _Chunk(
                    int(chunk.steps[~ready][0]),
                    chunk.stop,
                    chunk.steps[~ready],
                    {q: v[~ready] for q, v in chunk.records.items()},
                )
                break
        low = self._lowest_needed()
        self.store.drop_before(low)
        waiting = sum(len(c.steps) for chunks in self.pending.values() for c in chunks)
        waiting += sum(len(c.steps) for chunks in self.waiting_next.values() for c in chunks)
        self.peak_pending_states = max(self.peak_pending_states, waiting)
        self.peak_reference_states = max(self.peak_reference_states, self.store.states)
        self._grant(self.plan.reference, low + self.plan.window)
        for name in self.plan.trainers:
            if name != self.plan.reference:
                self._grant(name, self.reference_frontier + self.plan.window)

    def _lowest_needed(self) -> int:
        """The lowest state some comparison still needs the reference's records of."""
        needed = [self.reference_frontier]
        for name in self.plan.independent:
            needed.append(self.independent_cursor[name])
        for name in self.plan.synced:
            if self.jobs[name]:
                needed.append(self.jobs[name][0][1])
            if self.waiting_next[name]:
                needed.append(int(self.waiting_next[name][0].steps[0]))
        return min(needed)

    def _grant(self, name: str, limit: int) -> None:
        if limit > self.credit[name]:
            self.credit[name] = limit
            self._send(name, ("credit", limit))
