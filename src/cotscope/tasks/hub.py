"""GSM8K, ARC-Challenge, AQuA-RAT and MMLU through the `datasets` library.

Each loader reads the hub data set by default, or a local file of the same format with
``path=<file.jsonl|file.json|file.parquet|dir>`` (for offline machines and tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import CotscopeError, require
from .base import LETTERS, Kind, Sample, Task, normalize_number, register_task


@dataclass(frozen=True)
class HubSource:
    hub_id: str
    config: str | None
    split: str
    kind: Kind
    convert: Callable[[dict[str, Any], int], Sample]


def _gsm8k(row: dict[str, Any], i: int) -> Sample:
    solution = str(row["answer"])
    if "####" not in solution:
        raise ValueError("answer has no '#### <number>' line")
    final = normalize_number(solution.split("####")[-1])
    if final is None:
        raise ValueError("no number after '####'")
    return Sample(id=f"gsm8k-{i}", question=row["question"], answer=final, meta={"solution": solution})


def _arc(row: dict[str, Any], i: int) -> Sample:
    labels = [str(x) for x in row["choices"]["label"]]
    texts = [str(x) for x in row["choices"]["text"]]
    key = str(row["answerKey"])
    if key not in labels:
        raise ValueError(f"answerKey {key!r} not among labels {labels}")
    return Sample(id=str(row.get("id", f"arc-{i}")), question=row["question"], answer=LETTERS[labels.index(key)], choices=texts)


def _aqua(row: dict[str, Any], i: int) -> Sample:
    # options look like "A)21"; strip the letter prefix.
    options = [re.sub(r"^\s*[A-E]\s*\)\s*", "", str(o)) for o in row["options"]]
    key = str(row["correct"]).strip().upper()
    if key not in LETTERS[: len(options)]:
        raise ValueError(f"correct {key!r} is not one of the {len(options)} options")
    return Sample(id=f"aqua-{i}", question=row["question"], answer=key, choices=options)


def _mmlu(row: dict[str, Any], i: int) -> Sample:
    choices = [str(c) for c in row["choices"]]
    idx = int(row["answer"])
    if not 0 <= idx < len(choices):
        raise ValueError(f"answer index {idx} out of range")
    return Sample(id=f"mmlu-{row.get('subject', 'x')}-{i}", question=row["question"], answer=LETTERS[idx], choices=choices, meta={"subject": str(row.get("subject", ""))})


SOURCES: dict[str, HubSource] = {
    "gsm8k": HubSource("openai/gsm8k", "main", "test", "numeric", _gsm8k),
    "arc-challenge": HubSource("allenai/ai2_arc", "ARC-Challenge", "test", "choice", _arc),
    "aqua-rat": HubSource("deepmind/aqua_rat", "raw", "test", "choice", _aqua),
    "mmlu": HubSource("cais/mmlu", "all", "test", "choice", _mmlu),
}


def load_rows(source: HubSource, path: str | None, split: str | None, config: str | None) -> Iterable[dict[str, Any]]:
    datasets = require("datasets", "datasets")
    split = split or source.split
    if path is None:
        try:
            return datasets.load_dataset(source.hub_id, config or source.config, split=split)
        except Exception as exc:  # noqa: BLE001 - network, auth and format errors all end here
            raise CotscopeError(f"could not load {source.hub_id} from the hub ({exc}); offline, pass path=<local file>") from exc
    local = Path(path)
    if not local.exists():
        raise CotscopeError(f"data file not found: {path}")
    files = sorted(str(p) for p in local.iterdir() if p.suffix in (".parquet", ".json", ".jsonl")) if local.is_dir() else [str(local)]
    if not files:
        raise CotscopeError(f"no .parquet/.json/.jsonl files in {path}")
    builder = "parquet" if files[0].endswith(".parquet") else "json"
    try:
        return datasets.load_dataset(builder, data_files=files, split="train")
    except Exception as exc:  # noqa: BLE001
        raise CotscopeError(f"could not read {path} as {builder}: {exc}") from exc


def _make(name: str, source: HubSource):
    def factory(limit: int | None = None, seed: int = 0, path: str | None = None, split: str | None = None, config: str | None = None) -> Task:
        rows = load_rows(source, path, split, config)
        samples = []
        for i, row in enumerate(rows):
            if limit is not None and len(samples) >= limit:
                break
            try:
                samples.append(source.convert(row, i))
            except (KeyError, TypeError, ValueError) as exc:
                raise CotscopeError(f"{name}: row {i} of {path or source.hub_id} is not in {name} format: {exc!r}") from exc
        args = {k: v for k, v in {"path": path, "split": split, "config": config}.items() if v}
        return Task(name, source.kind, samples, args)

    return factory


for _name, _source in SOURCES.items():
    register_task(_name)(_make(_name, _source))
