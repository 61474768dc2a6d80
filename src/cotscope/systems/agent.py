"""`tool-loop`: a model that reasons, calls tools, reads their results and answers
(``--system 'tool-loop?tools=calculator,notes&max_turns=8'``).

Tool calls use a documented text format, so any provider runs it: the model writes a line
``CALL <tool>: <input>``; the system cuts its turn there (whatever it wrote after the call,
a result it imagined included, is dropped), runs the tool and appends ``RESULT: <output>``,
and the model goes on. The trace keeps every assistant turn, call and result as messages;
its CoT steps are the whole trajectory, calls and results included, so every experiment
(early answering over the turns, mistakes, paraphrases) applies to it unchanged.

With ``calls=native`` the calls go through the provider's own tool-calling interface instead
(a backend with ``tool_chat``: ``openai/...``, the chat endpoint with ``tools``; ``hf/``, ``gguf/``
and ``llamacpp/``, the model's own chat template with ``tools=`` and its call syntax parsed
back, see ``backends._tools``); the tools are
offered with one string argument, ``input``, and each call and result is still written into
the trajectory as the two lines above, so the experiments read both modes alike. A CoT prefix
handed back (an intervention) becomes messages: each ``CALL``/``RESULT`` pair an assistant
tool call and its tool message, the other lines assistant text.

An unknown tool, a malformed call, a tool that refuses or fails, and a loop past
`max_turns` are recorded outcomes (a ``RESULT: error: ...`` line, a count in the trace's
meta), never a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from .._errors import CotscopeError
from ..backends import Backend, GenerationParams, Prompt, ToolTurn
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
        calls: ``text`` (the documented text format, any provider) or ``native`` (the
            provider's tool-calling interface).
    """

    def __init__(self, backend: Backend, kind: Kind, spec: str, params: GenerationParams | None = None,
                 tools: str = "calculator", max_turns: int = 8, calls: str = "text") -> None:
        super().__init__(backend, kind, spec, params)
        self.check_options(tools=tools, max_turns=max_turns, calls=calls)
        if calls == "native" and not hasattr(backend, "tool_chat"):
            raise CotscopeError(f"tool-loop: calls=native needs a provider with a tool-calling interface (openai/<model>@<url>, hf/, gguf/, llamacpp/); "
                                f"{backend.spec} has none: use calls=text")
        self.calls = calls
        self.tool_names = [t.strip() for t in tools.split(",") if t.strip()]
        self.max_turns = max_turns

    @classmethod
    def check_options(cls, tools: str = "calculator", max_turns: int = 8, calls: str = "text", **_: object) -> None:
        if max_turns < 1:
            raise CotscopeError(f"tool-loop: max_turns must be at least 1, got {max_turns}")
        if calls not in ("text", "native"):
            raise CotscopeError(f"tool-loop: calls must be 'text' or 'native', not {calls!r}")
        names = [t.strip() for t in tools.split(",") if t.strip()]
        if not names:
            raise CotscopeError("tool-loop: give at least one tool (tools=calculator)")
        for name in names:
            TOOLS.lookup(name)

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

    def native_prompt(self, sample: Sample) -> Prompt:
        # No answer format here: asked for one up front, small tool-trained models answer at once
        # (0 of 8 calls against 8 of 8 without it, Qwen2.5-Coder-0.5B); the answer cue follows the loop.
        return Prompt.chat(f"{format_question(sample)}\n\nUse the tools you are given.")

    def asked(self, sample: Sample) -> Prompt:
        return self.native_prompt(sample) if self.calls == "native" else self.prompt(sample)

    def reason(self, samples: Sequence[Sample], prefixes: Sequence[Cot], max_new_tokens: int) -> list[Reasoning]:
        """Run every trajectory turn by turn, the turns of all samples batched together."""
        states = [_State(join_steps(p), self._tools()) for p in prefixes]
        turn = self._native_turns(samples, states, max_new_tokens) if self.calls == "native" else self._text_turns(samples, states, max_new_tokens)
        for _ in range(self.max_turns):
            live = [i for i, st in enumerate(states) if not st.done]
            if not live:
                break
            turn(live)
        for st in states:
            if not st.done:
                st.meta["max_turns_reached"] = 1
        return [st.reasoning(self.backend.count_tokens) for st in states]

    def _text_turns(self, samples: Sequence[Sample], states: list[_State], max_new_tokens: int):
        """One turn of the live trajectories in the text format: one batched generation."""
        prompts = [self.prompt(s) for s in samples]
        params = self._params(max_new_tokens, stop=(ANSWER_CUE, RESULT))

        def turn(live: list[int]) -> None:
            outs = self.backend.generate([prompts[i].with_prefix(states[i].prefix()) for i in live], params)
            for i, out in zip(live, outs, strict=True):
                states[i].take(out.text, out.n_generated_tokens, out.finish_reason, out.n_prompt_tokens)

        return turn

    def _native_turns(self, samples: Sequence[Sample], states: list[_State], max_new_tokens: int):
        """One turn of the live trajectories through the provider's tool calling, a call each."""
        heads = [[*self.native_prompt(s).messages, *as_messages(st.given)] for s, st in zip(samples, states, strict=True)]
        schema = [{"type": "function", "function": {"name": name, "description": t.description, "parameters": {
            "type": "object", "properties": {"input": {"type": "string", "description": "The tool's input."}}, "required": ["input"]}}}
            for name, t in states[0].tools.items()] if states else []
        params = self._params(max_new_tokens, stop=(ANSWER_CUE,))

        def turn(live: list[int]) -> None:
            for i in live:
                states[i].take_turn(self.backend.tool_chat([*heads[i], *states[i].messages], schema, params))

        return turn


