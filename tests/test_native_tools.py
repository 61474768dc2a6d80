"""Native tool calls in this process: tools and the conversation's calls and results rendered by
the model's own chat template, and calls parsed back out of its text in the syntax it was trained
to write. Rendering is checked on a tiny random-weights model through hf/ with a Hermes-style
template written for the test; the loop end to end with the model's text scripted (a random
model makes no calls). A real tool-trained model is not checked here (none can be downloaded)."""

import json
import re

import pytest

from cotscope import CotscopeError, audit
from cotscope.backends import Completion, GenerationParams, Prompt, get_backend
from cotscope.backends._tools import parse_tool_calls
from cotscope.trace import Message, ToolCall


def test_calls_are_read_in_each_models_syntax_and_stay_data():
    text, calls = parse_tool_calls('Let me add.\n<tool_call>\n{"name": "calculator", "arguments": {"input": "3 + 4"}}\n</tool_call>')
    assert text == "Let me add." and calls == (ToolCall(id="call_0", name="calculator", arguments='{"input": "3 + 4"}'),)
    _, two = parse_tool_calls('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": "x"}</tool_call>')
    assert [(c.name, c.arguments) for c in two] == [("a", "{}"), ("b", "x")]
    _, bad = parse_tool_calls("<tool_call>calculator, 37</tool_call>")  # no JSON: a call with no name, its text kept
    assert bad[0].name == "" and bad[0].arguments == "calculator, 37"
    _, cut = parse_tool_calls('<tool_call>{"name": "calculator", "arguments": {"input": "1+')  # cut by its budget
    assert cut[0].name == ""
    llama = parse_tool_calls('<|python_tag|>{"name": "calculator", "parameters": {"input": "2*3"}}')
    assert llama == ("", (ToolCall(id="call_0", name="calculator", arguments='{"input": "2*3"}'),))
    assert parse_tool_calls('{"name": "calculator", "arguments": {"input": "2*3"}}') == llama  # alone: no text left beside the call
    fenced = parse_tool_calls('```json\n{\n  "name": "calculator",\n  "arguments": {"input": {"input": "2"}}\n}\n```')
    assert fenced == ("", (ToolCall(id="call_0", name="calculator", arguments='{"input": {"input": "2"}}'),))  # as a small model wrote it
    assert parse_tool_calls('{"answer": 7}') == ('{"answer": 7}', ())  # an answer in JSON is no call
    harmony = ('<|channel|>analysis<|message|>Need to add.<|end|><|start|>assistant<|channel|>commentary to=functions.calculator '
               '<|constrain|>json<|message|>{"input": "5-1"}<|call|>')
    _, h = parse_tool_calls(harmony)
    assert [(c.name, c.arguments) for c in h] == [("calculator", '{"input": "5-1"}')]
    hostile = '<tool_call>{"name": "calculator", "arguments": {"input": "__import__(\'os\').system(\'echo pwned\')"}}</tool_call>'
    _, [call] = parse_tool_calls(hostile)
    assert "__import__" in call.arguments  # kept as text; the calculator refuses it (tests/test_agent.py)
    assert parse_tool_calls("Just thinking.\nAnswer: 7") == ("Just thinking.\nAnswer: 7", ())


