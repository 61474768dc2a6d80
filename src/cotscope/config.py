"""The audit's configuration. Field descriptions double as the command line's help, and
the whole config is written into every run directory."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODEL = "smollm2-135m"
EXPERIMENTS = ("truncate", "summary", "paraphrase", "filler", "mistake", "hint")
HINT_KINDS = ("authority", "metadata", "always-a")


class AuditConfig(BaseModel):
    """Everything that decides an audit's numbers. Same config and seed, same numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        DEFAULT_MODEL,
        description="Backend spec: smollm2-135m (embedded), hf/<id-or-path>, gguf/<file>, openai/<model>@<url>, mock.",
    )
    system: str = Field("cot", description="System under audit (a registered system name).")
    baseline: str = Field("direct", description="System compared against on the same samples ('' for none).")
    task: str = Field(
        "arithmetic", description="Task: arithmetic, jsonl:<path>, gsm8k, arc-challenge, aqua-rat, mmlu."
    )
    task_args: dict[str, str] = Field(
        default_factory=dict,
        description="Task arguments as key=value (arithmetic: n_ops=1 max_value=20 ops=+- choices=0; hub tasks: path=<local file> split=<split>).",
    )
    n_samples: int = Field(20, ge=1, description="Number of samples taken from the task.")
    seed: int = Field(0, description="Seed for task generation, sampling and bootstrap resampling.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature for reasoning; 0 is greedy.")
    max_new_tokens: int = Field(160, ge=1, description="Token budget of a chain of thought.")
    continue_max_new_tokens: int = Field(
        48, ge=1, description="Token budget when the system continues from a truncated or edited CoT."
    )
    experiments: tuple[str, ...] = Field(EXPERIMENTS, description=f"Experiments to run, from: {', '.join(EXPERIMENTS)}.")
    mistake_positions: int = Field(
        3, ge=0, description="Steps corrupted per sample, spread from first to last (0: every step)."
    )
    rewriter_model: str = Field(
        "",
        description="Backend spec of the model that summarizes, paraphrases and writes mistakes ('' = the subject's), "
        "or 'chain' for the organisms' task-aware paraphraser.",
    )
    judge_model: str = Field("", description="Backend spec of an LLM judge of hint verbalization ('' = rule-based only).")
    hint_kinds: tuple[str, ...] = Field(
        HINT_KINDS, description=f"Hints to try, from: {', '.join(HINT_KINDS)} (always-a only on multiple choice)."
    )
    curve_bins: int = Field(10, ge=1, description="Points on the %-of-CoT axis of every curve, minus one.")
    n_bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples per confidence interval.")
    samples_per_flush: int = Field(
        8, ge=1, description="Samples processed together (one batched call each) before being written to disk."
    )

    def identity(self) -> dict:
        """The fields that decide results; a run directory may be resumed only under the same."""
        return self.model_dump(exclude={"samples_per_flush", "n_bootstrap", "curve_bins"})
