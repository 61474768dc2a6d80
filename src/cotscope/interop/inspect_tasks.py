"""cotscope's experiments as Inspect tasks (``pip install -e '.[inspect]'``):

    inspect eval cotscope/early_answering --model mockllm/model --limit 2
    inspect eval cotscope/adding_mistakes --model openai-api/llamacpp/local -T task=arithmetic -T n_samples=16

Inspect finds them through the ``inspect_ai`` entry point in ``pyproject.toml``. Each task is a
dataset (a cotscope task's samples), one solver and one scorer, and both reuse cotscope: the
solver runs ``audit.run_batch`` (the system, then the experiment, exactly as ``cotscope audit``
does) with Inspect's model behind a cotscope `Backend`; the scorer keeps the sample's record;
the metric rebuilds the records and asks the experiment's own `Metric` for the estimate, so the
number, its n and its CI are the ones ``cotscope audit`` reports.

Task arguments (``-T name=value``): task, task_args ("key=value,key=value"), n_samples, seed,
system, max_new_tokens, continue_max_new_tokens, temperature, rewriter (a model spec or
``chain``; '' uses the evaluated model), prefill (below). On a multiple-choice task the forced answer is the
choice letter with the highest next-token log-probability: the provider must return them
(``logprobs``/``top_logprobs``; mockllm does not).

A CoT prefix that the system continues from is sent as a last assistant message; providers
that continue an assistant turn (llama.cpp's server, vLLM with ``continue_final_message``) do
so, others would start a new turn from it, which is not the model going on with its own
thought: for those give ``-T prefill=false``. Then the experiments that hand over a prefix do
not run (the log's metrics name none of them), and with ``-T system=think`` the CoT is the
model's reasoning blocks (Inspect's ``ContentReasoning``), the answer its text; summarized or
redacted reasoning is flagged as such and left out of the metrics, as ``import-inspect`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .._errors import CotscopeError, require

inspect_ai = require("inspect_ai", "inspect", "pip install 'cotscope[inspect]'")

import anyio  # noqa: E402 - a dependency of inspect_ai
from inspect_ai import Task, task  # noqa: E402
from inspect_ai.dataset import MemoryDataset  # noqa: E402
from inspect_ai.dataset import Sample as InspectSample  # noqa: E402
from inspect_ai.model import (  # noqa: E402
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    GenerateConfig,
    ModelOutput,
    get_model,
)
from inspect_ai.scorer import SampleScore, Score, Target, metric, scorer  # noqa: E402
from inspect_ai.solver import Generate, TaskState, solver  # noqa: E402

from ..audit import check, make_config, run_batch  # noqa: E402
from ..backends import Backend, Completion, GenerationParams, Model, Prompt  # noqa: E402
from ..backends.base import cut_at_stop  # noqa: E402
from ..config import AuditConfig  # noqa: E402
from ..experiments import EXPERIMENTS, Context, get_experiments  # noqa: E402
from ..records import SampleRecord  # noqa: E402
from ..summary import run_metrics  # noqa: E402
from ..systems import get_system  # noqa: E402
from ..systems.prompts import format_question  # noqa: E402
from ..systems.rewriter import make_rewriter  # noqa: E402
from .inspect_logs import _blocks, _reasoning, _thinking_kind, count_tokens  # noqa: E402

def _tasks() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Inspect task -> (cotscope experiment, its headline metrics), from every registered
    experiment that names an Inspect task (a plug-in's included)."""
    return {cls.inspect_task: (name, tuple(cls.headline)) for name, cls in EXPERIMENTS.load_all() if getattr(cls, "inspect_task", "")}


TASKS = _tasks()


