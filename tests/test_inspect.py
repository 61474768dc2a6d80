"""cotscope inside Inspect (`inspect eval cotscope/<task>`) and Inspect logs inside cotscope
(`cotscope import-inspect`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from cotscope import CotscopeError  # noqa: E402
from cotscope.cli.main import main  # noqa: E402

from tests.helpers import tiktoken_cache  # noqa: E402

INSPECT = str(Path(sys.executable).parent / "inspect")


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory):
    """Inspect's mockllm counts tokens with tiktoken's o200k_base: offline, from a local cache."""
    return {**os.environ, "TIKTOKEN_CACHE_DIR": str(tiktoken_cache(tmp_path_factory.mktemp("tiktoken")))}


@pytest.mark.slow
def test_inspect_eval_runs_a_cotscope_task_and_its_log_comes_back(offline_env, tmp_path):
    from inspect_ai.log import read_eval_log

    logs = tmp_path / "logs"
    proc = subprocess.run([INSPECT, "eval", "cotscope/early_answering", "--model", "mockllm/model", "--limit", "2", "-T", "n_samples=4",
                           "--log-dir", str(logs)], env=offline_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (log,) = list(logs.glob("*.eval"))
    ev = read_eval_log(str(log))
    assert ev.status == "success" and len(ev.samples) == 2
    metrics = ev.results.scores[0].metrics
    assert metrics["aoc_n"].value == 2 and 0 <= metrics["aoc_ci_lo"].value <= metrics["aoc"].value <= metrics["aoc_ci_hi"].value <= 1
    # The metric is cotscope's own: the records in the log give the same estimate.
    from cotscope.experiments.truncate import Truncate
    from cotscope.records import SampleRecord

    records = [SampleRecord.model_validate(s.metadata["cotscope"]) for s in ev.samples]
    e = next(m for m in Truncate().metrics() if m.name == "truncate/aoc").estimate(records)
    assert (e.value, e.lo, e.hi) == pytest.approx((metrics["aoc"].value, metrics["aoc_ci_lo"].value, metrics["aoc_ci_hi"].value))

    out = tmp_path / "imported"
    assert main(["import-inspect", str(log), "--out", str(out)]) == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == len(ev.samples)
    assert (out / "report.html").stat().st_size > 1000
    # ... and the audit's experiments run on the imported traces against another model.
    assert main(["audit", "--model", "mock", "--task", f"jsonl:{out / 'task.jsonl'}", "--system", f"recorded?run={out}", "--baseline", "",
                 "--experiments", "truncate", "--out", str(tmp_path / "re"), "--no-progress"]) == 0
    recs = [json.loads(x) for x in (tmp_path / "re" / "samples.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(r["results"]["truncate"] for r in recs)
    assert [r["traces"]["subject"]["steps"] for r in recs] == [json.loads(x)["traces"]["subject"]["steps"] for x in lines]


def test_an_agent_log_with_tool_calls_imports_as_a_trajectory(offline_env, tmp_path, monkeypatch):
    """An Inspect agent (use_tools + generate) on mockllm with scripted tool calls: the calls
    and results become CALL/RESULT lines, the answer line leaves the CoT, and the agent
    experiments find the calls."""
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, get_model
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate, use_tools
    from inspect_ai.tool import tool

    @tool
    def add():
        async def execute(x: int, y: int):
            """Add two numbers.

            Args:
                x: First number.
                y: Second number.
            """
            return str(x + y)

        return execute

    outputs = [ModelOutput.for_tool_call("mockllm/model", "add", {"x": 4, "y": 3}),
               ModelOutput.for_tool_call("mockllm/model", "add", {"x": "__import__('os')", "y": 1}),
               ModelOutput.from_content("mockllm/model", "Four and three are seven; doubled, fourteen.\nANSWER: 14")]
    model = get_model("mockllm/model", custom_outputs=outputs)
    task = Task(dataset=[Sample(input="What is (4+3)*2?", target="14", id="q1")], solver=[use_tools(add()), generate()], scorer=match())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", offline_env["TIKTOKEN_CACHE_DIR"])
    (ev,) = eval(task, model=model, log_dir=str(tmp_path / "logs"), display="none")
    assert ev.status == "success", ev.samples[0].error
    from cotscope.interop.inspect_logs import import_inspect

    r = import_inspect(ev.location, tmp_path / "imp", plots=False)
    (rec,) = r.records
    t = rec.traces["subject"]
    assert t.answer == "14" and rec.correct["subject"]
    assert "CALL add: " in t.cot_text and "RESULT: 7" in t.cot_text and "ANSWER" not in t.cot_text
    assert t.meta["tool_calls"] == 2 and t.meta["tool_errors"] == 1  # the hostile argument is a tool error in Inspect, text here
    assert any(m.tool_calls for m in t.messages) and any(m.role == "tool" for m in t.messages)
    from cotscope.experiments.agent import tool_spans

    assert [s.tool for s in tool_spans(t)] == ["add", "add"]


def test_import_refuses_what_is_not_a_log(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(CotscopeError, match="not an Inspect eval log"):
        from cotscope.interop.inspect_logs import import_inspect

        import_inspect(bad, tmp_path / "o")
    with pytest.raises(CotscopeError, match="no such file"):
        import_inspect(tmp_path / "missing.eval", tmp_path / "o")


def test_the_recorded_system_names_what_is_missing(tmp_path):
    from cotscope import audit

    with pytest.raises(CotscopeError, match="recorded: .* not found"):
        audit(model="mock", system=f"recorded?run={tmp_path / 'none'}", n_samples=1, run_dir=tmp_path / "a", progress=False, plots=False)
    src = audit(model="mock", task="arithmetic", n_samples=2, baseline="", experiments=(), run_dir=tmp_path / "src", progress=False, plots=False)
    with pytest.raises(CotscopeError, match="no trace for sample"):
        audit(model="mock", task="arithmetic", n_samples=3, system=f"recorded?run={src.run_dir}", baseline="", experiments=(),
              run_dir=tmp_path / "b", progress=False, plots=False)


@pytest.mark.parametrize("shown", ["full", "summary", "redacted"])
def test_reasoning_blocks_import_as_the_thinking_channel(shown, offline_env, tmp_path, monkeypatch):
    """Inspect's ContentReasoning is the CoT (the answer text is not), and a summarized or
    redacted thinking is flagged as such and left out of every faithfulness metric."""
    from inspect_ai import Task, eval
    from inspect_ai._util.content import ContentReasoning, ContentText
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, get_model
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    thinking = "Four plus three is seven.\nDoubled, that is fourteen."
    block = {
        "full": ContentReasoning(reasoning=thinking),
        "summary": ContentReasoning(reasoning="gAAAA-encrypted", redacted=True, summary="Added, then doubled."),
        "redacted": ContentReasoning(reasoning="gAAAA-encrypted", redacted=True),
    }[shown]
    outputs = [ModelOutput.from_content("mockllm/model", [block, ContentText(text="ANSWER: 14")])]
    model = get_model("mockllm/model", custom_outputs=outputs)
    task = Task(dataset=[Sample(input="What is (4+3)*2?", target="14", id="q1")], solver=[generate()], scorer=match())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", offline_env["TIKTOKEN_CACHE_DIR"])
    (ev,) = eval(task, model=model, log_dir=str(tmp_path / "logs"), display="none")
    from cotscope.interop.inspect_logs import import_inspect

    r = import_inspect(ev.location, tmp_path / "imp", plots=False)
    (rec,) = r.records
    t = rec.traces["subject"]
    assert t.channel == "thinking" and t.thinking == shown and t.answer == "14"
    assert "ANSWER" not in t.cot_text and "gAAAA" not in t.cot_text
    if shown == "full":
        assert [s.text for s in t.steps] == thinking.splitlines()
    else:
        assert any("thinking" in w and "leaves them out" in w for w in r.summary.warnings)


@pytest.mark.parametrize("shown", ["full", "summary"])
def test_the_inspect_solver_reads_reasoning_blocks_from_a_provider_that_cannot_prefill(shown, offline_env, tmp_path, monkeypatch):
    """`-T system=think -T prefill=false`: the model's ContentReasoning is the CoT, its text the
    answer, a summary is flagged as one; a task that hands over a prefix is refused by name."""
    from inspect_ai import eval
    from inspect_ai._util.content import ContentReasoning, ContentText
    from inspect_ai.model import ModelOutput, get_model

    from cotscope.interop.inspect_tasks import make_task
    from cotscope.records import SampleRecord

    thinking = "The hint says B, but I check it.\nFour plus three is seven."
    block = ContentReasoning(reasoning=thinking) if shown == "full" else ContentReasoning(reasoning="gAAAA", redacted=True, summary="Checked it.")

    def replies():
        while True:
            yield ModelOutput.from_content("mockllm/model", [block, ContentText(text="Answer: 7")])

    model = get_model("mockllm/model", custom_outputs=replies())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", offline_env["TIKTOKEN_CACHE_DIR"])
    task = make_task("hints", task="arithmetic", n_samples=2, system="think", prefill="false")
    (ev,) = eval(task, model=model, log_dir=str(tmp_path / "logs"), display="none")
    assert ev.status == "success", ev.error
    for s in ev.samples:
        t = SampleRecord.model_validate(s.metadata["cotscope"]).traces["subject"]
        assert t.channel == "thinking" and t.thinking == shown and t.answer == "7" and "Answer" not in t.cot_text
        assert t.cot_text == (thinking if shown == "full" else "Checked it.")
    with pytest.raises(CotscopeError, match="early_answering hands the model a CoT prefix.*prefill=false"):
        make_task("early_answering", system="think", prefill=False)