def as_messages(text: str) -> list[Message]:
    """A trajectory written in the text format as chat messages: each CALL line an assistant
    tool call (with the text before it), each RESULT line that call's tool message, the rest
    assistant text."""
    out: list[Message] = []
    lines: list[str] = []
    last_id = None
    for line in text.splitlines():
        m = CALL.match(line)
        if m:
            last_id = f"call_given_{len(out)}"
            call = ToolCall(id=last_id, name=m.group(1).strip(), arguments=json.dumps({"input": m.group(2).strip()}))
            out.append(Message(role="assistant", content="\n".join(lines), tool_calls=(call,)))
            lines = []
        elif line.strip().startswith(RESULT) and last_id is not None:
            out.append(Message(role="tool", content=line.strip()[len(RESULT):].strip(), tool_call_id=last_id))
            last_id = None
        elif line.strip():
            lines.append(line.strip())
    if lines:
        out.append(Message(role="assistant", content="\n".join(lines)))
    return out


def call_input(arguments: str) -> str:
    """The input of a native call: its ``input`` argument, a lone argument's value, or the
    arguments as written when they are no JSON object."""
    try:
        args = json.loads(arguments)
    except ValueError:
        return arguments.strip()
    if isinstance(args, dict):
        if "input" in args:
            return str(args["input"])
        if len(args) == 1:
            return str(next(iter(args.values())))
    return arguments.strip()


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
        result = self._run(name, arguments, call_id)
        self.text += f"{said.rstrip()}\n{RESULT} {result}\n"

    def take_turn(self, turn: ToolTurn) -> None:
        """One native turn: its text, then each call it made, run, as CALL/RESULT lines."""
        self.tokens += turn.n_generated_tokens
        self.prompt_tokens = max(self.prompt_tokens, turn.n_prompt_tokens)
        text = turn.text.strip()
        self.messages.append(Message(role="assistant", content=text, tool_calls=turn.calls))
        if text:
            self.text += text + "\n"
        if not turn.calls:
            self.done, self.finish = True, turn.finish_reason
            return
        for call in turn.calls:
            self.meta["tool_calls"] += 1
            name = re.sub(r"[^\w.:-]", "_", call.name)[:64] or "_"  # one line, whatever the model named
            given = " ".join(call_input(call.arguments).split())
            result = self._run(name, given, call.id)
            self.text += f"CALL {name}: {given}\n{RESULT} {' '.join(result.split())}\n"

    def _run(self, name: str, arguments: str, call_id: str) -> str:
        """Run one call; its result, or ``error: ...`` (counted) for an unknown tool, a refused
        input or a tool that raised. The tool message goes into the messages."""
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
        return result

    def reasoning(self, count_tokens) -> Reasoning:
        text = self.text.strip()
        return Reasoning(
            steps=make_steps(text, count_tokens), text=text, tokens_by_role={"model": self.tokens},
            meta=dict(self.meta), finish_reason=self.finish, n_prompt_tokens=self.prompt_tokens, messages=list(self.messages),
        )
