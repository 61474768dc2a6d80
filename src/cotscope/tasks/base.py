"""Questions with gold answers, and how to grade them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import CotscopeError
from .._options import parse_options
from .._registry import Registry
from ..trace import Sample

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Where a final answer is written: "Answer: 7", "answer is 7", "the answer is 7".
ANSWER = re.compile(r"answer\s*(?:is)?\s*[:=]\s*(.*)|the answer is\s*(.*)", re.I)
Kind = Literal["numeric", "choice", "exact"]


@dataclass
class Task:
    """A named list of samples and the kind of grading that fits them."""

    name: str
    kind: Kind
    samples: list[Sample]
    args: dict[str, str] = field(default_factory=dict)

    def grade(self, predicted: str | None, sample: Sample) -> bool:
        return grade(predicted, sample.answer, self.kind)


_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
_ANSWER_LINE = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*(.*)", re.I)


def normalize_number(text: str) -> str | None:
    m = re.search(_NUM, text)
    if not m:
        return None
    raw = m.group(0).replace(",", "").replace("$", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def extract_answer(text: str, kind: Kind, n_choices: int | None = None) -> tuple[str | None, str | None]:
    """Parse a final answer from generated text.

    Looks for the last ``Answer: ...`` line first; for numeric tasks falls back to the last
    number in the text. Never raises.

    Returns:
        ``(answer, None)`` on success, ``(None, reason)`` on failure.
    """
    matches = list(ANSWER.finditer(text))
    tail = next((m.group(1) or m.group(2) for m in reversed(matches) if (m.group(1) or m.group(2) or "").strip()), None)
    if kind == "choice":
        letters = LETTERS[: n_choices or 26]
        for source in (tail, text if tail is None else None):
            if source is None:
                continue
            m = re.search(rf"\(([{letters}])\)|\b([{letters}])\b", source)
            if m:
                return (m.group(1) or m.group(2)), None
        return None, "no choice letter found"
    if kind == "numeric":
        if tail is not None and (num := normalize_number(tail)) is not None:
            return num, None
        numbers = re.findall(_NUM, text)
        if numbers:
            return normalize_number(numbers[-1]), None
        return None, "no number found"
    if tail is not None:
        return tail.strip().splitlines()[0].strip(), None
    return None, "no 'Answer:' line found"


def grade(predicted: str | None, gold: str, kind: Kind) -> bool:
    if predicted is None:
        return False
    if kind == "numeric":
        p, g = normalize_number(predicted), normalize_number(gold)
        return p is not None and g is not None and abs(float(p) - float(g)) < 1e-6
    return predicted.strip().lower() == gold.strip().lower()


TaskFactory = Callable[..., Task]
_TASKS = Registry("task", group="cotscope.tasks")


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    return _TASKS.register(name)


def task_factory(name: str, args: dict[str, str] | None = None) -> tuple[Callable[..., Task], dict[str, Any]]:
    """The factory a task name names and its arguments, typed; loads nothing.

    ``jsonl:<path>`` passes the path; ``package.module:function`` loads a user's task.

    Raises:
        CotscopeError: for an unknown task, an unknown argument or a value of the wrong type.
    """
    base, sep, rest = name.partition(":")
    kwargs = dict(args or {})
    if base in _TASKS.names():
        factory = _TASKS.lookup(base)
        if rest:
            kwargs["path"] = rest
    elif sep:
        factory = _TASKS.lookup(name)
    else:
        factory = _TASKS.lookup(base)
    return factory, parse_options(factory, kwargs, f"task {base!r}", fixed=("limit", "seed"))


def get_task(name: str, args: dict[str, str] | None = None, *, limit: int | None = None, seed: int = 0) -> Task:
    """Build a task from its name (``arithmetic``, ``jsonl:<path>``, ``gsm8k``, ``pkg.mod:fn``) and arguments.

    Raises:
        CotscopeError: for an unknown task name or bad arguments.
    """
    factory, kwargs = task_factory(name, args)
    try:
        task = factory(limit=limit, seed=seed, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CotscopeError(f"bad arguments for task {name!r}: {exc}") from exc
    if not isinstance(task, Task):
        raise CotscopeError(f"task {name!r} did not return a cotscope Task")
    if not task.samples:
        raise CotscopeError(f"task {name!r} has no samples")
    return task


def list_tasks() -> list[str]:
    return _TASKS.names()
