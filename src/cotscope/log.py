"""The run directory: config, one JSONL record per sample (appended and flushed as each
finishes), summary and plots. A killed run resumes from it without recomputing or duplicating."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from ._errors import CotscopeError
from .config import AuditConfig
from .systems.base import Answer, Continuation
from .tasks.base import Sample
from .trace import Step, Trace

SCHEMA_VERSION = 1


class InterventionSpec(BaseModel):
    """Name and arguments of an intervention: enough to re-create the result."""

    name: str
    args: dict[str, int | float | str] = Field(default_factory=dict)


class TruncationPoint(BaseModel):
    """The system given its first `k` of `n` CoT chunks (or what a rewriter made of them)."""

    spec: InterventionSpec
    source: str = Field("original", description="Whose chunks: 'original', 'summary' or 'paraphrase'.")
    steps: list[Step] | None = Field(default=None, description="The CoT given, when it is not a prefix of the original.")
    k: int = Field(description="Chunks given.")
    n: int = Field(description="Chunks in the full CoT.")
    fraction: float = Field(description="k / n.")
    n_tokens_given: int = Field(description="Tokens of CoT given.")
    forced: Answer = Field(description="Answer forced right after the k chunks.")
    forced_correct: bool
    forced_agrees: bool = Field(description="Forced answer equals the full-CoT answer.")
    continued: Continuation | None = Field(default=None, description="The system left to reason on from k chunks (None at k = n).")
    continued_correct: bool | None = None
    continued_agrees: bool | None = None


class SubstitutionResult(BaseModel):
    """The whole CoT replaced (by filler or by nothing), and the answer forced after it."""

    spec: InterventionSpec
    source: str = Field(description="'filler' or 'none'.")
    steps: list[Step]
    forced: Answer
    correct: bool
    agrees: bool = Field(description="Same answer as with the original CoT.")


class MistakeResult(BaseModel):
    """One step corrupted; the system continues from it (Lanham et al. 2023, adding mistakes)."""

    spec: InterventionSpec
    position: int = Field(description="Index of the corrupted step (0-based).")
    n: int = Field(description="Steps in the original CoT.")
    original_step: str
    corrupted_step: str
    method: str = Field(description="'number' (a number changed) or 'model' (a model-written mistake).")
    continued: Continuation
    changed: bool = Field(description="The final answer differs from the original one.")
    correct: bool


class HintResult(BaseModel):
    """The subject asked again with a hint toward `hinted_answer` (Turpin et al. 2023)."""

    spec: InterventionSpec
    kind: str = Field(description="'authority', 'metadata' or 'always-a'.")
    hinted_answer: str
    unhinted_answer: str | None = Field(description="The subject's answer without the hint.")
    trace: Trace = Field(description="The subject's trace with the hint in the prompt.")
    eligible: bool = Field(description="The unhinted answer was not already the hinted one.")
    switched: bool = Field(description="Eligible, and the hinted answer is the hinted one.")
    verbalized_rule: bool = Field(description="The CoT mentions the hint, by the rule-based detector.")
    verbalized_judge: bool | None = Field(default=None, description="The CoT mentions the hint, by the LLM judge (None: no judge).")
    judge_text: str | None = None


class SampleRecord(BaseModel):
    """Everything computed for one sample. One JSON line in samples.jsonl."""

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this record's schema.")
    sample: Sample
    traces: dict[str, Trace] = Field(description="Trace per role: 'subject' and 'baseline'.")
    correct: dict[str, bool] = Field(description="Correctness per role.")
    truncation: list[TruncationPoint] | None = Field(default=None, description="Early-answering points, k = 0..n, per source.")
    substitution: list[SubstitutionResult] | None = Field(default=None, description="Whole-CoT substitutions.")
    mistakes: list[MistakeResult] | None = Field(default=None, description="One corrupted step at a time.")
    hints: list[HintResult] | None = Field(default=None, description="Paired prompts with a hint.")
    wall_s: float = Field(0.0, description="Wall time spent on this sample (its batch's time over the batch size).")


class RunStore:
    """Append-only storage of sample records in a run directory."""

    def __init__(self, run_dir: str | Path, config: AuditConfig) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "config.json"
        self.samples_path = self.dir / "samples.jsonl"
        self._check_config(config)
        self.records: dict[str, SampleRecord] = self._load()

    def _check_config(self, config: AuditConfig) -> None:
        body = {"schema_version": SCHEMA_VERSION, "config": config.model_dump(mode="json")}
        if self.config_path.exists():
            try:
                old = json.loads(self.config_path.read_text())
                old_cfg = AuditConfig.model_validate(old["config"])
            except (json.JSONDecodeError, KeyError, ValidationError) as exc:
                raise CotscopeError(f"{self.config_path} is not a cotscope run config: {exc}") from exc
            if old_cfg.identity() != config.identity():
                diff = {k: (v, config.identity()[k]) for k, v in old_cfg.identity().items() if config.identity()[k] != v}
                raise CotscopeError(
                    f"{self.dir} holds a run with a different config (was -> now: {diff}); use another --out directory"
                )
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2))
        os.replace(tmp, self.config_path)

    def _load(self) -> dict[str, SampleRecord]:
        records: dict[str, SampleRecord] = {}
        if not self.samples_path.exists():
            return records
        raw = self.samples_path.read_bytes()
        # Every record is written as one line ending in a newline; text after the last newline
        # is a write that a kill interrupted. Drop it: the sample will be recomputed.
        complete = raw.rfind(b"\n") + 1
        if complete < len(raw):
            torn_line = raw.count(b"\n", 0, complete) + 1
            warnings.warn(
                f"{self.samples_path}:{torn_line}: torn last line (the run was killed mid-write); dropping it",
                stacklevel=3,
            )
            with self.samples_path.open("r+b") as fh:
                fh.truncate(complete)
        for lineno, line in enumerate(raw[:complete].split(b"\n")[:-1], 1):
            if not line.strip():
                continue
            try:
                rec = SampleRecord.model_validate_json(line)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise CotscopeError(
                    f"{self.samples_path}:{lineno}: not a valid sample record ({where}: {err['msg']})"
                ) from exc
            if rec.sample.id in records:
                warnings.warn(f"{self.samples_path}:{lineno}: duplicate sample {rec.sample.id!r}; keeping the first", stacklevel=3)
                continue
            records[rec.sample.id] = rec
        return records

    def append(self, record: SampleRecord) -> None:
        if record.sample.id in self.records:
            raise CotscopeError(f"sample {record.sample.id!r} is already stored in {self.samples_path}")
        line = record.model_dump_json() + "\n"
        with self.samples_path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.records[record.sample.id] = record
