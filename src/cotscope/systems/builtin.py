"""The built-in systems: `direct` (no reasoning) and `cot` (reason step by step, then answer)."""

from __future__ import annotations

from collections.abc import Sequence

from ..backends import Prompt
from ..tasks.base import Sample
from ..trace import Trace
from .base import System, register_system, traces_from_reasoning
from .prompts import ANSWER_CUE, cot_prompt, direct_prompt


@register_system("direct")
class DirectSystem(System):
    """Answer at once: the assistant turn opens with the answer cue."""

    has_cot = False

    def prompt(self, sample: Sample) -> Prompt:
        return direct_prompt(sample, self.kind)

    def run(self, samples: Sequence[Sample]) -> list[Trace]:
        answers = self.answer_from(samples, [[] for _ in samples])
        return [
            Trace(
                system=self.spec,
                steps=[],
                final_text=f"{ANSWER_CUE} {a.text}".strip(),
                raw_text=a.text,
                answer=a.answer,
                answer_error=a.answer_error,
                answer_logprobs=a.choice_logprobs,
                n_generated_tokens=a.n_tokens,
                roles=self.roles,
            )
            for a in answers
        ]


@register_system("cot")
class CotSystem(System):
    """Reason step by step in the same assistant turn, then answer after the cue."""

    def prompt(self, sample: Sample) -> Prompt:
        return cot_prompt(sample, self.kind)

    def run(self, samples: Sequence[Sample]) -> list[Trace]:
        return traces_from_reasoning(self, samples, [self.prompt(s) for s in samples])
