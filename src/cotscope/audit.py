"""The audit loop: check everything, run the system and its baseline, run the experiments,
store each batch as it finishes, summarize, report."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ._errors import CotscopeError
from .backends import Backend, GenerationParams, Model, check_backend, get_backend, lockstep
from .config import AuditConfig
from .experiments import Context, Experiment, get_experiments
from .records import SampleRecord
from .store import RunStore
from .summary import Summary, run_metrics, summarize
from .systems import System, get_system
from .systems.base import system_factory
from .systems.rewriter import make_rewriter, rewriter_names
from .tasks import Sample, Task, get_task


class RunFiles:
    """Where a run directory keeps its summary and its report (for results with `run_dir`)."""

    run_dir: Path

    @property
    def summary_path(self) -> Path:
        return self.run_dir / "summary.json"

    @property
    def report_path(self) -> Path:
        return self.run_dir / "report.html"


@dataclass
class AuditResult(RunFiles):
    """What an audit returns: its summary and where everything was written."""

    summary: Summary
    run_dir: Path
    records: list[SampleRecord]


@dataclass
class Plan:
    """A checked audit: every name resolved, every option typed, nothing loaded."""

    config: AuditConfig
    experiments: list[Experiment]
    task: Task


def model_slug(model: str) -> str:
    """A model spec as part of a directory name (its last 40 characters, options dropped)."""
    return model.replace("/", "_").replace(":", "_").replace("@", "_").split("?")[0][-40:]


def task_slug(task: str) -> str:
    return task.split(":")[0].split(".")[-1]


def default_run_dir(config: AuditConfig) -> Path:
    system = config.system.replace(":", "_").replace("/", "_").split("?")[0]
    return Path("runs") / f"{task_slug(config.task)}-{system}-{model_slug(config.model)}-s{config.seed}"


def make_config(config: AuditConfig | None = None, **overrides) -> AuditConfig:
    """A config with keyword overrides applied, validated.

    Raises:
        CotscopeError: naming the first field that does not validate.
    """
    from ._options import with_overrides

    return with_overrides(AuditConfig, config, overrides)


def check(config: AuditConfig, *, backend: Backend | None = None, samples: Sequence[Sample] | None = None) -> Plan:
    """Resolve every name of a config before any model loads: experiments and their options,
    systems and their options, the task and its arguments, every model spec and role.

    `samples`, when given, are audited instead of the task's first `n_samples` (the held-out
    samples of a training run); their number must be `n_samples`.

    Raises:
        CotscopeError: naming the first thing that is wrong.
    """
    experiments = get_experiments(config)
    system_factory(config.system)
    if config.baseline:
        system_factory(config.baseline)
    known_roles = {"rewriter"} | {r for e in experiments for r in e.roles} | {r for m in run_metrics(experiments, config) for r in m.roles}
    for role, spec in config.roles.items():
        if role not in known_roles:
            raise CotscopeError(f"--role {role}={spec}: no selected experiment or metric uses a {role!r} role; known here: {', '.join(sorted(known_roles))}")
        if not spec:
            raise CotscopeError(f"--role {role}= needs a model spec")
        if role == "rewriter" and spec in rewriter_names():
            continue
        check_backend(spec)
    if backend is None:
        check_backend(config.model)
    task = get_task(config.task, config.task_args, limit=config.n_samples, seed=config.seed)
    if samples is not None:
        if len(samples) != config.n_samples or not samples:
            raise CotscopeError(f"{len(samples)} samples given to audit, but the config asks for n_samples={config.n_samples}")
        task = Task(task.name, task.kind, list(samples), task.args)
    return Plan(config=config, experiments=experiments, task=task)


def audit(
    config: AuditConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    backend: Backend | None = None,
    progress: bool = True,
    plots: bool = True,
    samples: Sequence[Sample] | None = None,
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
        samples: Samples to audit instead of the task's first `n_samples` (as many as
            `n_samples`): a training run's held-out samples.

    Returns:
        The summary, the run directory and every sample record.
    """
    config = make_config(config, **overrides)
    plan = check(config, backend=backend, samples=samples)
    task, experiments = plan.task, plan.experiments
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    store = RunStore(run_dir, config, experiments, create=False, writer=True)
    todo = [s for s in task.samples if s.id not in store.records]
    if todo:
        backend = Model.wrap(backend or get_backend(config.model))
        params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed)
        subject = get_system(config.system, backend, task.kind, params)
        baseline = get_system(config.baseline, backend, task.kind, params) if config.baseline else None
        rewriter = make_rewriter(config.roles.get("rewriter", ""), backend, seed=config.seed)
        models = {role: get_backend(spec) for role, spec in config.roles.items() if role != "rewriter"}
        ctx = Context(config=config, task=task, subject=subject, rewriter=rewriter, models=models)
        if not subject.can_prefill:  # a chat API without prefill: nothing can be handed a CoT prefix
            experiments = [e for e in experiments if not e.needs_prefix]
        # Every local model the run calls: in half precision their results depend on batch composition.
        fresh = list({id(m): m for m in (backend, *models.values(), getattr(rewriter, "backend", None)) if isinstance(m, Model)}.values())
        blocks = any(_is_half(m.usage.precision) for m in fresh)
        if blocks and store.stored_config is not None and store.stored_config.samples_in_flight != config.samples_in_flight:
            config = config.model_copy(update={"samples_in_flight": store.stored_config.samples_in_flight})
            store.config = ctx.config = config
            print(f"cotscope: the run is resumed with --samples-in-flight {config.samples_in_flight}, as it was started "
                  "(in half precision its samples run in blocks of that many)", file=sys.stderr)
        store.open()
        done = len(task.samples) - len(todo)
        bar = tqdm(total=len(task.samples), initial=done, desc="audit", unit="sample", disable=not progress, file=sys.stderr)
        # Every sample is a lockstep job: up to samples_in_flight of them run at once and their
        # model calls share batches; each record is written as soon as its sample is done, so
        # a kill loses at most the samples in flight.
        write = threading.Lock()
        redone: dict[str, bool] = {}  # stored samples a resumed block computed again: same record?

        def one(sample: Sample) -> None:
            stage = lambda name: bar.set_postfix_str(name)  # noqa: E731
            (record,) = run_batch(ctx, [sample], baseline, experiments, on_stage=stage)
            with write:
                if sample.id in store.records:
                    redone[sample.id] = _same_record(store.records[sample.id], record)
                    return
                store.append(record)
                bar.update(1)

        if blocks:
            # In half precision a row's arithmetic depends on which rows share its batch, and the KV
            # store and draft tables carry earlier samples' work into later ones. So samples run in
            # fixed blocks of samples_in_flight, in task order, each from a clean slate, and a resumed
            # run computes the interrupted block whole: its batches are those of an uninterrupted run.
            size = config.samples_in_flight
            for start in range(0, len(task.samples), size):
                block = task.samples[start : start + size]
                if all(s.id in store.records for s in block):
                    continue
                for m in fresh:
                    m.forget()
                lockstep.parallel([lambda s=s: one(s) for s in block], width=len(block))
        else:
            lockstep.parallel([lambda s=s: one(s) for s in todo], width=config.samples_in_flight)
        bar.close()
        if redone:
            (run_dir / "resumed.json").write_text(json.dumps({"recomputed": len(redone), "equal": sum(redone.values()),
                                                              "different": sorted(k for k, v in redone.items() if not v)}, indent=2))
        usage = {"subject": backend.usage} | {role: m.usage for role, m in models.items() if isinstance(m, Model)}
        rewriter_model = getattr(rewriter, "backend", None)
        if isinstance(rewriter_model, Model) and rewriter_model is not backend:
            usage["rewriter"] = rewriter_model.usage
        (run_dir / "usage.json").write_text(json.dumps({k: u.model_dump() for k, u in usage.items()}, indent=2))
    records = [store.records[s.id] for s in task.samples]
    summary = summarize(records, config, experiments)
    summary.warnings += _precision_caveats(run_dir)
    unrun = [e.name for e in plan.experiments if e.needs_prefix]
    if unrun and _no_prefill(config.model):
        summary.warnings.append(f"not run: {', '.join(unrun)}: they hand the system a CoT prefix, and its provider cannot continue "
                                "an assistant turn (a chat API without prefill); use the completions endpoint (mode=completions) for them.")
    (run_dir / "summary.json").write_text(summary.model_dump_json(indent=2))
    if plots:
        from .report.html import write_report
        from .report.plots import plot_run

        plot_run(summary, run_dir, experiments)
        write_report(run_dir, summary, records, experiments)
    return AuditResult(summary=summary, run_dir=run_dir, records=records)