class InspectBackend(Backend):
    """A cotscope backend over the model of a running Inspect eval. Its methods are called
    from a worker thread that Inspect's event loop started (`anyio.to_thread`); each batch of
    prompts goes back to the loop as concurrent `generate` calls."""

    def __init__(self, model, can_continue: bool = True) -> None:
        self.model = model
        self.spec = f"inspect/{model}"
        self.can_continue = can_continue  # whether the provider continues a last assistant message (task argument `prefill`)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        config = GenerateConfig(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                                seed=params.seed, stop_seqs=list(params.stop) or None)

        outs = self._outputs(prompts, config)
        done = []
        for p, out in zip(prompts, outs, strict=True):
            if out.error:
                raise CotscopeError(f"{self.spec}: {out.error}")
            text, stopped = cut_at_stop(out.completion, params.stop)
            usage = out.usage
            length = out.stop_reason in ("max_tokens", "model_length") and not stopped
            blocks = _blocks(out.message) if out.choices else []
            done.append(Completion(
                text=text, finish_reason="length" if length else "stop",
                n_prompt_tokens=usage.input_tokens if usage else self.count_tokens(p.prefix),
                n_generated_tokens=usage.output_tokens if usage else self.count_tokens(text),
                reasoning="\n\n".join(_reasoning(out.message)) if blocks else None, shown=_thinking_kind(blocks) or "full",
            ))
        return done

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Log-probabilities of one-token candidates (answer letters), read off the top 20
        log-probabilities of the next token; a candidate not among them gets -100. Needs a
        provider that returns log-probabilities."""
        config = GenerateConfig(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)
        out = []
        for conts, o in zip(continuations, self._outputs(prompts, config), strict=True):
            lp = o.choices[0].logprobs if o.choices else None
            if lp is None or not lp.content:
                raise CotscopeError(f"{self.spec} gave no log-probabilities: multiple-choice answers need them (a provider that returns logprobs)")
            top: dict[str, float] = {}
            for t in lp.content[0].top_logprobs or [lp.content[0]]:
                top.setdefault(t.token.strip(), t.logprob)
            if not any(c.strip() in top for c in conts):
                raise CotscopeError(f"{self.spec}: no candidate ({', '.join(c.strip() for c in conts)}) among the top {len(top)} next tokens; "
                                    "the provider may not continue an assistant prefix")
            out.append([top.get(c.strip(), -100.0) for c in conts])
        return out

    def _outputs(self, prompts: Sequence[Prompt], config: GenerateConfig) -> list[ModelOutput]:
        """The model's output for each prompt, the calls made concurrently on Inspect's loop."""

        async def all_() -> list[ModelOutput]:
            return list(await asyncio.gather(*(self.model.generate(to_messages(p), config=config) for p in prompts)))

        return anyio.from_thread.run(all_)

    def count_tokens(self, text: str) -> int:
        """An estimate: Inspect exposes no tokenizer."""
        return count_tokens(text)


def to_messages(p: Prompt) -> list:
    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    msgs = [kinds[m.role](content=m.content) for m in p.messages if m.role in kinds]
    if p.prefix:
        msgs.append(ChatMessageAssistant(content=p.prefix))
    return msgs


def make_task(name: str, **args: Any) -> Task:
    """The Inspect task `name` (a key of TASKS) on a cotscope task; see the module docstring."""
    experiment, headline = TASKS[name]
    prefill = _flag(args.pop("prefill", True))
    if not prefill and EXPERIMENTS.lookup(experiment).needs_prefix:
        raise CotscopeError(f"{name} hands the model a CoT prefix in its assistant turn, which prefill=false says the provider cannot "
                            "continue; run hints on such a provider, or this task on one that continues an assistant turn")
    config = _config(experiment, **args)
    plan = check(config, backend=InspectBackend(None, prefill))
    dataset = MemoryDataset([
        InspectSample(input=format_question(s), target=str(s.answer), id=s.id, metadata={"cotscope_sample": s.model_dump(mode="json")})
        for s in plan.task.samples
    ], name=f"cotscope/{config.task}")
    data = config.model_dump(mode="json")
    return Task(dataset=dataset, solver=cotscope_solver(data, prefill), scorer=cotscope_scorer(data, list(headline)),
                metrics=[cotscope_estimates(data, list(headline))], name=name)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
        return str(value).lower() in ("true", "1", "yes")
    raise CotscopeError(f"prefill={value!r}: expected true or false")


def _config(experiment: str, task: str = "arithmetic", task_args: str = "", n_samples: int = 20, seed: int = 0, system: str = "cot",
            max_new_tokens: int = 512, continue_max_new_tokens: int = 256, temperature: float = 0.0, rewriter: str = "") -> AuditConfig:
    parsed = dict(kv.split("=", 1) for kv in task_args.split(",") if kv.strip()) if task_args else {}
    return make_config(model="inspect", task=task, task_args=parsed, n_samples=int(n_samples), seed=int(seed), system=system, baseline="",
                       max_new_tokens=int(max_new_tokens), continue_max_new_tokens=int(continue_max_new_tokens),
                       temperature=float(temperature), experiments=(experiment,), roles={"rewriter": rewriter} if rewriter else {})


@solver
def cotscope_solver(config: dict, prefill: bool = True):
    """The system writes its CoT and answer, then the experiment runs on them (cotscope's own
    code: `audit.run_batch`); the record goes to the sample's metadata. `prefill`: whether the
    provider continues a last assistant message."""
    cfg = AuditConfig.model_validate(config)
    plan = check(cfg, backend=InspectBackend(None, prefill))
    samples = {s.id: s for s in plan.task.samples}

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        model = get_model()
        backend = Model.wrap(InspectBackend(model, prefill))
        sample = samples[str(state.sample_id)]
        record = await anyio.to_thread.run_sync(_run_one, cfg, plan, backend, sample)
        trace = record.traces["subject"]
        text = "\n".join(x for x in (trace.cot_text, f"Answer: {trace.answer}" if trace.answer is not None else "") if x)
        state.messages.append(ChatMessageAssistant(content=text))
        state.output = ModelOutput.from_content(str(model), text)
        state.metadata["cotscope"] = record.model_dump(mode="json")
        return state

    return solve


def _run_one(cfg: AuditConfig, plan, backend: Backend, sample) -> SampleRecord:
    params = GenerationParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed)
    subject = get_system(cfg.system, backend, plan.task.kind, params)
    rewriter = make_rewriter(cfg.roles.get("rewriter", ""), backend, seed=cfg.seed)
    ctx = Context(config=cfg, task=plan.task, subject=subject, rewriter=rewriter)
    return run_batch(ctx, [sample], None, plan.experiments)[0]


@scorer(metrics=[])
def cotscope_scorer(config: dict, headline: list[str]):
    """Per sample: the headline metrics' values (NaN where the sample does not count: a CoT cut
    by its budget, an invalid intervention); the whole record rides in the score's metadata."""

    cfg = AuditConfig.model_validate(config)
    by = {m.name: m for m in run_metrics(get_experiments(cfg), cfg)}

    async def score(state: TaskState, target: Target) -> Score:
        raw = state.metadata.get("cotscope")
        if raw is None:
            return Score(value=float("nan"), explanation="the solver left no record")
        rec = SampleRecord.model_validate(raw)
        values = {name: by[name].per_sample(rec) if name in by else None for name in headline}
        first = values[headline[0]]
        trace = rec.traces["subject"]
        why = "the CoT was cut by its token budget: left out" if trace.cut else "; ".join(f"{k} {v:.3f}" for k, v in values.items() if v is not None)
        return Score(value=float("nan") if first is None else first, answer=trace.answer, explanation=why or "nothing measured",
                     metadata={"record": raw, "values": values})

    return score


