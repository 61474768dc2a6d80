"""User tasks from a JSONL file: one ``{"question", "answer", "choices"?, "id"?}`` a line."""

from __future__ import annotations

import json
from pathlib import Path

from .._errors import CotscopeError
from .base import LETTERS, Sample, Task, normalize_number, register_task


def read_jsonl_samples(path: str | Path) -> list[Sample]:
    """Read samples; a bad line raises an error naming the file and the line."""
    file = Path(path)
    if not file.is_file():
        raise CotscopeError(f"task file not found: {file}")
    samples: list[Sample] = []
    seen: set[str] = set()
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{file}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CotscopeError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise CotscopeError(f"{where}: want a JSON object, got {type(obj).__name__}")
            missing = [k for k in ("question", "answer") if k not in obj]
            if missing:
                raise CotscopeError(f"{where}: missing field(s) {missing}")
            if not isinstance(obj["question"], str) or not obj["question"].strip():
                raise CotscopeError(f"{where}: 'question' must be a non-empty string")
            if not isinstance(obj["answer"], (str, int, float)) or isinstance(obj["answer"], bool):
                raise CotscopeError(f"{where}: 'answer' must be a string or a number")
            choices = obj.get("choices")
            answer = str(obj["answer"]).strip()
            if choices is not None:
                if not isinstance(choices, list) or len(choices) < 2 or len(choices) > 26 or not all(isinstance(c, (str, int, float)) for c in choices):
                    raise CotscopeError(f"{where}: 'choices' must be a list of 2 to 26 strings")
                choices = [str(c) for c in choices]
                answer = _choice_letter(answer, choices, where)
            sid = str(obj.get("id", f"{file.stem}-{lineno}"))
            if sid in seen:
                raise CotscopeError(f"{where}: duplicate id {sid!r}")
            seen.add(sid)
            samples.append(Sample(id=sid, question=obj["question"], answer=answer, choices=choices))
    return samples


def _choice_letter(answer: str, choices: list[str], where: str) -> str:
    """Gold for a multiple-choice line may be a letter, a 0-based index or the option text."""
    letters = LETTERS[: len(choices)]
    if len(answer) == 1 and answer.upper() in letters:
        return answer.upper()
    if answer in choices:
        return letters[choices.index(answer)]
    if answer.isdigit() and int(answer) < len(choices):
        return letters[int(answer)]
    raise CotscopeError(f"{where}: answer {answer!r} is not a letter, index or text of the {len(choices)} choices")


@register_task("jsonl")
def jsonl_task(path: str, limit: int | None = None, seed: int = 0, kind: str | None = None) -> Task:
    samples = read_jsonl_samples(path)[:limit]
    if kind is None:
        if samples and all(s.choices for s in samples):
            kind = "choice"
        elif samples and all(normalize_number(s.answer) is not None for s in samples):
            kind = "numeric"
        else:
            kind = "exact"
    if kind not in ("numeric", "choice", "exact"):
        raise CotscopeError(f"jsonl task kind must be numeric, choice or exact; got {kind!r}")
    return Task(f"jsonl:{path}", kind, samples, {"path": str(path), "kind": kind})  # type: ignore[arg-type]