def _no_prefill(model: str) -> bool:
    """A model spec whose provider cannot continue an assistant turn: the OpenAI backend's chat mode."""
    return model.startswith("openai/") and "mode=chat" in model.partition("?")[2].split("&")


def _is_half(precision: str) -> bool:
    """A local model's precision ('cpu bfloat16') is bfloat16 or float16: its results depend on batch composition."""
    return "float16" in precision


def _same_record(a: SampleRecord, b: SampleRecord) -> bool:
    """Two records of one sample with the same results (wall time aside)."""
    return a.model_dump(exclude={"wall_s"}) == b.model_dump(exclude={"wall_s"})


def _precision_caveats(run_dir: Path) -> list[str]:
    """Which numbers depend on batch composition: in half precision a row's greedy text can
    change with the rows that share its batch. The audit runs such a model in fixed blocks, so a
    resumed run batches as an uninterrupted one; another machine, thread count or
    --samples-in-flight still batches (or rounds) differently. A resumed block whose stored
    samples came out different when computed again is named. A model decoded by llama-server
    batches as the server's timing decides: named too."""
    path = run_dir / "usage.json"
    try:
        usage = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return []
    precisions = {u.get("precision", "") for u in usage.values() if isinstance(u, dict)}
    out = [f"the model was decoded by llama-server ({p.split('decoded by llama-server (', 1)[1].rstrip(')')}): which rows share "
           "a step depends on the server's timing, so a rerun's greedy text can differ after a near tie; ?server=off decodes "
           "one row at a time, exactly." for p in sorted(precisions) if "decoded by llama-server" in p]
    half = sorted(p for p in precisions if _is_half(p))
    if not half:
        return out
    out += [f"the model ran in {', '.join(half)}: greedy text can depend on which rows share a batch; samples ran in fixed blocks "
           "of --samples-in-flight so that a resumed run batches as an uninterrupted one, but another machine, thread count or "
           "--samples-in-flight may move every number a little; ?dtype=float32 makes runs batch-independent (slower)."]
    try:
        resumed = json.loads((run_dir / "resumed.json").read_text())
    except (OSError, json.JSONDecodeError):
        return out
    if resumed.get("different"):
        out.append(f"resuming computed {resumed['recomputed']} stored samples again and {len(resumed['different'])} came out "
                   f"different ({', '.join(resumed['different'][:5])}): the stored records were kept.")
    return out


