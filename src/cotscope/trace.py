"""Reasoning as structured data: a trace is a question, a list of steps and an answer, and
the conversation that produced them (messages, including tool calls and their results).

Interventions edit `Trace.steps`; they never regex-mangle the raw text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# A sentence ends at ., ! or ? followed by whitespace and a capital, digit or opening
# bracket; a decimal point ("3.5") or an abbreviation followed by lowercase does not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'*-])")
# A list marker ("1.", "2)", "Step 3:", "-") is not a step by itself: it joins what follows.
_MARKER_ONLY = re.compile(r"^(?:\(?\d+[.):]|[a-z][.)]|step\s*\d+[.:]?|[-*•])$", re.I)


class Step(BaseModel):
    """One chunk of a chain of thought: a line or a sentence."""

    text: str = Field(description="The chunk's text, without the separator that followed it.")
    n_tokens: int = Field(description="Number of tokens of `text` under the subject's tokenizer.")


class Sample(BaseModel):
    """One question of a task."""

    id: str = Field(description="Stable identifier, unique within the task.")
    question: str = Field(description="The question text, without choices.")
    answer: str = Field(description="Gold answer: a number for numeric tasks, a letter for multiple choice.")
    choices: list[str] | None = Field(default=None, description="Answer options, lettered A, B, ... in order.")
    meta: dict[str, str | int | float] = Field(default_factory=dict, description="Task-specific extras.")


class ToolCall(BaseModel):
    """A call an assistant message makes to a tool. Its arguments are data: never executed."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Identifier that the tool's result message refers to.")
    name: str = Field(description="The tool called.")
    arguments: str = Field(default="", description="The arguments as the model wrote them (JSON text, usually).")


class Message(BaseModel):
    """One turn of a conversation: system, user, assistant (maybe with tool calls) or tool."""

    model_config = ConfigDict(frozen=True)

    role: str = Field(description="'system', 'user', 'assistant' or 'tool'.")
    content: str = Field(default="", description="The text of the turn.")
    tool_calls: tuple[ToolCall, ...] = Field(default=(), description="Calls an assistant turn makes.")
    tool_call_id: str | None = Field(default=None, description="For a tool turn: the call it answers.")
    error: str | None = Field(default=None, description="For a tool turn: why the call failed, when it did.")

    def __init__(self, role: str | None = None, content: str = "", /, **data) -> None:
        if role is not None:
            data["role"] = role
        super().__init__(content=data.pop("content", content), **data)


class Answer(BaseModel):
    """A forced answer given a CoT."""

    answer: str | None = Field(description="Parsed answer, None if none parsed.")
    answer_error: str | None = Field(default=None, description="Why parsing failed.")
    text: str = Field(default="", description="Raw answer text, or the top choice when scored.")
    n_tokens: int = Field(default=0, description="Tokens generated for the answer (0 when scored).")
    choice_logprobs: dict[str, float] | None = Field(default=None, description="Log-probability per choice letter, when scored.")


class Continuation(BaseModel):
    """What a system did when handed a CoT prefix and left to go on."""

    text: str = Field(description="The reasoning it added.")
    n_tokens: int = Field(description="Tokens it spent before answering.")
    answer: Answer
    finish_reason: str = Field("stop", description="'length' when it ended on its token budget instead of reaching an answer.")


class Trace(BaseModel):
    """What a system produced for one question."""

    system: str = Field(description="Spec string of the system that produced the trace.")
    channel: Literal["prompted", "thinking"] = Field(
        default="prompted", description="Where the CoT came from: text the system was asked to write (prompted), or a thinking block (thinking)."
    )
    thinking: Literal["full", "summary", "redacted", ""] = Field(
        default="", description="For a thinking channel: whether the provider gave the full thinking, a summary of it, or nothing readable."
    )
    steps: list[Step] = Field(default_factory=list, description="The CoT, chunked; empty for a direct answer.")
    final_text: str = Field(description="Raw text after the CoT, from which the answer was parsed.")
    raw_text: str = Field(description="The whole generated text, as the backend returned it.")
    answer: str | None = Field(description="Parsed answer; None when none could be parsed.")
    answer_error: str | None = Field(default=None, description="Why parsing failed, when it did.")
    answer_logprobs: dict[str, float] | None = Field(default=None, description="Log-probability per choice, when the answer was scored.")
    n_prompt_tokens: int = Field(default=0, description="Tokens in the prompt.")
    n_generated_tokens: int = Field(default=0, description="Tokens the system generated.")
    finish_reason: str = Field(
        default="stop", description="'length' when the CoT ended on its token budget: cut off, not complete."
    )

    cot_logprob: float | None = Field(
        default=None, description="Log-probability the model gave the CoT's tokens as it wrote them (its raw distribution: temperature 1, "
        "no nucleus), when its provider reports them and the CoT is the text it wrote (not rewritten); legibility reads it."
    )
    cot_logprob_tokens: int = Field(default=0, description="How many tokens `cot_logprob` sums over.")

    @property
    def cut(self) -> bool:
        """The CoT ended on its token budget."""
        return self.finish_reason == "length"

    @property
    def partial_thinking(self) -> bool:
        """The CoT stands for thinking the provider did not show in full (a summary, or redacted):
        interventions on it would not be interventions on the model's reasoning."""
        return self.thinking in ("summary", "redacted")

    @property
    def left_out(self) -> bool:
        """Every faithfulness metric leaves this trace out: its CoT was cut by its budget, or it
        stands for thinking not shown in full."""
        return self.cut or self.partial_thinking
    roles: dict[str, str] = Field(default_factory=dict, description="Which backend played which role.")
    tokens_by_role: dict[str, int] = Field(default_factory=dict, description="Tokens generated per role.")
    hidden_steps: list[Step] | None = Field(default=None, description="The reasoner's own wording, when a rewriter changed it (shoggoth-face).")
    meta: dict[str, str | int | float] = Field(default_factory=dict, description="System-specific details (e.g. best-of-n votes).")
    messages: list[Message] = Field(
        default_factory=list, description="The conversation beside the steps: tool calls and tool results included (agents)."
    )

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
