"""The thinking channel and native tool calls through the published chat templates of Qwen3, a
DeepSeek-R1 distill and gpt-oss (as llama.cpp distributes them, see `tests/published.py`), each
on a tiny random-weights model: the text is noise; the rendering, the prefill, the split and
the tools are what is checked."""

import json

import pytest

from cotscope import AuditConfig, CotscopeError, audit
from cotscope.backends import GenerationParams, Prompt, get_backend
from cotscope.backends._tools import parse_tool_calls
from cotscope.systems.base import get_system
from cotscope.tasks.base import Sample
from cotscope.trace import Message, ToolCall

from .published import published_template
from .test_native_tools import TOOLS

pytestmark = [pytest.mark.network, pytest.mark.slow]  # the templates come from llama-cpp-python's sdist (pip download)
pytest.importorskip("transformers")
from .test_thinking_templates import assert_audit_on_thinking_channel, tiny_model  # noqa: E402

R1_SPECIAL = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
              "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
              "<｜tool▁output▁end｜>")
HARMONY_SPECIAL = ("<|call|>", "<|constrain|>", "<|startoftext|>")
SAMPLE = Sample(id="s0", question="What is 3 plus 4?", answer="7")
CONVO = (Message(role="user", content="What is 3 + 4?"),
         Message(role="assistant", content="I add them.", tool_calls=(ToolCall(id="c0", name="calculator", arguments='{"input": "3 + 4"}'),)),
         Message(role="tool", content="7", tool_call_id="c0"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    return {"qwen3": tiny_model(root / "qwen3", published_template("Qwen-Qwen3-0.6B"), "<|im_end|>"),
            "r1": tiny_model(root / "r1", published_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"), "<｜end▁of▁sentence｜>",
                             R1_SPECIAL, bos="<｜begin▁of▁sentence｜>"),
            "gpt-oss": tiny_model(root / "gpt-oss", published_template("openai-gpt-oss-120b"), "<|return|>", HARMONY_SPECIAL)}


@pytest.mark.parametrize(("name", "spec", "system", "opens", "want"), [
    ("qwen3", "", "think", "<|im_start|>assistant\n",
     "<|im_start|>assistant\n<think>\nFirst add.\nThen sum.\n</think>\n\nAnswer:"),
    ("r1", "?enable_thinking=true", "think", "<｜Assistant｜><think>\n",  # the template opens the block: not written twice
     "<｜Assistant｜><think>\nFirst add.\nThen sum.\n</think>\n\nAnswer:"),
    ("gpt-oss", "?reasoning_effort=high", "think?format=harmony", "<|start|>assistant",
     "<|start|>assistant<|channel|>analysis<|message|>First add.\nThen sum.\n<|end|><|start|>assistant<|channel|>final<|message|>Answer:"),
])
def test_a_partial_thinking_trace_goes_into_the_turn_the_published_template_opens(models, name, spec, system, opens, want):
    backend = get_backend(f"hf/{models[name]}{spec}", cache=False).provider
    think = get_system(system, backend, "numeric")
    asked = backend.render(think.prompt(SAMPLE))
    assert asked.endswith(opens) and "What is 3 plus 4?" in asked
    forced = backend.render(think.answer_prompt(SAMPLE, "First add.\nThen sum."))
    assert forced == asked.removesuffix(opens) + want  # the template's own prompt, then the trace, closed, then the cue
    going_on = backend.render(think.prompt(SAMPLE).with_prefix(think.thinking_prefix(SAMPLE, "First add.")))
    assert going_on == asked.removesuffix(opens) + want[: want.index("Then sum.")]  # the system thinks on from there
    if name == "gpt-oss":
        assert "Reasoning: high" in asked


@pytest.mark.parametrize(("name", "spec"), [("qwen3", "?enable_thinking=false"), ("r1", "")])
def test_a_published_template_that_closes_thinking_is_refused_by_name(models, name, spec, tmp_path):
    """Qwen3 with thinking off, and the R1 distill as llama.cpp keeps it (its generation prompt
    writes ``</think>`` unless ``enable_thinking`` is set): the think system says so."""
    cfg = AuditConfig(model=f"hf/{models[name]}{spec}", system="think", baseline="", experiments=("truncate",), n_samples=1, max_new_tokens=8)
    with pytest.raises(CotscopeError, match="closes the thinking block.*enable_thinking=true"):
        audit(cfg, tmp_path / name, progress=False, plots=False)


def test_tools_calls_and_results_through_the_published_templates(models):
    qwen = get_backend(f"hf/{models['qwen3']}", cache=False).provider.render(Prompt(messages=CONVO, tools=json.dumps(TOOLS)))
    assert '<tools>\n{"type": "function", "function": {"name": "calculator"' in qwen
    assert 'I add them.\n<tool_call>\n{"name": "calculator", "arguments": {"input": "3 + 4"}}\n</tool_call>' in qwen
    assert "<|im_start|>user\n<tool_response>\n7\n</tool_response><|im_end|>" in qwen
    oss = get_backend(f"hf/{models['gpt-oss']}", cache=False).provider.render(Prompt(messages=CONVO, tools=json.dumps(TOOLS)))
    assert "namespace functions" in oss and "type calculator = " in oss
    assert ('<|start|>assistant<|channel|>analysis<|message|>I add them.<|end|><|start|>assistant to=functions.calculator'
            '<|channel|>commentary json<|message|>{"input": "3 + 4"}<|call|>') in oss
    assert '<|start|>functions.calculator to=assistant<|channel|>commentary<|message|>"7"<|end|>' in oss
    r1 = get_backend(f"hf/{models['r1']}?enable_thinking=true", cache=False).provider
    with pytest.raises(CotscopeError, match="does not render tools"):  # the distill's template lists no tools
        r1.tool_chat(list(CONVO[:1]), TOOLS, GenerationParams(max_new_tokens=4))


def test_calls_are_read_back_as_the_published_templates_write_them():
    """Each template's own syntax for a call, as it renders an earlier one, parses back to it."""
    want = (ToolCall(id="call_0", name="calculator", arguments='{"input": "3 + 4"}'),)
    assert parse_tool_calls('<tool_call>\n{"name": "calculator", "arguments": {"input": "3 + 4"}}\n</tool_call>')[1] == want
    for harmony in (' to=functions.calculator<|channel|>commentary json<|message|>{"input": "3 + 4"}<|call|>',  # as gpt-oss's template writes it
                    '<|channel|>commentary to=functions.calculator <|constrain|>json<|message|>{"input": "3 + 4"}<|call|>'):
        assert parse_tool_calls(harmony)[1] == want


@pytest.mark.slow
@pytest.mark.parametrize(("name", "spec", "system"), [("qwen3", "", "think"), ("r1", "?enable_thinking=true", "think"),
                                                      ("gpt-oss", "", "think?format=harmony")])
def test_an_audit_through_each_published_template_runs_on_the_thinking_channel(models, name, spec, system, tmp_path):
    assert_audit_on_thinking_channel(f"hf/{models[name]}{spec}", system, tmp_path / name)