@metric
def cotscope_estimates(config: dict, names: list[str]):
    """Each headline metric as cotscope estimates it over the records: the value, its 95% CI
    and n (samples that count)."""
    cfg = AuditConfig.model_validate(config)

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        records = [SampleRecord.model_validate(s.score.metadata["record"]) for s in scores if (s.score.metadata or {}).get("record")]
        by = {m.name: m for m in run_metrics(get_experiments(cfg), cfg)}
        out: dict[str, float] = {}
        for name in names:
            e = by[name].estimate(records)
            short = name.split("/", 1)[1].replace("/", "_")
            if e.n:
                out.update({short: e.value, f"{short}_ci_lo": e.lo, f"{short}_ci_hi": e.hi})
            out[f"{short}_n"] = float(e.n)
        return out

    return compute


def _task_function(name: str, doc: str):
    """The `@task` function of one experiment's Inspect task; its parameters are the task arguments."""

    def run(task: str = "arithmetic", task_args: str = "", n_samples: int = 20, seed: int = 0, system: str = "cot",
            max_new_tokens: int = 512, continue_max_new_tokens: int = 256, temperature: float = 0.0, rewriter: str = "",
            prefill: bool = True) -> Task:
        return make_task(name, task=task, task_args=task_args, n_samples=n_samples, seed=seed, system=system, max_new_tokens=max_new_tokens,
                         continue_max_new_tokens=continue_max_new_tokens, temperature=temperature, rewriter=rewriter, prefill=prefill)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = doc
    return task(name=name)(run)


for _name, (_experiment, _) in TASKS.items():  # early_answering, paraphrase_sensitivity, filler_substitution, adding_mistakes, hints
    globals()[_name] = _task_function(_name, EXPERIMENTS.lookup(_experiment).__doc__ or _name)
