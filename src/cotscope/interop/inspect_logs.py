"""`cotscope import-inspect LOG`: an Inspect eval log as a cotscope run directory.

Each sample becomes a trace: its messages (the conversation, tool calls and results kept as
they were), and a CoT made of what the assistant wrote before its answer: reasoning blocks,
text, and every tool call and result as ``CALL <tool>: <input>`` / ``RESULT: <output>`` lines
(the `tool-loop` format, so the agent experiments find them). The answer is parsed from the
last assistant message; the CoT stops before the answer line. A log that cotscope's own Inspect
tasks wrote carries each sample's trace: that one is taken as it is.

The directory holds ``task.jsonl`` (the questions and targets), ``samples.jsonl`` (records of
the `recorded` system), ``summary.json`` and ``report.html``; the audit's experiments then run
on the imported traces against any model:

    cotscope audit --model <spec> --task jsonl:DIR/task.jsonl --system 'recorded?run=DIR' --baseline '' --experiments truncate

Nothing in a log is executed: tool calls are text here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .._errors import CotscopeError, require
from ..audit import AuditResult, make_config
from ..records import SampleRecord
from ..store import RunStore, write_text_durably
from ..summary import summarize
from ..tasks import get_task
from ..tasks.base import ANSWER, Sample, extract_answer
from ..trace import Message, ToolCall, Trace, make_steps


def count_tokens(text: str) -> int:
    """An estimate: the log has no tokenizer (four characters a token)."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def import_inspect(log: str | Path, out_dir: str | Path, *, plots: bool = True) -> AuditResult:
    """Read an Inspect eval log (``.eval`` or ``.json``) and write a run directory of its traces.

    Raises:
        CotscopeError: for a file that is no Inspect log, a log without samples, or an existing
            directory that holds another run.
    """
    require("inspect_ai", "inspect", "pip install 'cotscope[inspect]'")
    from inspect_ai.log import read_eval_log

    log, out = Path(log), Path(out_dir)
    if not log.is_file():
        raise CotscopeError(f"{log}: no such file")
    try:
        ev = read_eval_log(str(log))
    except Exception as exc:  # noqa: BLE001 - any failure to parse is one message
        raise CotscopeError(f"{log}: not an Inspect eval log ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not ev.samples:
        raise CotscopeError(f"{log}: the log holds no samples (status {ev.status})")
    samples = [_sample(s) for s in ev.samples]
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):  # several epochs: one sample per (id, epoch)
        samples = [s.model_copy(update={"id": f"{s.id}#{e.epoch}"}) for s, e in zip(samples, ev.samples, strict=True)]
    task_path = out / "task.jsonl"
    task_text = "".join(json.dumps({"id": s.id, "question": s.question, "answer": s.answer,
                                    **({"choices": s.choices} if s.choices else {})}) + "\n" for s in samples)
    model = f"inspect/{ev.eval.model}"
    config = make_config(model=model, task=f"jsonl:{task_path}", n_samples=len(samples), system=f"recorded?run={out}", baseline="",
                         experiments=())
    # Everything about the directory is checked before anything is written in it.
    RunStore(out, config, [], create=False)
    if task_path.exists() and task_path.read_text() != task_text:
        raise CotscopeError(f"{out} holds the samples of another Inspect log ({task_path} differs); use another output directory")
    write_text_durably(task_path, task_text)
    task = get_task(f"jsonl:{task_path}", {})
    store = RunStore(out, config, [], create=False, writer=True)
    store.open()
    records = []
    for sample, es in zip(task.samples, ev.samples, strict=True):
        if sample.id in store.records:
            records.append(store.records[sample.id])
            continue
        trace = _trace(es, task.kind, len(sample.choices or []), model)
        rec = SampleRecord(sample=sample, traces={"subject": trace}, correct={"subject": task.grade(trace.answer, sample)})
        store.append(rec)
        records.append(rec)
    summary = summarize(records, config, [])
    (out / "summary.json").write_text(summary.model_dump_json(indent=2))
    if plots:
        from ..report.html import write_report
        from ..report.plots import plot_run

        plot_run(summary, out, [])
        write_report(out, summary, records, [])
    return AuditResult(summary=summary, run_dir=out, records=records)


def _sample(es: Any) -> Sample:
    """The question and target of an Inspect sample."""
    if isinstance(es.input, str):
        question = es.input
    else:
        question = next((m.text for m in reversed(es.input) if m.role == "user"), "")
    target = es.target if isinstance(es.target, str) else (es.target[0] if es.target else "")
    return Sample(id=str(es.id), question=question, answer=str(target), choices=list(es.choices) if es.choices else None)


