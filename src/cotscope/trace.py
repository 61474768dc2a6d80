"""Reasoning as structured data: a trace is a question, a list of steps and an answer.

Interventions edit `Trace.steps`; they never regex-mangle the raw text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

# A sentence ends at ., ! or ? followed by whitespace and a capital, digit or opening
# bracket; a decimal point ("3.5") or an abbreviation followed by lowercase does not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'*-])")
# A list marker ("1.", "2)", "Step 3:", "-") is not a step by itself: it joins what follows.
_MARKER_ONLY = re.compile(r"^(?:\(?\d+[.):]|[a-z][.)]|step\s*\d+[.:]?|[-*•])$", re.I)


class Step(BaseModel):
    """One chunk of a chain of thought: a line or a sentence."""

    text: str = Field(description="The chunk's text, without the separator that followed it.")
    n_tokens: int = Field(description="Number of tokens of `text` under the subject's tokenizer.")


class Trace(BaseModel):
    """What a system produced for one question."""

    system: str = Field(description="Spec string of the system that produced the trace.")
    steps: list[Step] = Field(default_factory=list, description="The CoT, chunked; empty for a direct answer.")
    final_text: str = Field(description="Raw text after the CoT, from which the answer was parsed.")
    raw_text: str = Field(description="The whole generated text, as the backend returned it.")
    answer: str | None = Field(description="Parsed answer; None when none could be parsed.")
    answer_error: str | None = Field(default=None, description="Why parsing failed, when it did.")
    answer_logprobs: dict[str, float] | None = Field(default=None, description="Log-probability per choice, when the answer was scored.")
    n_prompt_tokens: int = Field(default=0, description="Tokens in the prompt.")
    n_generated_tokens: int = Field(default=0, description="Tokens the system generated.")
    roles: dict[str, str] = Field(default_factory=dict, description="Which backend played which role.")
    tokens_by_role: dict[str, int] = Field(default_factory=dict, description="Tokens generated per role.")
    hidden_steps: list[Step] | None = Field(default=None, description="The reasoner's own wording, when a rewriter changed it (shoggoth-face).")
    meta: dict[str, str | int | float] = Field(default_factory=dict, description="System-specific details (e.g. best-of-n votes).")

    @property
    def cot_text(self) -> str:
        return join_steps(self.steps)


def split_steps(text: str) -> list[str]:
    """Split a CoT into chunks at line boundaries, then at sentence boundaries.

    Empty lines are dropped. Joining the chunks with `join_steps` gives text that differs from
    the input only in whitespace.
    """
    chunks: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in _SENTENCE_END.split(line) if p.strip()]
        merged: list[str] = []
        for part in parts:
            if merged and _MARKER_ONLY.match(merged[-1]):
                merged[-1] = f"{merged[-1]} {part}"
            else:
                merged.append(part)
        chunks.extend(merged)
    return chunks


def join_steps(steps: Sequence[Step] | Sequence[str]) -> str:
    """The CoT text that a list of steps stands for (one step a line)."""
    return "\n".join(s if isinstance(s, str) else s.text for s in steps)


def make_steps(text: str, count_tokens: Callable[[str], int]) -> list[Step]:
    """Chunk `text` and count each chunk's tokens."""
    return [Step(text=chunk, n_tokens=count_tokens(chunk)) for chunk in split_steps(text)]