def run_batch(
    ctx: Context,
    samples: Sequence[Sample],
    baseline: System | None,
    experiments: Sequence[Experiment],
    on_stage: Callable[[str], object] | None = None,
) -> list[SampleRecord]:
    """Everything for a batch of samples, in a few batched backend calls per experiment.
    `on_stage` hears the name of each stage as it starts (for the progress bar)."""
    stage = on_stage or (lambda name: None)
    start = time.perf_counter()
    # The systems, then the experiments, each run as lockstep jobs: their model calls are
    # merged round by round into wide batches (`backends.lockstep`).
    systems = {"subject": ctx.subject} | ({"baseline": baseline} if baseline is not None else {})
    stage(" + ".join(s.spec for s in systems.values()))
    traces = dict(zip(systems, lockstep.parallel([lambda s=s: s.run(samples) for s in systems.values()]), strict=True))
    results: list[dict[str, list]] = [{} for _ in samples]
    running = [exp for exp in experiments if not (exp.needs_cot and not ctx.subject.has_cot)]
    stage(", ".join(exp.name for exp in running))
    outs = lockstep.parallel([lambda exp=exp: exp.run(ctx, samples, traces["subject"]) for exp in running])
    for exp, per_sample in zip(running, outs, strict=True):
        if len(per_sample) != len(samples):
            raise CotscopeError(f"experiment {exp.name!r} returned results for {len(per_sample)} of {len(samples)} samples")
        for acc, got in zip(results, per_sample, strict=True):
            bad = [type(r).__name__ for r in got if not isinstance(r, exp.Result)]
            if bad:
                raise CotscopeError(f"experiment {exp.name!r} returned {bad[0]}, not its result type {exp.Result.__name__}")
            acc[exp.name] = list(got)
    records = []
    # In lockstep, samples share the model's time: each is charged its share of the rounds it took part in.
    wall = lockstep.share() if lockstep.active() and len(samples) == 1 else (time.perf_counter() - start) / len(samples)
    for i, sample in enumerate(samples):
        tr = {role: ts[i] for role, ts in traces.items()}
        records.append(
            SampleRecord(
                sample=sample,
                traces=tr,
                correct={role: ctx.task.grade(t.answer, sample) for role, t in tr.items()},
                results=results[i],
                wall_s=wall,
            )
        )
    return records
