"""Native tool calls in this process (``hf/``, ``gguf/``, ``llamacpp/``): the tools and the
conversation's calls and results go to the model's own chat template (``tools=``, the assistant's
``tool_calls``, ``tool`` turns), and the calls are read back out of the text in the syntax the
model was trained to write: Hermes/Qwen ``<tool_call>{json}</tool_call>``, Llama 3.x's JSON
object (after ``<|python_tag|>`` or alone), gpt-oss harmony's ``to=functions.NAME`` commentary.
A call is data: its name and arguments as written, never run here (the tool loop runs its own
tools on them, or refuses)."""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Sequence

from .._errors import CotscopeError
from ..trace import Message, ToolCall
from .base import GenerationParams, Prompt, ToolTurn

_RENDERS_TOOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # backend -> its template renders tools
HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
FENCED = re.compile(r"^```(?:json)?\s*(\{.*\})\s*```$", re.S)
# the recipient before the channel (as gpt-oss's template writes a call) or after it (as the model may)
HARMONY_CALL = re.compile(r"(?:to=functions\.([\w.-]+)\s*)?<\|channel\|>commentary(?:\s+to=functions\.([\w.-]+))?[^<]*"
                          r"(?:<\|constrain\|>\w+)?<\|message\|>(.*?)(?:<\|call\|>|<\|end\|>|$)", re.S)


def template_messages(messages: Sequence[Message]) -> list[dict]:
    """A conversation as chat templates read it: calls with their arguments as an object (the
    templates write them with ``tojson``) when they are JSON, tool turns with their call's id."""
    out = []
    for m in messages:
        d: dict = {"role": m.role, "content": m.content}
        if getattr(m, "tool_calls", ()):
            d["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                               for c in m.tool_calls]
        if m.role == "tool":
            d["tool_call_id"] = getattr(m, "tool_call_id", None)
        out.append(d)
    return out


def template_tools(prompt: Prompt) -> dict:
    """The ``tools=`` a chat template gets for `prompt`: none when it carries no tools."""
    return {"tools": json.loads(prompt.tools)} if prompt.tools else {}


def _arguments(text: str):
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text
    return value if isinstance(value, dict) else text


def _name_and_arguments(body: str) -> tuple[str, str]:
    """A JSON call's name and its arguments as JSON text; a body that is no JSON object keeps
    no name and its text as the arguments (the tool loop records it as a failed call)."""
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return "", body
    if not isinstance(obj, dict):
        return "", body
    args = obj.get("arguments", obj.get("parameters", {}))
    return str(obj.get("name") or ""), args if isinstance(args, str) else json.dumps(args)


def parse_tool_calls(text: str) -> tuple[str, tuple[ToolCall, ...]]:
    """The text of a reply without its calls, and the calls, in the first syntax found."""
    found = [m for m in HARMONY_CALL.finditer(text) if m.group(1) or m.group(2)]  # commentary to no function is no call
    if found:
        calls = [ToolCall(id=f"call_{i}", name=m.group(1) or m.group(2), arguments=m.group(3).strip()) for i, m in enumerate(found)]
        rest = "".join(text[a.end() if a else 0 : b.start()] for a, b in zip([None, *found], found)) + text[found[-1].end() :]
        return rest.strip(), tuple(calls)
    calls = [ToolCall(id=f"call_{i}", name=(na := _name_and_arguments(m.group(1)))[0], arguments=na[1]) for i, m in enumerate(HERMES.finditer(text))]
    if calls:
        return HERMES.sub("", text).strip(), tuple(calls)
    before, tag, after = text.partition("<|python_tag|>")
    body = (after if tag else text).strip()
    body = (fenced.group(1) if (fenced := FENCED.match(body)) else body).strip()  # small models wrap a JSON call in a code fence
    if body.startswith("{") and body.endswith("}"):
        try:
            obj = json.loads(body)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "name" in obj and ("parameters" in obj or "arguments" in obj):  # a Llama 3.x call, not an answer in JSON
            name, args = _name_and_arguments(body)
            return (before.strip() if tag else ""), (ToolCall(id="call_0", name=name, arguments=args),)
    return text, ()


def tool_chat(backend, messages: Sequence[Message], tools: list[dict], params: GenerationParams) -> ToolTurn:
    """One assistant turn of an in-process model with `tools` rendered by its own chat template."""
    prompt = Prompt(messages=tuple(messages), tools=json.dumps(tools))  # in the order given, as a template would see them
    if backend not in _RENDERS_TOOLS:  # a property of the template: checked on the first turn only
        _RENDERS_TOOLS[backend] = backend.render(prompt) != backend.render(Prompt(messages=tuple(messages)))
    if not _RENDERS_TOOLS[backend]:
        raise CotscopeError(f"{getattr(backend, 'spec', 'this model')}: its chat template does not render tools, so it has no native "
                            "tool calls; use tool-loop?calls=text")
    [c] = backend.generate([prompt], params)
    text, calls = parse_tool_calls(c.text)
    return ToolTurn(text=text, calls=calls, n_prompt_tokens=c.n_prompt_tokens, n_generated_tokens=c.n_generated_tokens,
                    finish_reason="stop" if calls else c.finish_reason)
