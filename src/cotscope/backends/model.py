"""The model every role uses, apart from the provider that runs it.

A provider (`Backend` subclass: transformers, llama.cpp in a process of its own, an
OpenAI-compatible server, the mock) only generates, scores and counts tokens. `Model` wraps one and adds what
every caller needs the same way, whatever the provider:

- a cache: a greedy generation or a score asked twice with the same prompt (the k = n
  truncation point and the trace's own answer, a step shared by two interventions) is computed
  once; sampled generations (temperature > 0) are never cached;
- usage: calls, prompts, tokens generated, cache hits, and generations cut off by their token
  budget (``finish_reason == "length"``), per model, for the summary;
- token counts, memoized (the experiments count the same steps many times).

Retries with backoff for network providers stay in the OpenAI client, which implements them
(``max_retries``, ``timeout``); a provider's own options stay on its spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from pydantic import BaseModel, Field

from . import _tools, lockstep
from .base import Backend, Completion, GenerationParams, Prompt


class Usage(BaseModel):
    """What one model was asked to do."""

    calls: int = Field(0, description="Batched calls to the provider.")
    prompts: int = Field(0, description="Prompts sent to the provider (after the cache).")
    cache_hits: int = Field(0, description="Prompts answered from the cache.")
    generated_tokens: int = Field(0, description="Tokens the provider generated.")
    truncated: int = Field(0, description="Generations that stopped at their token budget (finish_reason 'length').")
    precision: str = Field("", description="Where and in what dtype a local provider ran the model ('cpu bfloat16'); empty for a server.")


class Model(Backend):
    """A provider with a cache of deterministic calls, usage counts and memoized token counts."""

    def __init__(self, provider: Backend, cache: bool = True) -> None:
        self.provider = provider
        self.spec = provider.spec
        self.cache = cache
        self.usage = Usage(precision=getattr(provider, "precision", ""))
        self._generated: dict[tuple[Prompt, GenerationParams], Completion] = {}
        self._scored: dict[tuple[Prompt, tuple[str, ...]], list[float]] = {}
        self._tokens: dict[str, int] = {}

    @classmethod
    def wrap(cls, backend: Backend) -> Model:
        """`backend` itself when it is a Model already, else a Model around it."""
        return backend if isinstance(backend, Model) else cls(backend)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        return self.generate_each(prompts, [params] * len(prompts))

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        prompts, params = list(prompts), list(params)
        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} params")
        if not prompts:
            return []
        if lockstep.active():  # merged with the other jobs' calls; budgets may differ within a batch
            if self.cache and getattr(self.provider, "open_stream", None) is not None and all(q.temperature <= 0 for q in params):
                return lockstep.submit((id(self), "stream"), self._generate_round, prompts, params, stream=self._open_stream)
            return lockstep.submit((id(self), "generate", replace(params[0], max_new_tokens=0)), self._generate_round, prompts, params)
        return self._generate_now(prompts, params)

    def _open_stream(self) -> _Stream:
        return _Stream(self, self.provider.open_stream())

    def _generate_round(self, calls) -> None:
        _run_merged(calls, self._generate_now)

    def _generate_now(self, prompts: list[Prompt], params: list[GenerationParams]) -> list[Completion]:
        keys = [(p, q) for p, q in zip(prompts, params, strict=True)]
        fresh = [i for i, (_, q) in enumerate(keys) if not self.cache or q.temperature > 0]  # sampled: never cached
        skip = set(fresh)
        todo = list(dict.fromkeys(k for i, k in enumerate(keys) if i not in skip and k not in self._generated))
        self.usage.cache_hits += len(keys) - len(fresh) - len(todo)
        ask = todo + [keys[i] for i in fresh]
        outs = self._provider_generate([p for p, _ in ask], [q for _, q in ask])
        for key, out in zip(todo, outs, strict=False):
            self._generated[key] = out
        sampled = dict(zip(fresh, outs[len(todo) :], strict=True))
        return [sampled[i] if i in sampled else self._generated[k] for i, k in enumerate(keys)]

    def _provider_generate(self, prompts: list[Prompt], params: list[GenerationParams]) -> list[Completion]:
        if not prompts:
            return []
        outs = self.provider.generate_each(prompts, params)
        self._count(outs)
        return outs

    def _count(self, outs: Sequence[Completion]) -> None:
        """One provider call's generations in the usage counts (an answer decoded in a
        generation's row, `Completion.answer`, as one more)."""
        outs = [*outs, *(o.answer for o in outs if o.answer is not None)]
        self.usage.calls += 1
        self.usage.prompts += len(outs)
        self.usage.generated_tokens += sum(o.n_generated_tokens for o in outs)
        self.usage.truncated += sum(o.finish_reason == "length" for o in outs)

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        prompts, continuations = list(prompts), [list(c) for c in continuations]
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} candidate lists")
        if not prompts:
            return []
        if lockstep.active():
            return lockstep.submit((id(self), "score"), self._score_round, prompts, continuations)
        return self._score_now(prompts, continuations)

    def _score_round(self, calls) -> None:
        _run_merged(calls, self._score_now)

    def _score_now(self, prompts: list[Prompt], continuations: list[list[str]]) -> list[list[float]]:
        keys = [(p, tuple(c)) for p, c in zip(prompts, continuations, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._scored)) if self.cache else keys
        self.usage.cache_hits += len(keys) - len(todo)
        if todo:
            scores = self.provider.score([p for p, _ in todo], [list(c) for _, c in todo])
            self.usage.calls += 1
            self.usage.prompts += len(todo)
            if not self.cache:
                return scores
            for key, sc in zip(todo, scores, strict=True):
                self._scored[key] = sc
        return [self._scored[k] for k in keys]

    def count_tokens(self, text: str) -> int:
        if text not in self._tokens:
            self._tokens[text] = self.provider.count_tokens(text)
        return self._tokens[text]

    def forget(self) -> None:
        """Drop the cached calls and the provider's reusable state (`Backend.forget`)."""
        self._generated.clear()
        self._scored.clear()
        self.provider.forget()

    def close(self) -> None:
        self.provider.close()

    def __getattr__(self, name: str) -> Any:
        # Provider-specific attributes (a tokenizer, counters a benchmark reads) pass through.
        if name == "provider":
            raise AttributeError(name)
        if name == "tool_chat" and getattr(type(self.provider), "tool_chat", None) is _tools.tool_chat:
            # an in-process template turn: its generation goes through this Model (cache, usage,
            # and the lockstep rounds that keep one job at a time on a provider that is not thread-safe)
            return partial(_tools.tool_chat, self)
        return getattr(self.provider, name)