def _trace(es: Any, kind: str, n_choices: int, model: str) -> Trace:
    own = (es.metadata or {}).get("cotscope")
    if isinstance(own, dict) and "traces" in own:  # written by cotscope's Inspect tasks
        return SampleRecord.model_validate(own).traces["subject"]
    messages = [_message(m) for m in es.messages]
    first = next((i for i, m in enumerate(es.messages) if m.role == "assistant"), len(es.messages))
    last_assistant = max((i for i, m in enumerate(es.messages) if m.role == "assistant"), default=-1)
    blocks = [c for m in es.messages[first:] if m.role == "assistant" for c in _blocks(m)]
    # Reasoning blocks (ContentReasoning) are a thinking channel: the CoT is the thinking, and the
    # last assistant text is the answer, not reasoning.
    thinking = _thinking_kind(blocks)
    lines: list[str] = []
    for i, m in enumerate(es.messages[first:], first):
        if m.role == "assistant":
            lines += _reasoning(m)
            if not (thinking and i == last_assistant):
                lines.append(m.text.strip())
            lines += [f"CALL {c.function}: {_arguments(c.arguments)}" for c in (m.tool_calls or [])]
        elif m.role == "tool":
            lines.append(f"RESULT: {'error: ' + m.error.message if m.error else m.text.strip()}")
    cot = "\n".join(x for x in lines if x)
    last = next((m for m in reversed(es.messages) if m.role == "assistant"), None)
    final = last.text if last is not None else (es.output.completion if es.output and es.output.choices else "")
    answer, error = extract_answer(final or "", kind, n_choices or None)
    if es.error:
        answer, error = None, f"the Inspect sample failed: {es.error.message}"
    # The CoT ends before the line the answer was parsed from.
    cut = list(ANSWER.finditer(cot))
    if cut and answer is not None:
        cot = cot[: cot.rfind("\n", 0, cut[-1].start()) + 1].rstrip()
    usage = es.output.usage if es.output else None
    stop = es.output.stop_reason if es.output and es.output.choices else "unknown"
    return Trace(
        system="recorded", channel="thinking" if thinking else "prompted", thinking=thinking, steps=make_steps(cot, count_tokens), final_text=final or "", raw_text="\n".join(x for x in lines if x),
        answer=answer, answer_error=error, n_prompt_tokens=usage.input_tokens if usage else 0,
        n_generated_tokens=usage.output_tokens if usage else count_tokens(cot),
        finish_reason="length" if stop in ("max_tokens", "model_length") else "stop", roles={"model": model},
        meta=_tool_counts(es.messages),
        messages=messages,
    )


def _tool_counts(messages: list[Any]) -> dict[str, int]:
    """Tool calls and failed ones, for a trajectory that made any."""
    calls = sum(len(m.tool_calls or []) for m in messages if m.role == "assistant")
    return {"tool_calls": calls, "tool_errors": sum(1 for m in messages if m.role == "tool" and m.error)} if calls else {}


def _blocks(m: Any) -> list[Any]:
    """A message's reasoning blocks (Inspect's ContentReasoning)."""
    if isinstance(m.content, str):
        return []
    return [c for c in m.content if getattr(c, "type", "") == "reasoning"]


def _thinking_kind(blocks: list[Any]) -> str:
    """'' without reasoning blocks; else 'full' when every block's thinking is shown, 'summary'
    when some are redacted but summarized, 'redacted' when some show nothing readable."""
    if not blocks:
        return ""
    if any(c.redacted and not c.summary for c in blocks):
        return "redacted"
    return "summary" if any(c.redacted for c in blocks) else "full"


def _reasoning(m: Any) -> list[str]:
    """The readable text of a message's reasoning blocks: the thinking, or its summary when redacted."""
    out = []
    for c in _blocks(m):
        text = (c.summary or "") if c.redacted else c.reasoning
        if text and text.strip():
            out.append(text.strip())
    return out


def _arguments(args: dict[str, Any]) -> str:
    """A call's arguments as one line: a lone argument's value, else JSON."""
    if len(args) == 1:
        (value,) = args.values()
        if isinstance(value, str | int | float):
            return " ".join(str(value).split())
    return json.dumps(args, sort_keys=True)


def _message(m: Any) -> Message:
    calls = tuple(ToolCall(id=c.id, name=c.function, arguments=json.dumps(c.arguments, sort_keys=True)) for c in (getattr(m, "tool_calls", None) or []))
    error = getattr(m, "error", None)
    return Message(role=m.role, content=m.text, tool_calls=calls, tool_call_id=getattr(m, "tool_call_id", None),
                   error=error.message if error else None)
