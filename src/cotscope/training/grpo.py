"""`cotscope train`: GRPO through `trl.GRPOTrainer`, with CoT rewards as plug-ins and the CoT
audited while it trains.

What is TRL's and what is ours: generation, group-relative advantages, the clipped policy
loss, the KL anchor to the starting model (``beta``, > 0 by default), LoRA through peft,
checkpoints and resuming are TRL's and transformers' own. Ours are the rewards
(`cotscope.rewards`), the policy answering from a given CoT for the paraphrase rewards, and a
periodic audit: every `audit_every` steps the current weights are audited on held-out samples
(accuracy, paraphrase sensitivity, early-answering AOC, legibility, the monitor's flag rate,
each with n and CI) and the numbers are appended to ``curves.jsonl``.

Held out by construction: the training prompts are the task's first `n_prompts` samples and
the audit samples the next `audit_samples` whose question is not among them; both lists go to
``split.json`` and every periodic audit reads exactly the held-out one.

A killed run resumes from its last checkpoint (saved every `audit_every` steps, or
`save_every`), and audits already written are not redone. The checkpoint of an audited step
is written before its audit starts, so an audit cut by a kill is finished on the weights it
began with (a resumed run loads that checkpoint and completes the audit before it trains on).
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .. import stats
from .._errors import CotscopeError, require
from .._options import with_overrides
from ..backends import check_backend, get_backend
from ..config import DEFAULT_MODEL, AuditConfig
from ..rewards import get_reward
from ..rewards.base import reward_factory
from ..monitors.builtin import flagged_share
from ..records import SampleRecord
from ..stats import Estimate
from ..store import append_line, check_config_file, read_lines, write_config_file, write_text_durably
from ..systems.prompts import answer_prefix, cot_prompt
from ..systems.thinking import THINK_CLOSE, THINK_OPEN
from ..tasks import Sample, Task, extract_answer, get_task

CURVE_METRICS = ("accuracy/subject", "paraphrase/answer_change", "truncate/aoc", "legibility/real_word_share")


@contextlib.contextmanager
def _trl_reads_old_names():
    """TRL reads transformers' deprecated `is_gradient_checkpointing` when it wraps a LoRA model
    and at every generation step (trl.models.utils); cotscope passes the new names itself, so
    that warning is not about its calls and is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


