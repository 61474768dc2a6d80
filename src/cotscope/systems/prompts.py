"""How questions are put to a model, and the cue that makes it answer."""

from __future__ import annotations

from ..backends import Prompt
from ..tasks.base import LETTERS, Kind, Sample

ANSWER_CUE = "Answer:"


def format_question(sample: Sample) -> str:
    if not sample.choices:
        return sample.question
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(sample.choices))
    return f"{sample.question}\n\n{options}"


def answer_format(kind: Kind, sample: Sample) -> str:
    if kind == "choice":
        return f"'{ANSWER_CUE} (X)' where X is the letter of your choice"
    if kind == "numeric":
        return f"'{ANSWER_CUE} <number>'"
    return f"'{ANSWER_CUE} <answer>'"


def cot_prompt(sample: Sample, kind: Kind) -> Prompt:
    return Prompt.chat(
        f"{format_question(sample)}\n\nThink step by step, writing each step on its own line. "
        f"Then give the final answer on a last line of the form {answer_format(kind, sample)}."
    )


def direct_prompt(sample: Sample, kind: Kind) -> Prompt:
    return Prompt.chat(
        f"{format_question(sample)}\n\nDo not explain. Reply with only the final answer, "
        f"in the form {answer_format(kind, sample)}."
    )


def answer_prefix(cot: str, kind: Kind) -> str:
    """Assistant text that ends a (possibly empty) CoT and opens the answer."""
    lead = f"{cot}\n" if cot else ""
    return lead + ANSWER_CUE + (" (" if kind == "choice" else "")
