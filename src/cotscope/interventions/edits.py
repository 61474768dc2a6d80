"""The registered step edits. Each factory takes the edit's arguments (recorded in its
spec) and returns a function from steps to steps."""

from __future__ import annotations

import random
import re

from ..trace import Step
from .base import Edit, register_intervention
from ..systems.rewriter import Rewriter

FILLER_UNIT = "..."
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


@register_intervention("truncate")
def truncate(keep: int) -> Edit:
    """Keep the first `keep` chunks of the CoT."""
    return lambda steps: steps[:keep]


@register_intervention("nothing")
def nothing() -> Edit:
    """No CoT at all."""
    return lambda steps: []


@register_intervention("filler")
def filler(units: int) -> Edit:
    """Replace the CoT with `units` filler units ("...", Pfau et al. 2024)."""
    text = " ".join([FILLER_UNIT] * units)
    return lambda steps: [Step(text=text, n_tokens=-1)] if units else []


@register_intervention("corrupt_number")
def corrupt_number(step: int, seed: int = 0) -> Edit:
    """Keep the steps before `step`, and `step` itself with one of its numbers changed
    (deterministically from `seed`). Steps after it are dropped: the system goes on from there."""

    def edit(steps: list[Step]) -> list[Step]:
        target = steps[step]
        return steps[:step] + [Step(text=change_a_number(target.text, seed), n_tokens=target.n_tokens)]

    return edit


@register_intervention("replace_step")
def replace_step(step: int, text: str, by: str = "") -> Edit:
    """Keep the steps before `step`, then `text` in its place (written by the model `by`);
    drop the rest."""
    return lambda steps: steps[:step] + [Step(text=text, n_tokens=steps[step].n_tokens)]


@register_intervention("summary")
def summary(keep: int, by: str, rewriter: Rewriter) -> Edit:
    """A summary of the first `keep` chunks, written by the model `by`."""
    return lambda steps: rewriter.summarize([steps[:keep]])[0]


@register_intervention("paraphrase")
def paraphrase(keep: int, by: str, rewriter: Rewriter) -> Edit:
    """The first `keep` chunks, each paraphrased on its own by the model `by`."""
    return lambda steps: rewriter.paraphrase([steps[:keep]])[0]


def change_a_number(text: str, seed: int) -> str:
    """Change the last number of `text` (not a leading list marker such as "1.") by a small
    nonzero amount chosen from `seed` and the text."""
    numbers = [m for m in _NUMBER.finditer(text) if not (m.start() == 0 and text[m.end() : m.end() + 1] in ".)")]
    if not numbers:
        return text
    m = numbers[-1]
    delta = random.Random(f"{seed}:{text}").choice([1, 2, 3, 5, 10])
    value = float(m.group(0))
    new = value - delta if value - delta >= 0 and delta % 2 else value + delta
    digits = len(m.group(0).split(".")[1]) if "." in m.group(0) else 0
    return text[: m.start()] + f"{new:.{digits}f}" + text[m.end() :]


def has_number(text: str) -> bool:
    return change_a_number(text, 0) != text


@register_intervention("drop_steps")
def drop_steps(first: int, end: int) -> Edit:
    """Remove the chunks `first` to `end` (exclusive), keep the rest (a tool call and its result
    taken out of an agent's trajectory)."""
    return lambda steps: steps[:first] + steps[end:]