class TrainingConfig(BaseModel):
    """Everything that decides a training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, description="The policy: a local transformers model (hf/<id-or-path>, gguf/<file>, organism/<name>, smollm2-135m).")
    task: str = Field("arithmetic", description="Task whose samples are the training prompts.")
    task_args: dict[str, str] = Field(default_factory=dict, description="Task arguments as key=value.")
    n_prompts: int = Field(64, ge=1, description="Training prompts drawn from the task.")
    seed: int = Field(0, description="Seeds the prompts, the sampling and the weights' updates.")
    rewards: tuple[str, ...] = Field(("correct",), description="Rewards (cotscope.rewards names with ?options, or package.module:factory).")
    reward_weights: tuple[float, ...] = Field((), description="One weight per reward (default: all 1).")
    steps: int = Field(20, ge=1, description="Optimizer steps.")
    num_generations: int = Field(4, ge=2, description="Completions per prompt (the GRPO group).")
    prompts_per_step: int = Field(2, ge=1, description="Prompts per optimizer step.")
    learning_rate: float = Field(1e-5, gt=0)
    beta: float = Field(0.04, ge=0, description="KL coefficient to the starting model (0 drops the anchor).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the policy's completions.")
    max_completion_length: int = Field(128, ge=1, description="Token budget of a completion.")
    lora: bool = Field(False, description="Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = Field(8, ge=1)
    audit_every: int = Field(10, ge=0, description="Audit the policy every N steps (and before the first); 0: never.")
    audit_samples: int = Field(20, ge=1, description="Held-out samples per periodic audit.")
    audit_experiments: tuple[str, ...] = Field(("paraphrase", "truncate", "legibility"), description="Experiments of the periodic audit.")
    audit_temperature: float = Field(0.0, ge=0, description="Sampling temperature of the periodic audit's CoTs (0: greedy; the policy's own temperature shows the mix it samples from).")
    rewriter: str = Field("", description="Rewriter of the periodic audit and default paraphraser: '' (the policy itself), chain (organisms), or a model spec.")
    use_vllm: bool = Field(False, description="Generate with vLLM inside TRL (GPU only; pip install vllm): TRL's colocate mode.")
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass instead of keeping them (less memory for a large model, more time)."
    )
    answer_tokens: int = Field(8, ge=1, description="Token budget of an answer the policy gives after a given CoT.")


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    curves: list[dict]
    wall_s: float


def make_training_config(config: TrainingConfig | None = None, **overrides) -> TrainingConfig:
    """A training config with keyword overrides applied, validated."""
    return with_overrides(TrainingConfig, config, overrides)


def check_training(config: TrainingConfig) -> Task:
    """Everything resolved before any model loads.

    Raises:
        CotscopeError: naming the first problem; MissingDependency when trl is not installed.
    """
    require("trl", "train")
    if config.use_vllm:
        require("vllm", "train", "pip install vllm (on a machine with a GPU)")
    if config.reward_weights and len(config.reward_weights) != len(config.rewards):
        raise CotscopeError(f"{len(config.reward_weights)} reward weights for {len(config.rewards)} rewards")
    for spec in config.rewards:
        reward_factory(spec)
    prefix = config.model.split("/")[0]
    if prefix in ("openai", "mock", "vllm"):
        raise CotscopeError(f"cotscope train needs local weights to update; {config.model!r} is served (use hf/<id-or-path>, gguf/<file> or organism/<name>)")
    check_backend(config.model)
    if config.audit_every:
        from ..audit import check, make_config

        check(make_config(audit_config(config)))
    return get_task(config.task, config.task_args, limit=config.n_prompts + config.audit_samples, seed=config.seed)


@dataclass
class Split:
    """The training prompts and the held-out audit samples of a run: disjoint by id and by question."""

    train: list[Sample]
    heldout: list[Sample]

    def to_json(self) -> str:
        rows = lambda ss: [{"id": s.id, "question": s.question} for s in ss]  # noqa: E731
        return json.dumps({"train": rows(self.train), "heldout": rows(self.heldout)}, indent=1)


def split_task(task: Task, config: TrainingConfig) -> Split:
    """The first `n_prompts` samples train; the next `audit_samples` whose question is not a
    training question are held out for the periodic audits (none when `audit_every` is 0).

    Raises:
        CotscopeError: when the task has too few samples for both, before any model loads.
    """
    train_samples = task.samples[: config.n_prompts]
    need = config.audit_samples if config.audit_every else 0
    seen = {s.question for s in train_samples}
    heldout = [s for s in task.samples[config.n_prompts :] if s.question not in seen][:need]
    if len(train_samples) < config.n_prompts or len(heldout) < need:
        raise CotscopeError(
            f"task {config.task!r} gives {len(task.samples)} samples: --n-prompts {config.n_prompts} and --audit-samples {need} "
            f"held out from them need {config.n_prompts + need} with distinct questions ({len(train_samples)} training prompts "
            f"and {len(heldout)} held-out samples found); lower one, or give the task more samples"
        )
    return Split(train=train_samples, heldout=heldout)


def audit_config(config: TrainingConfig) -> AuditConfig:
    return AuditConfig(
        model=config.model, task=config.task, task_args=config.task_args, n_samples=config.audit_samples, seed=config.seed,
        baseline="", experiments=config.audit_experiments, max_new_tokens=config.max_completion_length, temperature=config.audit_temperature,
        roles={"rewriter": config.rewriter} if config.rewriter else {},
    )


class PolicyAnswerer:
    """The answer the current weights give, greedily, right after a given CoT."""

    def __init__(self, model, tokenizer, kind: str, n_tokens: int = 8, max_new_tokens: int = 128) -> None:
        self.model, self.tok, self.kind, self.n_tokens = model, tokenizer, kind, n_tokens
        self.max_new_tokens = max_new_tokens  # what a continuation may write before its answer

    def _generate(self, texts: Sequence[str], max_new_tokens: int) -> list[str]:
        import torch

        side, self.tok.padding_side = self.tok.padding_side, "left"
        enc = self.tok(list(texts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        self.tok.padding_side = side
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tok.pad_token_id)
        finally:
            if was_training:
                self.model.train()
        return [self.tok.decode(row, skip_special_tokens=True) for row in out[:, enc["input_ids"].shape[1]:]]

    def __call__(self, prompts: Sequence[str], cots: Sequence[str]) -> list[str | None]:
        # a prompt whose generation prompt opens a thinking block: the block is closed before the answer
        texts = [p + (c.strip() + f"\n{THINK_CLOSE}\n\n" + answer_prefix("", self.kind) if p.rstrip().endswith(THINK_OPEN) else answer_prefix(c.strip(), self.kind))
                 for p, c in zip(prompts, cots, strict=True)]
        return [extract_answer("Answer:" + t.split("\n")[0], self.kind)[0] for t in self._generate(texts, self.n_tokens)]

    def continue_from(self, prompts: Sequence[str], prefixes: Sequence[str], max_new_tokens: int) -> list[str | None]:
        """The answer the policy reaches when it writes on from each CoT prefix (greedy)."""
        texts = [p + (c.strip() + "\n" if c.strip() else "") for p, c in zip(prompts, prefixes, strict=True)]
        outs = self._generate(texts, max_new_tokens + self.n_tokens)
        answers = []
        for o in outs:
            _, cue, tail = o.partition("Answer:")
            answers.append(extract_answer("Answer:" + tail.split("\n")[0], self.kind)[0] if cue else None)
        return answers


ExtraCurves = Callable[[Sequence[SampleRecord]], dict[str, Estimate]]


def train(
    config: TrainingConfig | None = None,
    run_dir: str | Path = "runs/train",
    *,
    progress: bool = True,
    extra_curves: ExtraCurves | None = None,
    **overrides,
) -> TrainResult:
    """Train a policy with GRPO on CoT rewards, auditing it as it goes.

    Args:
        config: The configuration; keyword `overrides` replace its fields.
        run_dir: Where checkpoints, ``curves.jsonl``, the audits and the report go; a directory
            with the same config is resumed from its last checkpoint.
        progress: Show TRL's progress bar.
        extra_curves: More numbers to draw from each periodic audit's records.

    Returns:
        The run directory, the steps trained and the curves.
    """
    config = make_training_config(config, **overrides)
    task = check_training(config)
    split = split_task(task, config)
    run_dir = Path(run_dir)
    _check_dir(run_dir, config)
    _write_split(run_dir, split)
    start = time.perf_counter()
    trl = require("trl", "train")
    import torch
    from datasets import Dataset

    torch.manual_seed(config.seed)
    backend = get_backend(config.model, cache=False)
    model, tok = getattr(backend, "model", None), getattr(backend, "tok", None)
    if model is None or tok is None:
        raise CotscopeError(f"{config.model!r} is not a local transformers model")
    tok.padding_side = "left"
    if getattr(model, "is_quantized", False) and all(p.is_floating_point() for p in model.parameters()):
        # A GGUF file is dequantized when transformers loads it; what trains is that float copy.
        model.is_quantized = False
        model.hf_quantizer = None
    _loadable_reference(model, tok, run_dir)
    prompts = [backend.render(cot_prompt(s, task.kind)) for s in split.train]
    data = Dataset.from_list([{"prompt": p, "answer": s.answer} for p, s in zip(prompts, split.train, strict=True)])
    answerer = PolicyAnswerer(model, tok, task.kind, config.answer_tokens, config.max_completion_length)
    rewards = [get_reward(_with_paraphraser(spec, config), answerer=answerer, kind=task.kind) for spec in config.rewards]
    peft_config = None
    if config.lora:
        peft = require("peft", "train")
        peft_config = peft.LoraConfig(r=config.lora_r, lora_alpha=2 * config.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    save_every = config.audit_every or max(1, config.steps // 4)
    args = trl.GRPOConfig(
        output_dir=str(run_dir / "checkpoints"), max_steps=config.steps, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.num_generations * config.prompts_per_step, num_generations=config.num_generations,
        max_completion_length=config.max_completion_length, temperature=config.temperature, beta=config.beta,
        reward_weights=list(config.reward_weights) or None, seed=config.seed, data_seed=config.seed,
        save_strategy="steps", save_steps=save_every, logging_steps=1, report_to="none", bf16=False,
        disable_tqdm=not progress, use_cpu=not torch.cuda.is_available(),
        # TRL's default is on (through transformers' deprecated gradient_checkpointing names, a
        # FutureWarning each time); off unless asked, since recomputing only costs a small model time.
        activation_checkpointing=config.activation_checkpointing,
        **({"use_vllm": True, "vllm_mode": "colocate"} if config.use_vllm else {}),
    )
    audits = _Audits(config, run_dir, split.heldout, tok, extra_curves)
    with _trl_reads_old_names():
        trainer = trl.GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=data, processing_class=tok,
                                  peft_config=peft_config, callbacks=[audits.callback()])
    if not progress:  # the step logs are in log.jsonl; without a bar, print nothing per step
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    answerer.model = trainer.model
    audits.model = trainer.model
    if config.audit_every:
        audits.run(0)
    resume = _last_checkpoint(run_dir / "checkpoints")
    state = json.loads((resume / "trainer_state.json").read_text()) if resume else {}
    if resume and audits.due(state["global_step"], config.steps) and not audits.done(state["global_step"]):
        # Killed during (or just before) the audit of this checkpoint's step: finish it on the
        # checkpoint's weights, the ones it started with, before training goes on.
        trainer._load_from_checkpoint(str(resume))
        audits.run(state["global_step"])
    finished = state.get("global_step", 0) >= config.steps
    if not finished:
        # A finished run is not handed back to the trainer: resumed mid-epoch at its last step,
        # transformers' Trainer takes one step past max_steps.
        with _trl_reads_old_names():
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        state = {"global_step": trainer.state.global_step, "log_history": trainer.state.log_history}
    if not finished or not (run_dir / "log.jsonl").exists():  # or killed after its last checkpoint
        (run_dir / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in state["log_history"]))
    curves = audits.load()
    _write_report(run_dir, config, curves)
    return TrainResult(run_dir=run_dir, steps=state["global_step"], curves=curves, wall_s=time.perf_counter() - start)


def _loadable_reference(model, tok, run_dir: Path) -> None:
    """TRL loads the KL reference model from the policy's `name_or_path`; a model that cannot be
    loaded from there (a GGUF file), or that was read from cotscope's cache of converted GGUF
    files (which may be cleared while a run waits to resume), is saved once as it starts, and
    named by that copy: the run directory holds what a resumed run needs."""
    from transformers import AutoConfig

    from ..backends.hf import cache_root

    name = model.config._name_or_path
    try:
        if not Path(name).resolve().is_relative_to(cache_root().resolve()):
            AutoConfig.from_pretrained(name)
            return
    except (OSError, ValueError):
        pass
    base = run_dir / "base"
    if not (base / "config.json").exists():
        model.save_pretrained(base)
        tok.save_pretrained(base)
    model.config._name_or_path = str(base)


def _with_paraphraser(spec: str, config: TrainingConfig) -> str:
    """Paraphrase rewards use the run's rewriter unless their spec names one."""
    if config.rewriter and spec.split("?")[0] in ("correct-after-paraphrase", "paraphrase-consistency") and "paraphraser=" not in spec:
        return f"{spec}{'&' if '?' in spec else '?'}paraphraser={config.rewriter}"
    return spec


