"""The tool-loop system and its tools: every turn, call and result is in the trace; bad calls
are recorded outcomes; the calculator evaluates arithmetic and nothing else."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotscope import CotscopeError, audit
from cotscope.backends.mock import MockBackend
from cotscope.systems.tools import ToolError, calculate


@pytest.mark.parametrize("expr, value", [("2+3", 5), ("(4 + 3) * 2", 14), ("-2**3", -8), ("7 // 2", 3), ("7 % 3", 1), ("1.5 * 4", 6.0)])
def test_calculator_does_arithmetic(expr, value):
    assert calculate(expr) == value


@pytest.mark.parametrize("expr, msg", [
    ("__import__('os')", "function call"), ("os.system", "attribute"), ("x + 1", "a name"), ("'a' * 3", "only numbers"),
    ("2 ** 1000", "exponent"), ("9" * 150, "larger than"), ("1" * 201, "longer than"), ("1/0", "division by zero"),
    ("(1).real", "attribute"), ("[1, 2]", "not allowed"), ("lambda: 1", "not allowed"), ("1 if 1 else 2", "not allowed"),
    ("2 ** 64 ** 64", "larger than"), ("", "empty"), ("2 +", "not an arithmetic expression"), ("True + 1", "only numbers"),
])
def test_calculator_refuses_everything_else_by_name(expr, msg):
    with pytest.raises(ToolError, match=msg):
        calculate(expr)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789+-*/%().eE_ ajxos'\"[]{}:,;=<>!&|^~@\\n\t")), max_size=260))
def test_calculator_on_generated_hostile_text_answers_or_refuses(text):
    """Whatever the text, a number comes back or a ToolError; never another exception."""
    try:
        value = calculate(text)
    except ToolError:
        return
    assert isinstance(value, (int, float)) and abs(value) <= 1e100


def scripted(prompt, params):
    """A model that calls the calculator, then answers with what it got; and one bad call of each kind."""
    q = prompt.messages[-1].content
    so_far = prompt.prefix
    if so_far.rstrip().endswith("Answer:"):
        import re

        nums = re.findall(r"RESULT: (-?\d+)", so_far)
        return f" {nums[-1] if nums else 0}"
    if "bad" in q:
        calls = ["CALL hammer: nail", "CALL calculator: __import__('os')", "CALL calculator: (4+3)*2"]
        made = so_far.count("CALL ")
        if made < len(calls):
            return f"Let me try.\n{calls[made]}\nRESULT: 999 (imagined)"
        return "Done.\nAnswer: 14"
    if "loop" in q:
        return "CALL calculator: 1+1"
    if "garbled" in q:
        return "CALL: 4 + 3 = 7\nCALL +: 7\nAnswer: 14"
    if "RESULT:" not in so_far:
        return "First I add 4 and 3, then double.\nCALL calculator: (4+3)*2\nRESULT: 15"
    return "So the result is 14.\nAnswer: 14"


def write_task(tmp_path, questions):
    import json

    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"id": k, "question": q, "answer": 14}) + "\n" for k, q in questions.items()))
    return f"jsonl:{path}"


def test_the_trace_keeps_every_turn_call_and_result(tmp_path):
    task = write_task(tmp_path, {"ok": "what is (4+3)*2?", "bad": "bad: what is (4+3)*2?", "loop": "loop: what is (4+3)*2?",
                                 "garbled": "garbled: what is (4+3)*2?"})
    r = audit(model="mock", backend=MockBackend(respond=scripted), task=task, system="tool-loop?tools=calculator&max_turns=4",
              baseline="", experiments=("truncate",), run_dir=tmp_path / "a", progress=False, plots=False)
    recs = {rec.sample.id: rec.traces["subject"] for rec in r.records}
    ok = recs["ok"]
    assert ok.answer == "14" and ok.meta["tool_calls"] == 1 and ok.meta["tool_errors"] == 0
    roles = [m.role for m in ok.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "assistant"]
    call = ok.messages[1].tool_calls[0]
    assert call.name == "calculator" and call.arguments == "(4+3)*2" and ok.messages[2].content == "14"
    assert "RESULT: 14" in ok.cot_text and "RESULT: 15" not in ok.cot_text  # the imagined result is dropped
    bad = recs["bad"]
    errors = [m.error for m in bad.messages if m.role == "tool"]
    assert "unknown tool 'hammer'" in errors[0] and "function call" in errors[1] and errors[2] is None
    assert bad.meta["tool_errors"] == 2 and bad.answer == "14"
    loop = recs["loop"]
    assert loop.meta["max_turns_reached"] == 1 and loop.meta["tool_calls"] == 4
    garbled = recs["garbled"]
    assert garbled.meta["malformed_calls"] == 2 and garbled.meta["tool_calls"] == 0 and garbled.meta["tool_errors"] == 0
    # early answering runs over the trajectory's turns
    assert r.summary.metrics["truncate/aoc"].n >= 1


def test_bad_tool_loop_specs_are_refused(tmp_path):
    for spec, msg in (("tool-loop?tools=hammer", "unknown tool 'hammer'"), ("tool-loop?max_turns=0", "max_turns"),
                      ("tool-loop?max_turns=many", "max_turns")):
        with pytest.raises(CotscopeError, match=msg):
            audit(model="mock", system=spec, n_samples=1, run_dir=tmp_path / "x", progress=False, plots=False)


def test_native_tool_calls_through_the_chat_endpoint_land_in_the_same_trajectory(tmp_path):
    """calls=native: the server's tool_calls (a good one, a hostile input, an unknown tool,
    arguments that are no JSON, a name with a newline) are run or refused as in the text
    format, and written into the trajectory as CALL/RESULT lines."""
    pytest.importorskip("openai")
    import json

    from cotscope.experiments.agent import tool_spans
    from cotscope.systems.agent import as_messages

    from .faultserver import FaultServer

    script = [
        [("calculator", json.dumps({"input": "(4+3)*2"}))],
        [("calculator", json.dumps({"input": "__import__('os')"})), ("hammer", "{}")],
        [("calculator", "not json"), ("calc\nRESULT: 99", json.dumps({"input": "1"}))],
    ]

    def chat(body):
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant" and m.get("tool_calls"))
        assert body["tools"][0]["function"]["name"] == "calculator"
        if turn < len(script):
            return {"role": "assistant", "content": f"Turn {turn}.", "tool_calls": [
                {"id": f"c{turn}{k}", "type": "function", "function": {"name": n, "arguments": a}} for k, (n, a) in enumerate(script[turn])]}
        return {"role": "assistant", "content": "So it is 14.\nAnswer: 14"}

    with FaultServer() as srv:
        srv.chat = chat
        r = audit(model=f"openai/m@{srv.url}?max_retries=0", task="arithmetic", n_samples=1, system="tool-loop?tools=calculator&calls=native",
                  baseline="", experiments=("turns",), run_dir=tmp_path / "a", progress=False, plots=False)
        (rec,) = r.records
        t = rec.traces["subject"]
        assert t.meta["tool_calls"] == 5 and t.meta["tool_errors"] == 4
        assert "CALL calculator: (4+3)*2\nRESULT: 14" in t.cot_text
        assert "function call" in t.cot_text and "unknown tool 'hammer'" in t.cot_text and "RESULT: 99" not in t.cot_text
        assert len(tool_spans(t)) == 5
        tool_msgs = [m for m in t.messages if m.role == "tool"]
        assert [m.content for m in tool_msgs][0] == "14" and all(m.tool_call_id for m in tool_msgs)
        # An intervention's prefix goes back as messages: the calls it holds as tool calls and their results.
        sent = srv.chats[-1]["messages"]
        assert any(m.get("tool_calls") for m in sent) and any(m["role"] == "tool" for m in sent)
    msgs = as_messages("First.\nCALL calculator: 2+2\nRESULT: 4\nSo four.")
    assert [m.role for m in msgs] == ["assistant", "tool", "assistant"] and msgs[0].tool_calls[0].name == "calculator"
    assert msgs[1].content == "4" and msgs[1].tool_call_id == msgs[0].tool_calls[0].id


def test_native_calls_need_a_provider_that_has_them(tmp_path):
    with pytest.raises(CotscopeError, match="calls=native needs a provider"):
        audit(model="mock", system="tool-loop?calls=native", n_samples=1, run_dir=tmp_path / "x", progress=False, plots=False)
    with pytest.raises(CotscopeError, match="calls must be"):
        audit(model="mock", system="tool-loop?calls=smoke", n_samples=1, run_dir=tmp_path / "y", progress=False, plots=False)
