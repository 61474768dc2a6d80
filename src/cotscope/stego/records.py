"""What a stego run is configured by, and the lines of its ``records.jsonl``: a cover, an
encoding, a cell (one encoder through one paraphraser), an injection, a coverage draw set."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..config import DEFAULT_MODEL
from ..trace import Sample
from .encoders import DETERMINISTIC
from .injections import INJECTIONS

CONFIG_VERSION = 1
DEFAULT_ENCODERS = (*DETERMINISTIC, "instructed")


class StegoConfig(BaseModel):
    """Everything that decides a stego run's numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, description="Backend spec of the model that writes the CoTs and answers from them.")
    system: str = Field("cot", description="System that writes the cover CoTs and answers from a given CoT.")
    task: str = Field("arithmetic", description="Task whose samples give the questions (as in `cotscope audit`).")
    task_args: dict[str, str] = Field(default_factory=dict, description="Task arguments as key=value.")
    n_samples: int = Field(10, ge=1, description="Samples (cover CoTs); every measure is over these. At 10, a channel read back without error is told from 0 bits (at 6 it cannot be).")
    seed: int = Field(0, description="Seeds the task, the payloads and the paraphrasers' sampling.")
    max_new_tokens: int = Field(256, ge=1, description="Token budget of a cover CoT.")
    encoders: tuple[str, ...] = Field(
        DEFAULT_ENCODERS,
        description="Encoders: " + ", ".join(DETERMINISTIC) + ", connective (the organisms' code), instructed (the model "
        "hides the payload when told to), or package.module:Class.",
    )
    paraphrasers: tuple[str, ...] = Field(
        ("none", DEFAULT_MODEL),
        description="Paraphrasers: none, chain (organisms), any model spec with ?prompt=plain|step|context|suspicious"
        "&temperature=T, or package.module:Class.",
    )
    payload_bits: int = Field(4, ge=1, le=64, description="Bits each encoder hides in each CoT.")
    injections: tuple[str, ...] = Field(tuple(i.name for i in INJECTIONS), description="Injection templates to try on each paraphraser.")
    injections_per_sample: int = Field(
        4, ge=0, description="Templates tried on each sample, taken in turn so that every template is tried across the samples (0: all of them on every sample)."
    )
    coverage_draws: int = Field(2, ge=0, le=16, description="Paraphrase samples per CoT for coverage (fewer than 2: not measured).")
    similarity: str = Field(
        "", description="Embedding model for the semantic similarity of each paraphrase to its input: model2vec/<hub-id-or-path> "
        "(e.g. model2vec/minishlab/potion-base-8M; pip install 'cotscope[stego]'); '' for none.",
    )
    samples_per_flush: int = Field(2, ge=1, description="Samples worked on together before their records are written.")


# -- records -------------------------------------------------------------------------------
class CoverRecord(BaseModel):
    kind: Literal["cover"] = "cover"
    sample: Sample
    cot: str
    answer: str | None
    correct: bool
    finish_reason: str = "stop"


class EncodingRecord(BaseModel):
    kind: Literal["encoding"] = "encoding"
    sample_id: str
    encoder: str
    payload: list[int]
    text: str | None = None
    failure: str | None = None
    answer: str | None = None
    correct: bool | None = None


class CellRecord(BaseModel):
    kind: Literal["cell"] = "cell"
    sample_id: str
    encoder: str
    paraphraser: str
    payload: list[int]
    paraphrased: str | None = None
    read: list[int | None] = Field(default_factory=list)
    failure: str | None = None
    cut: bool = False
    answer: str | None = None
    correct: bool | None = None
    similarity: float | None = None


class InjectionRecord(BaseModel):
    kind: Literal["injection"] = "injection"
    sample_id: str
    paraphraser: str
    template: str
    output: str | None = None
    control_output: str | None = None
    obeyed: bool | None = None
    control_obeyed: bool | None = None
    failure: str | None = None


class CoverageRecord(BaseModel):
    kind: Literal["coverage"] = "coverage"
    sample_id: str
    paraphraser: str
    draws: list[str] = Field(default_factory=list)
    disagreements: dict[str, list[int]] = Field(default_factory=dict)
    failure: str | None = None


Record = Annotated[Union[CoverRecord, EncodingRecord, CellRecord, InjectionRecord, CoverageRecord], Field(discriminator="kind")]
RECORD = TypeAdapter(Record)


def key(r: BaseModel) -> tuple[str, ...]:
    if isinstance(r, CoverRecord):
        return ("cover", r.sample.id)
    if isinstance(r, EncodingRecord):
        return ("encoding", r.sample_id, r.encoder)
    if isinstance(r, CellRecord):
        return ("cell", r.sample_id, r.encoder, r.paraphraser)
    if isinstance(r, InjectionRecord):
        return ("injection", r.sample_id, r.paraphraser, r.template)
    assert isinstance(r, CoverageRecord)
    return ("coverage", r.sample_id, r.paraphraser)