def _check_dir(run_dir: Path, config: TrainingConfig) -> None:
    check_config_file(run_dir / "config.json", config, "training")
    write_config_file(run_dir / "config.json", config, "train")


def _write_split(run_dir: Path, split: Split) -> None:
    """``split.json``: the ids and questions of the training prompts and the held-out samples
    (the same on every resume: it is a function of the config)."""
    path = run_dir / "split.json"
    text = split.to_json()
    if path.exists() and path.read_text() != text:
        raise CotscopeError(f"{path} holds another split of the task than this config draws; use another --out directory")
    if not path.exists():
        write_text_durably(path, text)


def _last_checkpoint(path: Path) -> Path | None:
    done = [p for p in path.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


class _Audits:
    """The periodic audit: held-out samples through the cot system on the current weights."""

    def __init__(self, config: TrainingConfig, run_dir: Path, samples, tok, extra: ExtraCurves | None) -> None:
        self.config, self.run_dir, self.samples, self.tok, self.extra = config, run_dir, samples, tok, extra
        self.path = run_dir / "curves.jsonl"
        self.model = None

    def load(self) -> list[dict]:
        """The audits written so far, by step (a line torn by a kill is dropped and redone)."""
        rows = {}
        for _, line in read_lines(self.path, repair=True):
            row = json.loads(line)
            rows.setdefault(row["step"], row)
        return [rows[k] for k in sorted(rows)]

    def due(self, step: int, max_steps: int) -> bool:
        """Whether step `step` is audited."""
        every = self.config.audit_every
        return bool(every) and (step % every == 0 or step == max_steps)

    def done(self, step: int) -> bool:
        return any(r["step"] == step for r in self.load())

    def run(self, step: int) -> None:
        if self.done(step):
            return
        from ..audit import audit
        from ..backends.hf import HFBackend

        self.model.eval()
        try:
            result = audit(audit_config(self.config), self.run_dir / "audits" / f"step-{step:05d}", backend=HFBackend(self.model, self.tok),
                           progress=False, plots=False, samples=self.samples)
        finally:
            self.model.train()
        metrics = {name: result.summary.metrics[name] for name in CURVE_METRICS if name in result.summary.metrics}
        flags = [[float(f)] for r in result.records if (f := flagged_share(r.traces["subject"].cot_text)) is not None]
        metrics["monitor/flag_share"] = stats.clustered_rate(flags)
        if self.extra:
            metrics.update(self.extra(result.records))
        row = {"step": step, "metrics": {k: v.model_dump() for k, v in metrics.items()}}
        append_line(self.path, json.dumps(row) + "\n")

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class AuditCallback(TrainerCallback):
            # The checkpoint of an audited step is written first (on_step_end asks for it; the
            # trainer saves, then calls on_save), so one set of weights makes each audit.
            def on_step_end(self, args, state, control, **kwargs):
                if outer.due(state.global_step, state.max_steps):
                    control.should_save = True
                return control

            def on_save(self, args, state, control, **kwargs):
                if outer.due(state.global_step, state.max_steps):
                    outer.run(state.global_step)

        return AuditCallback()


REPORT = r"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cotscope train · {{ cfg.model }}</title>
<style>body{font:15px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330}table{border-collapse:collapse}
th,td{padding:4px 10px;border-bottom:1px solid #e6e9ef;text-align:left}td{font-variant-numeric:tabular-nums;white-space:nowrap}img{max-width:100%}</style></head><body>
<h1>cotscope train: {{ cfg.model }}</h1>
<p>rewards {{ cfg.rewards | join(", ") }} (weights {{ cfg.reward_weights | join(", ") if cfg.reward_weights else "all 1" }}) · {{ cfg.steps }} steps ·
beta {{ cfg.beta }} · lr {{ cfg.learning_rate }} · {{ cfg.num_generations }} completions x {{ cfg.prompts_per_step }} prompts a step · audit n={{ cfg.audit_samples }} · seed {{ cfg.seed }}</p>
{% if plot %}<img src="data:image/png;base64,{{ plot }}" alt="curves">{% endif %}
<h2>Periodic audit (95% CI)</h2><table><thead><tr><th>step</th>{% for n in names %}<th>{{ n }}</th>{% endfor %}<th>audit</th></tr></thead><tbody>
{% for row in curves %}<tr><td>{{ row.step }}</td>{% for n in names %}<td>{{ fmt(row.metrics.get(n)) }}</td>{% endfor %}
<td><a href="audits/step-{{ '%05d' | format(row.step) }}/summary.json">summary</a></td></tr>{% endfor %}</tbody></table>
<h2>Config</h2><pre>{{ config_json }}</pre></body></html>"""


def _write_report(run_dir: Path, config: TrainingConfig, curves: list[dict]) -> None:
    """curves.png (each audited number against the step, with its interval) and report.html."""
    if not curves:
        return
    _plot_curves(run_dir, config, curves)
    import base64

    import jinja2

    from ..report.table import fmt_interval

    names = sorted({k for row in curves for k in row["metrics"]})
    fmt = lambda e: "" if e is None else fmt_interval(Estimate.model_validate(e), False, with_n=True)  # noqa: E731
    png = run_dir / "curves.png"
    html = jinja2.Environment(autoescape=True).from_string(REPORT).render(
        cfg=config, curves=curves, names=names, fmt=fmt, config_json=config.model_dump_json(indent=2),
        plot=base64.b64encode(png.read_bytes()).decode() if png.exists() else "",
    )
    (run_dir / "report.html").write_text(html, encoding="utf-8")


def _plot_curves(run_dir: Path, config: TrainingConfig, curves: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k for row in curves for k in row["metrics"]})
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        pts = [(r["step"], Estimate.model_validate(r["metrics"][name])) for r in curves if name in r["metrics"]]
        pts = [(s, e) for s, e in pts if e.value is not None]
        if pts:
            ax.errorbar([s for s, _ in pts], [e.value for _, e in pts], yerr=[[e.value - e.lo for _, e in pts], [e.hi - e.value for _, e in pts]],
                        fmt="o-", capsize=2)
        ax.set(title=name, xlabel="step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{config.model} · rewards {', '.join(config.rewards)} · audit n={config.audit_samples} (95% CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=100)
    plt.close(fig)


