"""The model every role uses, apart from the provider that runs it.

A provider (`Backend` subclass: transformers, llama.cpp through its server, an OpenAI-compatible
server, the mock) only generates, scores and counts tokens. `Model` wraps one and adds what
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
from typing import Any

from pydantic import BaseModel, Field

from .base import Backend, Completion, GenerationParams, Prompt


class Usage(BaseModel):
    """What one model was asked to do."""

    calls: int = Field(0, description="Batched calls to the provider.")
    prompts: int = Field(0, description="Prompts sent to the provider (after the cache).")
    cache_hits: int = Field(0, description="Prompts answered from the cache.")
    generated_tokens: int = Field(0, description="Tokens the provider generated.")
    truncated: int = Field(0, description="Generations that stopped at their token budget (finish_reason 'length').")


class Model(Backend):
    """A provider with a cache of deterministic calls, usage counts and memoized token counts."""

    def __init__(self, provider: Backend, cache: bool = True) -> None:
        self.provider = provider
        self.spec = provider.spec
        self.cache = cache
        self.usage = Usage()
        self._generated: dict[tuple[Prompt, GenerationParams], Completion] = {}
        self._scored: dict[tuple[Prompt, tuple[str, ...]], list[float]] = {}
        self._tokens: dict[str, int] = {}

    @classmethod
    def wrap(cls, backend: Backend) -> Model:
        """`backend` itself when it is a Model already, else a Model around it."""
        return backend if isinstance(backend, Model) else cls(backend)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        if not self.cache or params.temperature > 0:
            return self._generate(list(prompts), params)
        keys = [(p, params) for p in prompts]
        todo = list(dict.fromkeys(k for k in keys if k not in self._generated))
        self.usage.cache_hits += len(keys) - len(todo)
        if todo:
            for key, out in zip(todo, self._generate([p for p, _ in todo], params), strict=True):
                self._generated[key] = out
        return [self._generated[k] for k in keys]

    def _generate(self, prompts: list[Prompt], params: GenerationParams) -> list[Completion]:
        outs = self.provider.generate(prompts, params) if prompts else []
        self.usage.calls += 1
        self.usage.prompts += len(prompts)
        self.usage.generated_tokens += sum(o.n_generated_tokens for o in outs)
        self.usage.truncated += sum(o.finish_reason == "length" for o in outs)
        return outs

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
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

    def close(self) -> None:
        self.provider.close()

    def __getattr__(self, name: str) -> Any:
        # Provider-specific attributes (a tokenizer, counters a benchmark reads) pass through.
        if name == "provider":
            raise AttributeError(name)
        return getattr(self.provider, name)