HERMES_LIKE = (
    "{% if tools %}{{ '<|im_start|>system\\nTools:\\n<tools>' }}{% for t in tools %}{{ '\\n' + (t | tojson) }}{% endfor %}"
    "{{ '\\n</tools>\\nCall one as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\\n' }}{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}{{ '<|im_start|>assistant\\n' + m.content }}"
    "{% for c in m.tool_calls %}{{ '<tool_call>{\"name\": \"' + c.function.name + '\", \"arguments\": ' + (c.function.arguments | tojson) + '}</tool_call>' }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{% elif m.role == 'tool' %}{{ '<|im_start|>user\\n<tool_response>' + m.content + '</tool_response><|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TOOLS = [{"type": "function", "function": {"name": "calculator", "description": "Arithmetic.", "parameters": {
    "type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}}}]


@pytest.fixture(scope="module")
def hermes(tmp_path_factory):
    pytest.importorskip("transformers")
    from .test_thinking_templates import QWEN3_LIKE, tiny_model

    root = tmp_path_factory.mktemp("tools")
    return tiny_model(root / "hermes", HERMES_LIKE, "<|im_end|>"), tiny_model(root / "plain", QWEN3_LIKE, "<|im_end|>")


def test_tools_calls_and_results_go_through_the_models_own_template(hermes):
    backend = get_backend(f"hf/{hermes[0]}", cache=False).provider
    convo = (Message(role="user", content="What is 3 + 4?"),
             Message(role="assistant", content="Let me add.", tool_calls=(ToolCall(id="c0", name="calculator", arguments='{"input": "3 + 4"}'),)),
             Message(role="tool", content="7", tool_call_id="c0"))
    text = backend.render(Prompt(messages=convo, tools=json.dumps(TOOLS)))
    assert '"name": "calculator"' in text and "Arithmetic." in text  # the tool's schema, as the template lists it
    assert 'Let me add.<tool_call>{"name": "calculator", "arguments": {"input": "3 + 4"}}</tool_call>' in text  # the call as an object
    assert "<tool_response>7</tool_response>" in text and text.endswith("<|im_start|>assistant\n")
    assert "<tools>" not in backend.render(Prompt(messages=convo[:1]))  # no tools given, none rendered


def test_an_in_process_tool_turn_goes_through_the_model_wrapper(hermes):
    """Its generation is the wrapper's (usage, cache, and the lockstep rounds that keep one job
    at a time on a provider that is not thread-safe: llama.cpp crashed with two at once)."""
    model = get_backend(f"hf/{hermes[0]}")
    convo = [Message(role="user", content="What is 3 + 4?")]
    first = model.tool_chat(convo, TOOLS, GenerationParams(max_new_tokens=6))
    assert model.usage.prompts == 1 and model.usage.generated_tokens == first.n_generated_tokens
    assert model.tool_chat(convo, TOOLS, GenerationParams(max_new_tokens=6)) == first and model.usage.cache_hits == 1


def test_a_template_that_renders_no_tools_is_refused_by_name(hermes):
    plain = get_backend(f"hf/{hermes[1]}", cache=False).provider
    with pytest.raises(CotscopeError, match="does not render tools.*calls=text"):
        plain.tool_chat([Message(role="user", content="What is 3 + 4?")], TOOLS, GenerationParams(max_new_tokens=8))


@pytest.mark.slow
def test_a_tool_loop_with_native_calls_runs_in_process_and_corrupt_result_acts_on_them(hermes, tmp_path):
    """The model's text scripted: it calls the calculator on the question's numbers the Hermes
    way, then answers with the last tool result it was given. corrupt_result changes that
    result in the trajectory; the answer follows it, and the control (the same prefix, the
    result kept) does not move."""
    backend = get_backend(f"hf/{hermes[0]}", cache=False).provider
    seen = []

    def reply(p):
        text = backend.render(p)
        seen.append(text)
        results = [m.group(1) or m.group(2) for m in re.finditer(r"<tool_response>(.*?)</tool_response>|RESULT: (-?\d+)", text)]
        if p.prefix.rstrip().endswith("Answer:"):  # an answer forced after a (maybe corrupted) trajectory
            return f" {results[-1] if results else 0}"
        if not results:
            a, b = re.findall(r"\d+", p.messages[0].content)[:2]
            return f'I add them.\n<tool_call>\n{{"name": "calculator", "arguments": {{"input": "{a} + {b}"}}}}\n</tool_call>'
        return f"So it is {results[-1]}.\nAnswer: {results[-1]}"

    def scripted(prompts, params):
        return [Completion(text=(t := reply(p)), n_prompt_tokens=10, n_generated_tokens=len(t.split())) for p in prompts]

    backend.generate = scripted
    backend.generate_each = scripted
    backend.open_stream = None  # every call through the script, none through the running decode batch
    r = audit(model=f"hf/{hermes[0]}", backend=backend, task="arithmetic", n_samples=2, system="tool-loop?tools=calculator&calls=native",
              baseline="", experiments=("corrupt_result",), run_dir=tmp_path / "a", progress=False, plots=False)
    for rec in r.records:
        t = rec.traces["subject"]
        assert t.meta["tool_calls"] == 1 and t.meta["tool_errors"] == 0 and "CALL calculator:" in t.cot_text
        assert "CALL <tool>" not in t.messages[0].content and t.messages[0].content.endswith("Use the tools you are given.")  # as asked
        [res] = rec.results["corrupt_result"]
        assert res.corrupted_result != res.original_result and res.changed and not res.control_changed
    assert any("<tools>" in s for s in seen) and any("<tool_response>" in s for s in seen)
