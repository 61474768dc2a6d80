"""The single-model systems: `direct` (no reasoning) and `cot` (reason step by step, then answer)."""

from __future__ import annotations

from collections.abc import Sequence

from ..backends import Prompt
from ..tasks.base import Sample
from .base import Cot, Reasoning, System, register_system
from .prompts import cot_prompt, direct_prompt


@register_system("direct")
class DirectSystem(System):
    """Answer at once: the assistant turn opens with the answer cue."""

    has_cot = False

    def prompt(self, sample: Sample) -> Prompt:
        return direct_prompt(sample, self.kind)

    def reason(self, samples: Sequence[Sample], prefixes: Sequence[Cot], max_new_tokens: int) -> list[Reasoning]:
        return [Reasoning(steps=[], text="", tokens_by_role={"model": 0}) for _ in samples]


@register_system("cot")
class CotSystem(System):
    """Reason step by step in the same assistant turn, then answer after the cue."""

    def prompt(self, sample: Sample) -> Prompt:
        return cot_prompt(sample, self.kind)
