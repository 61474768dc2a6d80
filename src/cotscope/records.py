"""The record of one sample, one JSON line of ``samples.jsonl``: its traces, its grades, and
every experiment's typed results under ``results[<experiment name>]``.

Records carry a schema version. Version 1 (one field per experiment) is read and migrated to
the current version when loaded, so a run directory written by an older cotscope still loads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from .trace import Sample, Trace

SCHEMA_VERSION = 2

# Version 1 kept each experiment's results in its own field; where each went.
_V1_FIELDS = {"substitution": "filler", "mistakes": "mistake", "hints": "hint"}
_V1_SOURCES = {"original": "truncate", "summary": "summary", "paraphrase": "paraphrase"}


class InterventionSpec(BaseModel):
    """Name and arguments of an intervention: enough to re-create the result."""

    name: str
    args: dict[str, int | float | str] = Field(default_factory=dict)


class SampleRecord(BaseModel):
    """Everything computed for one sample. One JSON line in samples.jsonl."""

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this record's schema.")
    sample: Sample
    traces: dict[str, Trace] = Field(description="Trace per role: 'subject' and 'baseline'.")
    correct: dict[str, bool] = Field(description="Correctness per role.")
    results: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Experiment name -> its results for this sample, each of the experiment's result type.",
    )
    wall_s: float = Field(0.0, description="Wall time spent on this sample (its batch's time over the batch size).")

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) == 1:
            return migrate_v1(data)
        return data


def migrate_v1(data: dict) -> dict:
    """A version-1 record as a current one: its experiment fields moved under `results`."""
    data = dict(data)
    results: dict[str, list] = {}
    for point in data.pop("truncation", None) or []:
        results.setdefault(_V1_SOURCES[point.get("source", "original")], []).append(point)
    for old, new in _V1_FIELDS.items():
        if (value := data.pop(old, None)) is not None:
            results[new] = value
    data["results"] = results
    data["schema_version"] = SCHEMA_VERSION
    return data
