"""The audit loop: run the system and its baseline, run the experiments, store, summarize."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ._errors import CotscopeError
from .backends import Backend, GenerationParams, get_backend
from .config import EXPERIMENTS, HINT_KINDS, AuditConfig
from .experiments import EXPERIMENTS as EXPERIMENT_FNS
from .experiments import Context
from .interventions.rewriter import make_rewriter
from .log import RunStore, SampleRecord
from .metrics.summary import Summary, summarize
from .systems import System, get_system
from .tasks import Sample, get_task


@dataclass
class AuditResult:
    """What an audit returns: its summary and where everything was written."""

    summary: Summary
    run_dir: Path
    records: list[SampleRecord]

    @property
    def summary_path(self) -> Path:
        return self.run_dir / "summary.json"

    @property
    def report_path(self) -> Path:
        return self.run_dir / "report.html"


def default_run_dir(config: AuditConfig) -> Path:
    name = config.model.replace("/", "_").replace(":", "_").replace("@", "_").split("?")[0][-40:]
    return Path("runs") / f"{config.task.split(':')[0]}-{config.system}-{name}-s{config.seed}"


def audit(
    config: AuditConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    backend: Backend | None = None,
    progress: bool = True,
    plots: bool = True,
    **overrides,
) -> AuditResult:
    """Run an audit and write its run directory.

    Args:
        config: The configuration; keyword `overrides` replace its fields
            (``audit(model="mock", n_samples=5)``).
        run_dir: Where to write; an existing run directory with the same config is resumed.
        backend: A backend object to use instead of building one from ``config.model``.
        progress: Show progress bars.
        plots: Write PNG plots and the HTML report.

    Returns:
        The summary, the run directory and every sample record.
    """
    config = AuditConfig.model_validate({**(config or AuditConfig()).model_dump(), **overrides})
    unknown = set(config.experiments) - set(EXPERIMENTS)
    if unknown:
        raise CotscopeError(f"unknown experiment(s) {sorted(unknown)}; known: {', '.join(EXPERIMENTS)}")
    bad_hints = set(config.hint_kinds) - set(HINT_KINDS)
    if bad_hints:
        raise CotscopeError(f"unknown hint kind(s) {sorted(bad_hints)}; known: {', '.join(HINT_KINDS)}")
    task = get_task(config.task, config.task_args, limit=config.n_samples, seed=config.seed)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    store = RunStore(run_dir, config)
    todo = [s for s in task.samples if s.id not in store.records]
    if todo:
        backend = backend or get_backend(config.model)
        params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed)
        subject = get_system(config.system, backend, task.kind, params)
        baseline = get_system(config.baseline, backend, task.kind, params) if config.baseline else None
        rewriter = make_rewriter(config.rewriter_model, backend, seed=config.seed)
        judge = get_backend(config.judge_model) if config.judge_model else None
        ctx = Context(config=config, task=task, subject=subject, rewriter=rewriter, judge=judge)
        done = len(task.samples) - len(todo)
        bar = tqdm(total=len(task.samples), initial=done, desc="audit", unit="sample", disable=not progress, file=sys.stderr)
        for start in range(0, len(todo), config.samples_per_flush):
            batch = todo[start : start + config.samples_per_flush]
            stage = lambda name, n=len(batch): bar.set_postfix_str(f"{name} ×{n}")  # noqa: E731
            for record in run_batch(ctx, batch, baseline, on_stage=stage):
                store.append(record)
            bar.update(len(batch))
        bar.close()
    records = [store.records[s.id] for s in task.samples]
    summary = summarize(records, config)
    (run_dir / "summary.json").write_text(summary.model_dump_json(indent=2))
    if plots:
        from .report.html import write_report
        from .report.plots import plot_run

        plot_run(summary, run_dir)
        write_report(run_dir, summary, records)
    return AuditResult(summary=summary, run_dir=run_dir, records=records)


def run_batch(
    ctx: Context, samples: Sequence[Sample], baseline: System | None, on_stage: Callable[[str], object] | None = None
) -> list[SampleRecord]:
    """Everything for a batch of samples, in a few batched backend calls per experiment.
    `on_stage` hears the name of each stage as it starts (for the progress bar)."""
    stage = on_stage or (lambda name: None)
    start = time.perf_counter()
    stage(ctx.config.system)
    traces = {"subject": ctx.subject.run(samples)}
    if baseline is not None:
        stage(ctx.config.baseline)
        traces["baseline"] = baseline.run(samples)
    fields: list[dict[str, list]] = [{} for _ in samples]
    if ctx.subject.has_cot:
        for name in ctx.config.experiments:
            stage(name)
            for acc, new in zip(fields, EXPERIMENT_FNS[name](ctx, samples, traces["subject"]), strict=True):
                for key, values in new.items():
                    acc.setdefault(key, []).extend(values)
    records = []
    wall = (time.perf_counter() - start) / len(samples)
    for i, sample in enumerate(samples):
        tr = {role: ts[i] for role, ts in traces.items()}
        records.append(
            SampleRecord(
                sample=sample,
                traces=tr,
                correct={role: ctx.task.grade(t.answer, sample) for role, t in tr.items()},
                wall_s=wall,
                **fields[i],
            )
        )
    return records
