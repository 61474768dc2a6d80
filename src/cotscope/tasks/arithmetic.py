"""A seeded generator of arithmetic word problems with difficulty knobs."""

from __future__ import annotations

import random

from .._errors import CotscopeError
from .base import LETTERS, Sample, Task, register_task

_PEOPLE = ["Mia", "Tom", "Ava", "Leo", "Zoe", "Sam", "Ivy", "Max", "Lily", "Ben", "Nora", "Omar"]
_THINGS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "cookies", "stamps", "shells", "cards"]
_ADD = ["{p} finds {n} more {t}.", "{p} buys {n} more {t}.", "A friend gives {p} {n} {t}."]
_SUB = ["{p} gives away {n} {t}.", "{p} loses {n} {t}.", "{p} uses {n} {t}."]
_MUL = {2: "{p}'s number of {t} doubles.", 3: "{p}'s number of {t} triples."}


def make_problem(rng: random.Random, n_ops: int, max_value: int, ops: str) -> tuple[str, int, list[int]]:
    """One problem: its text, its answer, and the running value after each operation."""
    person, thing = rng.choice(_PEOPLE), rng.choice(_THINGS)
    value = rng.randint(2, max_value)
    parts = [f"{person} has {value} {thing}."]
    values = [value]
    for _ in range(n_ops):
        choices = [op for op in ops if not (op == "-" and value < 2) and not (op == "*" and value * 2 > max_value * 4)]
        op = rng.choice(choices or ["+"])
        if op == "+":
            n = rng.randint(1, max_value)
            value += n
            parts.append(rng.choice(_ADD).format(p=person, n=n, t=thing))
        elif op == "-":
            n = rng.randint(1, value - 1)
            value -= n
            parts.append(rng.choice(_SUB).format(p=person, n=n, t=thing))
        else:
            factor = rng.choice(sorted(_MUL))
            value *= factor
            parts.append(_MUL[factor].format(p=person, t=thing))
        values.append(value)
    parts.append(f"How many {thing} does {person} have now?")
    return " ".join(parts), value, values


@register_task("arithmetic")
def arithmetic_task(
    limit: int | None = None,
    seed: int = 0,
    n_ops: int = 1,
    max_value: int = 20,
    ops: str = "+-",
    choices: int = 0,
    n: int = 100,
) -> Task:
    """Word problems: a starting count and ``n_ops`` operations drawn from ``ops`` (``+-*``).

    Args:
        n_ops: Number of operations after the starting value (difficulty).
        max_value: Largest starting value and addend (difficulty).
        ops: Which operations may occur: any of ``+``, ``-``, ``*``.
        choices: If above 1, make it multiple choice with this many options.
        n: Number of problems (``limit`` caps it).
    """
    n_ops, max_value, n_choices, count = int(n_ops), int(max_value), int(choices), int(n)
    if n_ops < 1 or max_value < 2 or not ops or set(ops) - set("+-*"):
        raise CotscopeError(f"arithmetic: need n_ops>=1, max_value>=2, ops from '+-*'; got {n_ops}, {max_value}, {ops!r}")
    if limit is not None:
        count = min(count, limit)
    rng = random.Random(f"arithmetic:{seed}:{n_ops}:{max_value}:{ops}")
    samples = []
    for i in range(count):
        text, answer, values = make_problem(rng, n_ops, max_value, ops)
        meta = {"n_ops": n_ops, "values": " ".join(map(str, values))}
        if n_choices > 1:
            options = {answer}
            while len(options) < n_choices:
                options.add(max(0, answer + rng.choice([-1, 1]) * rng.randint(1, max(3, answer // 2 + 1))))
            opts = sorted(options)
            rng.shuffle(opts)
            samples.append(Sample(id=f"arith-{i}", question=text, answer=LETTERS[opts.index(answer)], choices=[str(o) for o in opts], meta=meta))
        else:
            samples.append(Sample(id=f"arith-{i}", question=text, answer=str(answer), meta=meta))
    args = {"n_ops": str(n_ops), "max_value": str(max_value), "ops": ops, "choices": str(n_choices)}
    return Task("arithmetic", "choice" if n_choices > 1 else "numeric", samples, args)
