"""`tool-loop`: a model that reasons, calls tools, reads their results and answers
(``--system 'tool-loop?tools=calculator,notes&max_turns=8'``).

Tool calls use a documented text format, so any provider runs it: the model writes a line
``CALL <tool>: <input>``; the system cuts its turn there (whatever it wrote after the call,
a result it imagined included, is dropped), runs the tool and appends ``RESULT: <output>``,
and the model goes on. The trace keeps every assistant turn, call and result as messages;
its CoT steps are the whole trajectory, calls and results included, so every experiment
(early answering over the turns, mistakes, paraphrases) applies to it unchanged.

An unknown tool, a malformed call, a tool that refuses or fails, and a loop past
`max_turns` are recorded outcomes (a ``RESULT: error: ...`` line, a count in the trace's
meta), never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._errors import CotscopeError
from ..backends import Backend, GenerationParams, Prompt
from ..tasks.base import Kind, Sample
from ..trace import Message, ToolCall, join_steps, make_steps
from .base import Cot, Reasoning, System, register_system
from .prompts import ANSWER_CUE, answer_format, format_question
from .tools import TOOLS, Tool, ToolError

CALL = re.compile(r"^\s*CALL\s+([\w.:-]+)\s*:\s*(.*)$", re.M)
MALFORMED = re.compile(r"^\s*CALL\b", re.M)
RESULT = "RESULT:"


@register_system("tool-loop")
class ToolLoop(System):
    """Reason with tools in a loop, then answer.

    Args:
        tools: Comma-separated tool names (``calculator``, ``notes``, or package.module:Tool).
        max_turns: Model turns at most; a loop that reaches it answers from what it has.
    """

    def __init__(self, backend: Backend, kind: Kind, spec: str, params: GenerationParams | None = None,
                 tools: str = "calculator", max_turns: int = 8) -> None:
        super().__init__(backend, kind, spec, params)
        if max_turns < 1:
            raise CotscopeError(f"tool-loop: max_turns must be at least 1, got {max_turns}")
        self.tool_names = [t.strip() for t in tools.split(",") if t.strip()]
        if not self.tool_names:
            raise CotscopeError("tool-loop: give at least one tool (tools=calculator)")
        for name in self.tool_names:
            TOOLS.lookup(name)
        self.max_turns = max_turns

    def _tools(self) -> dict[str, Tool]:
        """Fresh tools for one trajectory (a notes tool keeps one agent's notes only)."""
        return {name.split(":")[-1].lower() if ":" in name else name: TOOLS.lookup(name)() for name in self.tool_names}

    def prompt(self, sample: Sample) -> Prompt:
        tools = self._tools()
        listing = "\n".join(f"- {name}: {t.description}" for name, t in tools.items())
        return Prompt.chat(
            f"{format_question(sample)}\n\nThink step by step, one step a line. You may use these tools:\n{listing}\n"
            f"To use one, write a line 'CALL <tool>: <input>' and stop; the result comes back on a line '{RESULT} <output>'. "
            f"When you are done, give the final answer on a last line of the form {answer_format(self.kind, sample)}."
        )

    def reason(self, samples: Sequence[Sample], prefixes: Sequence[Cot], max_new_tokens: int) -> list[Reasoning]:
        """Run every trajectory turn by turn, the turns of all samples batched together."""
        states = [_State(join_steps(p), self._tools()) for p in prefixes]
        prompts = [self.prompt(s) for s in samples]
        params = self._params(max_new_tokens, stop=(ANSWER_CUE, RESULT))
        for _ in range(self.max_turns):
            live = [i for i, st in enumerate(states) if not st.done]
            if not live:
                break
            outs = self.backend.generate([prompts[i].with_prefix(states[i].prefix()) for i in live], params)
            for i, out in zip(live, outs, strict=True):
                states[i].take(out.text, out.n_generated_tokens, out.finish_reason, out.n_prompt_tokens)
        for st in states:
            if not st.done:
                st.meta["max_turns_reached"] = 1
        return [st.reasoning(self.backend.count_tokens) for st in states]


class _State:
    """One trajectory: the text so far, the messages, the tools' state and the counts."""

    def __init__(self, given: str, tools: dict[str, Tool]) -> None:
        self.given = given
        self.text = ""
        self.tools = tools
        self.messages: list[Message] = []
        self.done = False
        self.tokens = 0
        self.prompt_tokens = 0
        self.finish = "stop"
        self.meta: dict[str, int] = {"tool_calls": 0, "tool_errors": 0, "malformed_calls": 0}

    def prefix(self) -> str:
        so_far = "\n".join(x for x in (self.given, self.text.strip("\n")) if x)
        return so_far + "\n" if so_far else ""

    def take(self, chunk: str, n_tokens: int, finish: str, prompt_tokens: int) -> None:
        self.tokens += n_tokens
        self.prompt_tokens = max(self.prompt_tokens, prompt_tokens)
        m = CALL.search(chunk)
        if m is None:
            # A line that tries a call but does not follow the format is counted, never run.
            self.meta["malformed_calls"] = self.meta.get("malformed_calls", 0) + len(MALFORMED.findall(chunk))
            self.text += chunk
            self.messages.append(Message(role="assistant", content=chunk.strip()))
            self.done = True
            self.finish = finish
            return
        said = chunk[: m.end()]  # the call ends the turn: what follows it was not asked for
        name, arguments = m.group(1).strip(), m.group(2).strip()
        call_id = f"call_{self.meta['tool_calls']}"
        self.meta["tool_calls"] += 1
        self.messages.append(Message(role="assistant", content=said.strip(), tool_calls=(ToolCall(id=call_id, name=name, arguments=arguments),)))
        tool = self.tools.get(name.lower())
        error = None
        if tool is None:
            error = f"unknown tool {name!r}; tools: {', '.join(self.tools)}"
        else:
            try:
                result = tool(arguments)
            except ToolError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a user's tool that fails is a recorded outcome
                error = f"the tool failed: {type(exc).__name__}: {exc}"
        if error is not None:
            self.meta["tool_errors"] += 1
            result = f"error: {error}"
        self.messages.append(Message(role="tool", content=result, tool_call_id=call_id, error=error))
        self.text += f"{said.rstrip()}\n{RESULT} {result}\n"

    def reasoning(self, count_tokens) -> Reasoning:
        text = self.text.strip()
        return Reasoning(
            steps=make_steps(text, count_tokens), text=text, tokens_by_role={"model": self.tokens},
            meta=dict(self.meta), finish_reason=self.finish, n_prompt_tokens=self.prompt_tokens, messages=list(self.messages),
        )
