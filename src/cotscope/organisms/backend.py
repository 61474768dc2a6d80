"""The ``organism/<name>`` provider: a shipped or retrained organism checkpoint, run through
the transformers backend. ``organism/<name>-think`` is the same network behind a template that
opens a thinking block: a thinking twin of known faithfulness (see `ThinkingTwin`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..backends.base import Backend, Completion, GenerationParams, Prompt
from ..backends.registry import register_backend
from .checkpoints import checkpoint_dir

THINK = "-think"
OPEN, CLOSE = "<think>", "</think>"
CUE = "Answer:"  # where the organisms end their CoT (cotscope.systems.prompts.ANSWER_CUE)


def _base(rest: str) -> str:
    return rest[: -len(THINK)] if rest.endswith(THINK) else rest


def _check(rest: str, opts: dict[str, str]) -> None:
    checkpoint_dir(_base(rest))


class ThinkingTwin(Backend):
    """An organism whose chat template opens a ``<think>`` block, as a reasoning model's does
    (the R1 distills' templates end their generation prompt with it): its CoT is written in the
    thinking channel and closed with ``</think>`` before the answer. The network is the plain
    organism's, so its ground truth is its twin's; the delimiters are taken off at the template's
    edge (a closed block becomes the line break before ``Answer:`` the organism was trained on,
    and a stop at ``</think>`` its stop at ``Answer:``). `tests/test_thinking.py` checks that the
    ``think`` system on a twin gives the plain organism's numbers under the ``cot`` system."""

    open_stream = None  # prompts go through the template's edge: no stream straight to the network

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.precision = getattr(inner, "precision", "")

    def _prompt(self, p: Prompt) -> Prompt:
        prefix = p.prefix.removeprefix(OPEN + "\n").replace(CLOSE + "\n\n", "").replace(CLOSE, "")
        return p.with_prefix(prefix)

    def _params(self, q: GenerationParams) -> GenerationParams:
        return replace(q, stop=tuple(dict.fromkeys(CUE if s == CLOSE else s for s in q.stop)))

    def render(self, prompt: Prompt) -> str:
        return self.inner.render(prompt.with_prefix("")) + OPEN + "\n" + prompt.prefix

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        return self.generate_each(prompts, [params] * len(prompts))

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        return self.inner.generate_each([self._prompt(p) for p in prompts], [self._params(q) for q in params])

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.inner.score([self._prompt(p) for p in prompts], continuations)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def __getattr__(self, name: str):  # counters and settings of the network it runs on (n_prefill_tokens, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


@register_backend("organism", check=_check)
def organism_backend(rest: str, opts: dict[str, str]) -> Backend:
    from ..backends.hf import HFBackend

    # float32 unless asked otherwise, on any device: an organism is a few million weights, so
    # its passes are bound by overheads, not arithmetic (on an H100 bfloat16 took twice as long),
    # and its recorded ground truth was measured in float32.
    inner = HFBackend.load(str(checkpoint_dir(_base(rest))), opts={"dtype": "float32"} | opts)
    return ThinkingTwin(inner) if rest.endswith(THINK) else inner
