"""Lockstep batching: jobs' model calls merge into shared batches, deterministically."""

import random
import threading
import time

import pytest

from cotscope import GenerationParams, Prompt
from cotscope.backends import Completion, Model
from cotscope.backends import lockstep
from cotscope.backends.base import Backend


class Recorder(Backend):
    """Answers `<question> -> <n tokens>`: each prompt's text back, as many 'tokens' as its
    budget allows (up to the length the question names). Logs every call."""

    spec = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def generate(self, prompts, params):
        self.calls.append(("generate", tuple(p.messages[-1].content for p in prompts)))
        return [self._one(p, params) for p in prompts]

    def _one(self, p, params):
        want = int(p.messages[-1].content.split("#")[-1]) if "#" in p.messages[-1].content else 1
        n = min(want, params.max_new_tokens)
        return Completion(f"{p.messages[-1].content}:{n}", 1, n, "stop" if n == want else "length")

    def score(self, prompts, continuations):
        self.calls.append(("score", tuple(p.messages[-1].content for p in prompts)))
        return [[-float(len(c)) for c in cs] for cs in continuations]

    def count_tokens(self, text):
        return len(text.split())


class StreamRecorder(Recorder):
    """The same answers, decoded one token per step in a stream that rows join and leave."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[str, ...]] = []  # the rows of each step

    def open_stream(self):
        return FakeStream(self)


class FakeStream:
    def __init__(self, owner: StreamRecorder) -> None:
        self.owner, self.rows, self.tickets, self.n = owner, [], {}, 0

    def add(self, prompts, params):
        t, self.n = self.n, self.n + 1
        self.tickets[t] = [None] * len(prompts)
        for i, (p, q) in enumerate(zip(prompts, params)):
            self.rows.append([t, i, p, q, 0])
        return t

    def step(self):
        self.owner.steps.append(tuple(r[2].messages[-1].content for r in self.rows))
        for r in self.rows:
            r[4] += 1
            out = self.owner._one(r[2], r[3])
            if r[4] >= out.n_generated_tokens:
                self.tickets[r[0]][r[1]] = out
        self.rows = [r for r in self.rows if self.tickets[r[0]][r[1]] is None]
        done = [t for t, outs in self.tickets.items() if all(o is not None for o in outs)]
        return [(t, self.tickets.pop(t)) for t in done]

    def reset(self):
        self.rows, self.tickets = [], {}


def ask(model, text, budget=16):
    return model.generate([Prompt.chat(text)], GenerationParams(max_new_tokens=budget))[0].text


def test_calls_of_parallel_jobs_merge_round_by_round():
    rec = Recorder()
    model = Model(rec)

    def job(j):
        return [ask(model, f"job{j} call{k}") for k in range(3)]

    got = lockstep.parallel([lambda j=j: job(j) for j in range(4)])
    assert got == [[f"job{j} call{k}:1" for k in range(3)] for j in range(4)]
    assert rec.calls == [("generate", tuple(f"job{j} call{k}" for j in range(4))) for k in range(3)]


@pytest.mark.parametrize("provider", [Recorder, StreamRecorder])
def test_batches_do_not_depend_on_thread_timing(provider):
    def run(seed):
        rng = random.Random(seed)
        rec = provider()
        model = Model(rec)
        delays = [[rng.random() * 0.01 for _ in range(4)] for _ in range(5)]

        def job(j):
            out = []
            for k in range(4):
                time.sleep(delays[j][k])
                if (j + k) % 3 == 0:
                    out.append(model.score([Prompt.chat(f"s{j}.{k}")], [["a", "bb"]])[0])
                else:
                    out.append(ask(model, f"g{j}.{k} #{j % 3 + 1}", budget=1 + k))
            return out

        return lockstep.parallel([lambda j=j: job(j) for j in range(5)], width=3), rec.calls, getattr(rec, "steps", None)

    first = run(0)
    assert all(run(seed) == first for seed in (1, 2))


def test_width_bounds_the_jobs_in_flight_and_keeps_results_in_order():
    rec = Recorder()
    model = Model(rec)
    live, most = [0], [0]
    lock = threading.Lock()

    def job(j):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
        out = [ask(model, f"j{j}.{k}") for k in range(j % 3 + 1)]
        with lock:
            live[0] -= 1
        return out

    got = lockstep.parallel([lambda j=j: job(j) for j in range(7)], width=2)
    assert got == [[f"j{j}.{k}:1" for k in range(j % 3 + 1)] for j in range(7)]
    assert most[0] == 2 and all(len(prompts) <= 2 for _, prompts in rec.calls)


def test_a_failing_job_fails_parallel_after_the_others_finish_and_no_new_job_starts():
    model = Model(Recorder())
    finished = []

    def job(j):
        ask(model, f"j{j}")
        if j == 1:
            raise ValueError("job 1 broke")
        ask(model, f"j{j} again")
        finished.append(j)

    with pytest.raises(ValueError, match="job 1 broke"):
        lockstep.parallel([lambda j=j: job(j) for j in range(3)])
    assert sorted(finished) == [0, 2]
    finished.clear()
    with pytest.raises(ValueError, match="job 1 broke"):
        lockstep.parallel([lambda j=j: job(j) for j in range(4)], width=2)
    assert finished == [0]  # jobs 2 and 3 never started


def test_a_provider_error_reaches_every_caller_of_its_batch():
    class Broken(Recorder):
        def generate(self, prompts, params):
            raise ConnectionError("server went away")

    model = Model(Broken())
    errors = []

    def job(j):
        try:
            ask(model, f"j{j}")
        except ConnectionError as exc:
            errors.append(str(exc))

    lockstep.parallel([lambda j=j: job(j) for j in range(3)])
    assert errors == ["server went away"] * 3


def test_sub_jobs_join_the_rounds_of_their_session():
    rec = Recorder()
    model = Model(rec)

    def nested():
        return lockstep.parallel([lambda: ask(model, "sub a"), lambda: ask(model, "sub b")])

    got = lockstep.parallel([nested, lambda: ask(model, "top")])
    assert got == [["sub a:1", "sub b:1"], "top:1"]
    assert rec.calls == [("generate", ("sub a", "sub b", "top"))]


def test_a_stream_returns_short_calls_early_and_lets_the_next_call_join_the_running_batch():
    rec = StreamRecorder()
    model = Model(rec)
    order = []

    def long_job():
        out = ask(model, "long #6")
        order.append("long done")
        return out

    def short_job():
        first = ask(model, "short #1")
        order.append("short first done")
        second = ask(model, "short again #2")
        return first, second, ask(model, "long #6")  # in flight for the other job, or cached: not decoded again

    got = lockstep.parallel([long_job, short_job])
    assert got == ["long #6:6", ("short #1:1", "short again #2:2", "long #6:6")]
    assert order == ["short first done", "long done"]
    assert rec.steps[0] == ("long #6", "short #1")
    assert rec.steps[1] == ("long #6", "short again #2")  # joined while the long row runs
    assert sum(row == "long #6" for step in rec.steps for row in step) == 6
    assert rec.calls == []  # every generation went through the stream


def test_a_failing_stream_fails_its_calls_and_keeps_the_run_going():
    class Flaky(StreamRecorder):
        def open_stream(self):
            stream = FakeStream(self)
            real = stream.step

            def step():
                if any(r[2].messages[-1].content == "boom #3" for r in stream.rows):
                    raise RuntimeError("decode failed")
                return real()

            stream.step = step
            return stream

    model = Model(Flaky())

    def job(text):
        with pytest.raises(RuntimeError, match="decode failed"):
            ask(model, text)  # every call running in the stream when it failed gets the error
        return ask(model, f"after {text}")

    assert lockstep.parallel([lambda: job("boom #3"), lambda: job("other #2")]) == ["after boom #3:3", "after other #2:2"]


def test_lockstep_charges_each_top_level_job_its_share_of_the_time():
    model = Model(Recorder())

    def job():
        ask(model, "x")
        ask(model, "y")
        return lockstep.share()

    shares = lockstep.parallel([job, job])
    assert all(s > 0 for s in shares) and not lockstep.active()
