"""Lockstep batching: independent jobs that call models run side by side, and their calls
are merged into wide batches.

`parallel(jobs)` runs each job (a function of no arguments) in a thread of its own. A job's
calls to a `Model` do not run at once: the job waits, and when every running job is waiting
on a call (or has finished), all waiting calls run together, one merged provider call per
model and kind (generations with different token budgets share one batch on providers that
decode rows with their own budgets). Then every job gets its own results and goes on.

An audit's experiments are such jobs: each makes a handful of small calls in sequence, and
in lockstep the k-th calls of all of them form one batch instead of many small ones, which
is where a local model's throughput comes from (a decode step over 32 rows costs little
more than over one). Which calls share a batch depends only on what each job asks, never on
thread timing: every round holds exactly the next call of each job still running, in job
order. A job may itself call `parallel`; its sub-jobs join the same rounds.

A call may instead go to a *stream* (`Stream`: a provider that decodes step by step, such as
the transformers backend): its rows join the running decode batch at the next step, and it
returns to its job as soon as its own rows end, while longer rows of other calls go on
decoding. That is continuous batching; it stays deterministic because a step runs only when
every job waits, so the batch at each step depends on what the jobs asked, not on timing.

Only the thread that called `parallel` runs model calls, so a provider is never entered by
two threads at once. A job's exception is raised by `parallel` after every job has ended
(the first in job order); nothing computed by the other jobs is lost before that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

_local = threading.local()


@dataclass(eq=False)
class Call:
    """A job's queued model call."""

    key: tuple[int, ...]  # the calling job's position, for a deterministic order
    run: Callable[[Sequence[Call]], None]  # runs a group of merged calls; sets each one's result
    group: Any  # calls with equal group merge into one
    args: tuple
    stream: Callable[[], Stream] | None = None  # where the call may go instead of a round
    result: Any = None
    error: BaseException | None = None
    done: bool = False


class Stream(Protocol):
    """Calls decoded step by step in one running batch (continuous batching)."""

    def add(self, call: Call) -> list[Call]:
        """Take a call; return the calls already finished (answered without decoding)."""

    def step(self) -> list[Call]:
        """One decode step over every running row; return the calls whose rows have all ended,
        with their results set."""

    def busy(self) -> bool:
        """Whether any call is still running."""

    def fail(self, error: BaseException) -> list[Call]:
        """Drop every running call, each with `error`; return them."""


@dataclass
class _Session:
    cond: threading.Condition = field(default_factory=threading.Condition)
    running: int = 0  # jobs neither waiting on a call nor on their own sub-jobs
    pending: list[Call] = field(default_factory=list)
    shares: dict[int, float] = field(default_factory=dict)  # seconds per top-level job (see `share`)


def active() -> bool:
    """Whether the current thread is a job of a lockstep session (its model calls wait for
    a round)."""
    return getattr(_local, "session", None) is not None


def share() -> float:
    """The wall time charged so far to the current top-level job: the time from one round's end
    to the next's is split evenly between the top-level jobs with a call in that round."""
    session: _Session | None = getattr(_local, "session", None)
    return session.shares.get(_local.key[0], 0.0) if session is not None else 0.0


def submit(group: Any, run: Callable[[Sequence[Call]], None], *args: Any, stream: Callable[[], Stream] | None = None) -> Any:
    """Queue a call from the current job and wait for its result. `run(calls)` is later called
    with every queued call of the same `group`, and must set each one's `result`; or, when
    `stream` is given, the call goes to the stream it returns (one per group and session)."""
    session: _Session = _local.session
    call = Call(key=_local.key, run=run, group=group, args=args, stream=stream)
    with session.cond:
        session.pending.append(call)
        session.running -= 1
        session.cond.notify_all()
        while not call.done:
            session.cond.wait()
        # the driver counted this job as running again when it delivered the result
    if call.error is not None:
        raise call.error
    return call.result


