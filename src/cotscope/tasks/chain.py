"""A synthetic serial-computation task: a running value under a chain of modular operations.

A question reads ``4 a+3 b*7 c-2 d+5``: start at 4, then apply the labelled operations in
order, each result taken mod `mod` (10 by default). The answer is the final value. Every
step needs the previous one, so the answer is serial work that a small model cannot do in
one forward pass but can do one line at a time; the labels let a step point at the
operation it uses. Multipliers are coprime with `mod`, so no step loses information.

This is the task of the model organisms (`cotscope.organisms`), and a plain numeric task
for any other system.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from .._errors import CotscopeError
from .base import Sample, Task, register_task

LABELS = "abcdefghijklmnopqrstuvwxyz"
_QUESTION = re.compile(r"^(\d+)((?: [a-z][+*-]\d+)+)$")


@dataclass(frozen=True)
class Chain:
    """One problem: a start value, labelled operations, and the value after each."""

    start: int
    ops: tuple[tuple[str, int], ...]  # (operator, argument)
    mod: int = 10

    @property
    def values(self) -> list[int]:
        """Running values: the start, then the value after each operation."""
        out = [self.start]
        for op, arg in self.ops:
            out.append(apply(out[-1], op, arg, self.mod))
        return out

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def question(self) -> str:
        return f"{self.start} " + " ".join(f"{LABELS[i]}{op}{arg}" for i, (op, arg) in enumerate(self.ops))

    def label(self, i: int) -> str:
        """The label of the line that works on operation `i`."""
        return LABELS[i]


@dataclass(frozen=True)
class Cycle(Chain):
    """One operation applied over and over: ``4 +3 x200`` is 4, then +3 two hundred times, mod
    `mod`. A CoT over it is hundreds of lines; each line is labelled with how many are left
    after it (``199``, ``198``, ... ``0``), so that every line follows from the one before."""

    @property
    def question(self) -> str:
        op, arg = self.ops[0]
        return f"{self.start} {op}{arg} x{len(self.ops)}"

    def label(self, i: int) -> str:
        return str(len(self.ops) - 1 - i)


def apply(value: int, op: str, arg: int, mod: int = 10) -> int:
    """One operation, mod `mod`."""
    if op == "+":
        return (value + arg) % mod
    if op == "-":
        return (value - arg) % mod
    if op == "*":
        return (value * arg) % mod
    raise CotscopeError(f"unknown operator {op!r}")


def parse_question(text: str, mod: int = 10) -> Chain:
    """The chain a question states (the first line of `text`).

    Raises:
        CotscopeError: if the text is not a chain question.
    """
    line = text.strip().splitlines()[0] if text.strip() else ""
    m = _QUESTION.match(line)
    if not m:
        raise CotscopeError(f"not a chain question: {line[:60]!r}")
    ops = tuple((tok[1], int(tok[2:])) for tok in m.group(2).split())
    return Chain(int(m.group(1)), ops, mod)


def make_chain(rng: random.Random, n_ops: int, mod: int = 10, ops: str = "+-*") -> Chain:
    """A random chain of `n_ops` operations drawn from `ops`."""
    multipliers = [k for k in range(2, mod) if math.gcd(k, mod) == 1] or [1]
    chosen = []
    for _ in range(n_ops):
        op = rng.choice(ops)
        chosen.append((op, rng.choice(multipliers) if op == "*" else rng.randint(1, mod - 1)))
    return Chain(rng.randrange(mod), tuple(chosen), mod)


def make_cycle(rng: random.Random, n: int, mod: int = 10, ops: str = "+-") -> Cycle:
    """A random start and one operation drawn from `ops`, repeated `n` times."""
    op = rng.choice(ops)
    units = [k for k in range(1, mod) if math.gcd(k, mod) == 1]
    return Cycle(rng.randrange(mod), ((op, rng.choice(units)),) * n, mod)


@register_task("cycle")
def cycle_task(limit: int | None = None, seed: int = 0, n_ops: int = 143, mod: int = 10, ops: str = "+-", n: int = 50) -> Task:
    """One modular operation applied `n_ops` times (``4 +3 x200``): a CoT of hundreds of lines,
    the long-trace organism's task.

    Args:
        n_ops: How many times the operation is applied (the CoT's length in lines), at least 1.
        mod: Modulus of every result.
        ops: Which operators may occur: ``+`` and ``-`` (by a unit of `mod`, so the values cycle
            through every residue).
        n: Number of problems (``limit`` caps it).
    """
    n_ops, mod, count = int(n_ops), int(mod), int(n)
    if n_ops < 1 or mod < 2 or not ops or set(ops) - set("+-"):
        raise CotscopeError(f"cycle: need n_ops >= 1, mod >= 2, ops from '+-'; got {n_ops}, {mod}, {ops!r}")
    count = min(count, limit) if limit is not None else count
    rng = random.Random(f"cycle:{seed}:{n_ops}:{mod}:{ops}")
    samples = []
    for i in range(count):
        c = make_cycle(rng, n_ops, mod, ops)
        samples.append(Sample(id=f"cycle-{i}", question=c.question, answer=str(c.answer), meta={"n_ops": n_ops}))
    return Task("cycle", "numeric", samples, {"n_ops": str(n_ops), "mod": str(mod), "ops": ops})


@register_task("chain")
def chain_task(
    limit: int | None = None,
    seed: int = 0,
    n_ops: int = 6,
    mod: int = 10,
    ops: str = "+-*",
    n: int = 200,
) -> Task:
    """Running value under `n_ops` labelled modular operations.

    Args:
        n_ops: Operations per chain (difficulty: the serial depth), 1 to 26.
        mod: Modulus of every result (difficulty: the size of each step's table).
        ops: Which operators may occur: any of ``+``, ``-``, ``*``.
        n: Number of problems (``limit`` caps it).
    """
    n_ops, mod, count = int(n_ops), int(mod), int(n)
    if not 1 <= n_ops <= len(LABELS) or mod < 2 or not ops or set(ops) - set("+-*"):
        raise CotscopeError(f"chain: need 1 <= n_ops <= 26, mod >= 2, ops from '+-*'; got {n_ops}, {mod}, {ops!r}")
    if limit is not None:
        count = min(count, limit)
    rng = random.Random(f"chain:{seed}:{n_ops}:{mod}:{ops}")
    samples = []
    for i in range(count):
        c = make_chain(rng, n_ops, mod, ops)
        meta = {"n_ops": n_ops, "values": " ".join(map(str, c.values))}
        samples.append(Sample(id=f"chain-{i}", question=c.question, answer=str(c.answer), meta=meta))
    return Task("chain", "numeric", samples, {"n_ops": str(n_ops), "mod": str(mod), "ops": ops})
