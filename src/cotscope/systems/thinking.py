"""Native thinking: the CoT is what the model writes inside its thinking block (``<think>`` ...
``</think>`` by default, or a gpt-oss harmony ``analysis`` channel), and its answer is what
follows. Interventions go through the model's own template: a partial thinking trace is written
into the assistant turn after the opening delimiter, and the model either thinks on from it
("system continues") or has the block closed for it and is asked for its answer ("answer
forced").

``think`` is the system (``--system 'think?open=<think>&close=</think>'``; ``think?format=harmony``
for gpt-oss: the ``analysis`` channel is the thinking, closed by ``<|end|>`` and followed by the
``final`` channel's header before the answer). Where the chat
template's generation prompt already opens the thinking block (DeepSeek-R1 distills), the
opening delimiter is not written twice: the system reads the rendered generation prompt. With
``instruct=true`` an instruct model that does not think natively is asked to think inside the
delimiters; its traces are thinking in tags by request, not native thinking, and say so
(``Trace.meta["thinking"] = "prompted in tags"``). A generation prompt that closes the thinking
block itself (a Qwen3-style template with ``enable_thinking=false``) is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import CotscopeError
from ..backends import Completion, Prompt
from ..backends.base import Then
from ..tasks.base import Sample, extract_answer
from ..trace import Message, Trace, join_steps, make_steps
from .base import Cot, Reasoning, System, answers_in_row, generate, register_system
from .prompts import ANSWER_CUE, answer_format, format_question

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"  # the delimiters R1-style templates write
HARMONY_FORMAT = {"open": "<|channel|>analysis<|message|>", "close": "<|end|>", "then": "<|start|>assistant<|channel|>final<|message|>"}
HARMONY = re.compile(r"<\|channel\|>(\w+)(?:\s[^<]*)?<\|message\|>(.*?)(?=<\|end\|>|<\|return\|>|<\|start\|>|<\|channel\|>|$)", re.S)


@dataclass(frozen=True)
class ThinkingSplit:
    """A reply read as thinking and what follows it."""

    thinking: str
    after: str
    closed: bool  # the block was closed; a reply whose thinking never closes was cut by its budget


def split_thinking(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> ThinkingSplit:
    """The thinking inside the first block and the text after it. The opening delimiter may be
    absent (the template's generation prompt wrote it); without a closing delimiter the whole
    reply after the opening one is thinking that never closed."""
    start = text.find(open_tag)
    body = text[start + len(open_tag):] if start >= 0 else text
    end = body.find(close_tag)
    if end < 0:
        return ThinkingSplit(thinking=body.strip(), after="", closed=False)
    return ThinkingSplit(thinking=body[:end].strip(), after=body[end + len(close_tag):].strip(), closed=True)


def split_harmony(text: str) -> ThinkingSplit:
    """gpt-oss harmony output: the ``analysis`` channel is the thinking, the ``final`` channel the
    answer text (``commentary``, tool preambles, is neither). No final channel: not closed."""
    analysis, final, has_final = [], [], False
    for channel, body in HARMONY.findall(text):
        if channel == "analysis":
            analysis.append(body.strip())
        elif channel == "final":
            final.append(body.strip())
            has_final = True
    if not analysis and not has_final:
        return ThinkingSplit(thinking=text.strip(), after="", closed=False)
    return ThinkingSplit(thinking="\n".join(analysis), after="\n".join(final), closed=has_final)


def _how_thinking_ended(c) -> str:
    """How a thinking block generated with its close tag as the stop ended: "close tag",
    "end token" (the model ended its turn inside the block: the thinking never closed),
    "budget", or "unknown" (a server that does not say which stop ended it: read as closed).
    Only a block that closed is a complete CoT; the others are cut, like a block out of budget."""
    if c.finish_reason == "length":
        return "budget"
    return {True: "close tag", False: "end token"}.get(c.stop_hit, "unknown")


@register_system("think")
class Think(System):
    """Think natively inside a thinking block, then answer after it.

    Args:
        open: The opening delimiter of the thinking block.
        close: Its closing delimiter.
        then: What the assistant turn has between the closed block and the answer (default a
            blank line).
        format: ``tags`` (the delimiters above) or ``harmony`` (gpt-oss channels, which set
            open, close and then).
        instruct: Ask the model to think inside the delimiters (an instruct model that does not
            think natively); its traces are recorded as thinking in tags by request.
    """

    def __init__(self, backend, kind, spec, params=None, open: str = THINK_OPEN, close: str = THINK_CLOSE, then: str = "\n\n",
                 format: str = "tags", instruct: bool = False) -> None:
        super().__init__(backend, kind, spec, params)
        self.check_options(open=open, close=close, format=format)
        if format == "harmony":
            open, close, then = HARMONY_FORMAT["open"], HARMONY_FORMAT["close"], HARMONY_FORMAT["then"]
        self.open_tag, self.close_tag, self.then, self.format, self.instruct = open, close, then, format, instruct
        self.after_open = "" if format == "harmony" else "\n"  # a channel's message starts at once; R1 and Qwen3 write "<think>\n"
        self._template_opens: bool | None = None

    @classmethod
    def check_options(cls, open: str = THINK_OPEN, close: str = THINK_CLOSE, format: str = "tags", **_: object) -> None:
        if format not in ("tags", "harmony"):
            raise CotscopeError(f"think: format must be tags or harmony; got {format!r}")
        if not open.strip() or not close.strip() or open == close:
            raise CotscopeError(f"think: open and close must be two different, non-empty delimiters; got {open!r} and {close!r}")

    def prompt(self, sample: Sample) -> Prompt:
        ask = f"{format_question(sample)}\n\nGive the final answer in the form {answer_format(self.kind, sample)}."
        if self.instruct:
            ask += f" First think it through step by step inside {self.open_tag} ... {self.close_tag}, one step a line."
        return Prompt.chat(ask)

    def _opening(self, sample: Sample) -> str:
        """What the assistant turn starts with before the thinking: the opening delimiter, unless
        the template's generation prompt already wrote it."""
        if self._template_opens is None:
            render = getattr(self.backend, "render", None) or getattr(getattr(self.backend, "provider", None), "render", None)
            try:
                rendered = render(self.prompt(sample)) if render else ""
            except Exception:  # noqa: BLE001 - a provider that cannot render: write the delimiter
                rendered = ""
            if rendered.rstrip().endswith(self.close_tag):
                raise CotscopeError(f"think: the chat template's generation prompt closes the thinking block ({rendered.rstrip()[-40:]!r}): "
                                    "thinking is off in this rendering; for a Qwen3-style template give the model ?enable_thinking=true")
            self._template_opens = rendered.rstrip().endswith(self.open_tag)
        return "" if self._template_opens else self.open_tag + self.after_open

    def thinking_prefix(self, sample: Sample, cot: str) -> str:
        """The assistant turn up to the end of a partial thinking trace."""
        return self._opening(sample) + (cot + "\n" if cot else "")

    def answer_prompt(self, sample: Sample, cot: str) -> Prompt:
        closed = self.thinking_prefix(sample, cot) + self.close_tag + self.then + ANSWER_CUE + (" (" if self.kind == "choice" else "")
        return self.prompt(sample).with_prefix(closed)

    @answers_in_row
    def reason(self, samples: Sequence[Sample], prefixes: Sequence[Cot], max_new_tokens: int,
               thens: Sequence[Then | None] | None = None) -> list[Reasoning]:
        """Think on from each partial thinking trace until the block closes (`thens`: an answer to
        force after each, see `System.continue_from`)."""
        texts = [join_steps(p) for p in prefixes]
        prompts = [self.prompt(s).with_prefix(self.thinking_prefix(s, t)) for s, t in zip(samples, texts, strict=True)]
        return [self.read(c) for c in generate(self.backend, prompts, self._params(max_new_tokens, stop=(self.close_tag,)), thens)]

    def read(self, c: Completion) -> Reasoning:
        split = split_thinking(c.text, self.open_tag, self.close_tag)
        thinking = split.thinking
        ended = _how_thinking_ended(c)
        meta = {"thinking": "prompted in tags" if self.instruct else "native", "thinking_ended": ended}
        return Reasoning(
            steps=make_steps(thinking, self.backend.count_tokens), text=thinking, tokens_by_role={next(iter(self.roles)): c.n_generated_tokens},
            finish_reason="stop" if ended in ("close tag", "unknown") else "length",
            n_prompt_tokens=c.n_prompt_tokens, meta=meta, logprob=c.logprob, n_logprob_tokens=c.n_logprob_tokens, answer=c.answer,
        )

    def run(self, samples: Sequence[Sample]) -> list[Trace]:
        if self.can_prefill:
            traces = super().run(samples)
            return [t.model_copy(update={"channel": "thinking", "thinking": "full"}) for t in traces]
        return self._run_whole(samples)

    def _run_whole(self, samples: Sequence[Sample]) -> list[Trace]:
        """A provider that cannot continue an assistant turn (a chat API): one reply a question,
        its thinking from the provider's reasoning field (reasoning_content) or its delimiters,
        its answer parsed from the text after it. No answer is forced, so the experiments that
        hand over a prefix do not run on it (the audit says so)."""
        prompts = [self.prompt(s) for s in samples]
        outs = self.backend.generate(prompts, self._params(self.params.max_new_tokens))
        role = next(iter(self.roles))
        traces = []
        for sample, prompt, c in zip(samples, prompts, outs, strict=True):
            if c.reasoning is not None:
                split = ThinkingSplit(thinking=c.reasoning.strip(), after=c.text.strip(), closed=not (c.finish_reason == "length" and not c.text.strip()))
            elif self.format == "harmony":
                split = split_harmony(c.text)
            else:
                split = split_thinking(c.text, self.open_tag, self.close_tag)
            answer, error = extract_answer(split.after, self.kind, len(sample.choices or []) or None)
            traces.append(Trace(
                system=self.spec, channel="thinking", thinking=c.shown if c.reasoning is not None else "full", steps=make_steps(split.thinking, self.backend.count_tokens),
                final_text=split.after, raw_text=c.text, answer=answer, answer_error=error, n_prompt_tokens=c.n_prompt_tokens,
                n_generated_tokens=c.n_generated_tokens, finish_reason="stop" if split.closed else "length",
                tokens_by_role={role: c.n_generated_tokens}, roles=self.roles,
                meta={"thinking": "prompted in tags" if self.instruct else "native"},
                messages=[*prompt.messages, Message(role="assistant", content=split.after)],
            ))
        return traces