def _run_merged(calls: Sequence[lockstep.Call], run) -> None:
    """Run lockstep calls of one kind as a single call (each argument list concatenated) and
    hand each call its part of the result."""
    outs = iter(run(*([x for c in calls for x in c.args[k]] for k in range(len(calls[0].args)))))
    for c in calls:
        c.result = [next(outs) for _ in c.args[0]]


class _Stream:
    """A model's greedy calls in its provider's decode stream (continuous batching), through
    the model's cache: a prompt cached, or already running for another call, is not decoded
    again."""

    def __init__(self, model: Model, provider_stream: Any) -> None:
        self.model = model
        self.provider = provider_stream
        self.waiting: list[lockstep.Call] = []
        self.running: dict[int, list[tuple[Prompt, GenerationParams]]] = {}  # ticket -> its keys
        self.inflight: set[tuple[Prompt, GenerationParams]] = set()

    def add(self, call: lockstep.Call) -> list[lockstep.Call]:
        keys = list(zip(*call.args, strict=True))
        new = [k for k in dict.fromkeys(keys) if k not in self.model._generated and k not in self.inflight]
        self.model.usage.cache_hits += len(keys) - len(new)
        if new:
            ticket = self.provider.add([p for p, _ in new], [q for _, q in new])
            self.running[ticket] = new
            self.inflight.update(new)
        self.waiting.append(call)
        return self._finished()

    def step(self) -> list[lockstep.Call]:
        for ticket, outs in self.provider.step():
            keys = self.running.pop(ticket)
            self.model._count(outs)
            for key, out in zip(keys, outs, strict=True):
                self.model._generated[key] = out
                self.inflight.discard(key)
        return self._finished()

    def busy(self) -> bool:
        return bool(self.waiting)

    def fail(self, error: BaseException) -> list[lockstep.Call]:
        calls, self.waiting = self.waiting, []
        self.running, self.inflight = {}, set()
        self.provider.reset()
        for c in calls:
            c.error = error
        return calls

    def _finished(self) -> list[lockstep.Call]:
        cached = self.model._generated
        done = [c for c in self.waiting if all(k in cached for k in zip(*c.args, strict=True))]
        for c in done:
            c.result = [cached[k] for k in zip(*c.args, strict=True)]
            self.waiting.remove(c)
        return done