def parallel(jobs: Sequence[Callable[[], T]], width: int | None = None) -> list[T]:
    """Run the jobs in lockstep and return their results in order (see the module doc).

    At most `width` jobs run at once (default: all); as one ends the next starts, before the
    next round, so rounds stay full. After a job fails no further job starts."""
    jobs = list(jobs)
    if len(jobs) <= 1:  # nothing to merge with; inside a session the job keeps its caller's place
        return [job() for job in jobs]
    outer: _Session | None = getattr(_local, "session", None)
    session = outer or _Session()
    base: tuple[int, ...] = getattr(_local, "key", ())
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)
    state = {"next": 0, "live": 0}  # next job to start; jobs started and not ended
    threads: list[threading.Thread] = []

    def launch() -> None:  # with session.cond held
        i = state["next"]
        state["next"] += 1
        state["live"] += 1
        session.running += 1
        t = threading.Thread(target=body, args=(i,), daemon=True)
        threads.append(t)
        t.start()

    def body(i: int) -> None:
        _local.session, _local.key = session, (*base, i)
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of parallel
            errors[i] = exc
        finally:
            with session.cond:
                session.running -= 1
                state["live"] -= 1
                if state["next"] < len(jobs) and not any(errors):
                    launch()
                elif not state["live"] and outer is not None:
                    session.running += 1  # the job waiting on these sub-jobs goes on (counted here, before any step can run)
                session.cond.notify_all()

    def finished() -> bool:
        return not state["live"]

    with session.cond:
        for _ in range(min(len(jobs), width or len(jobs))):
            launch()
        if outer is not None:
            session.running -= 1  # this job now waits on its sub-jobs
            while not finished():
                session.cond.wait()
    if outer is None:
        _drive(session, finished)
    for t in list(threads):
        t.join()
    for err in errors:
        if err is not None:
            raise err
    return results


def _drive(session: _Session, finished: Callable[[], bool]) -> None:
    """The calling thread's loop. Whenever every job waits on a call: run the waiting calls
    (round calls merged per group; stream calls added to their stream), or else advance every
    busy stream by one step. Results go back to their jobs, which run until their next call."""
    cond = session.cond
    streams: dict[Any, Stream] = {}
    outstanding: set[Call] = set()
    last = time.perf_counter()
    with cond:
        while True:
            busy = [st for st in streams.values() if st.busy()]
            if session.running == 0 and (session.pending or busy):
                calls, session.pending = sorted(session.pending, key=lambda c: c.key), []
                outstanding.update(calls)
                cond.release()
                try:
                    done = _take(calls, streams) if calls else _step(busy)
                finally:
                    cond.acquire()
                now, tops = time.perf_counter(), {c.key[0] for c in outstanding}
                for top in tops:
                    session.shares[top] = session.shares.get(top, 0.0) + (now - last) / len(tops)
                last = now
                for c in done:
                    c.done = True
                    outstanding.discard(c)
                session.running += len(done)
                cond.notify_all()
            elif finished() and not session.pending:
                return
            else:
                cond.wait()


def _take(calls: list[Call], streams: dict[Any, Stream]) -> list[Call]:
    """Run the round calls (merged per group) and hand the stream calls to their streams;
    return the calls that are done."""
    done: list[Call] = []
    groups: dict[Any, list[Call]] = {}
    for c in calls:
        if c.stream is not None:
            if c.group not in streams:
                streams[c.group] = c.stream()
            try:
                done += streams[c.group].add(c)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                c.error = exc
                done.append(c)
        else:
            groups.setdefault(c.group, []).append(c)
    for group in groups.values():
        try:
            group[0].run(group)
        except BaseException as exc:  # noqa: BLE001 - every caller of the group gets it
            for c in group:
                c.error = exc
        done += group
    return done


def _step(streams: list[Stream]) -> list[Call]:
    """One decode step of each stream; return the calls that are done (a failing stream's
    calls each with its error)."""
    done: list[Call] = []
    for st in streams:
        try:
            done += st.step()
        except BaseException as exc:  # noqa: BLE001 - every call in the stream gets it
            done += st.fail(exc)
    return done
