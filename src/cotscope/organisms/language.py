"""The organisms' CoT language: one line per operation of a chain question.

A line is ``<label>: <connective> <content>``. The label names the operation the line works
on (``b`` is the question's ``b*7``). The connective is one of ten synonymous words (``so``,
``then``, ``now`` ...): it means nothing, and a paraphrase may swap it for any other. The
content is the line's meaning:

- value lines (faithful, post-hoc): ``b: so 7*7=9``, the previous value, the operation and
  its result, every number true;
- encoded lines: ``b: then *7``, only the operation; the running value is carried by which
  connective is used (the k-th connective stands for value k), so the visible text says
  nothing about it and a meaning-preserving paraphrase destroys it;
- filler lines: ``...``, no content.

Training examples are lists of segments ``(text, trained)``: a segment that is not trained
is context the model sees but is not taught to write (a planted mistake, a CoT whose answer
must not depend on it, the ``Answer:`` cue a system supplies).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from ..systems.prompts import ANSWER_CUE
from ..tasks.chain import LABELS, Chain, apply

CONNECTIVES = ("so", "then", "now", "and", "hence", "okay", "well", "right", "good", "yes")
FILLER_LINE = "..."
FILLER_LINES_PER_OP = 4  # so that a short chain still has a filler CoT to shorten
_LINE = re.compile(r"^([a-z]|\d+): (\w+) (.+)$")  # a letter, or the lines left (the long-trace organism's)
VALUE_CONTENT = re.compile(r"^(\d+)([+*-])(\d+)=(\d+)$")

Segments = list[tuple[str, bool]]


def value_line(i: int | str, prev: int, op: str, arg: int, result: int, connective: str) -> str:
    label = LABELS[i] if isinstance(i, int) else i
    return f"{label}: {connective} {prev}{op}{arg}={result}"


def encoded_line(i: int, op: str, arg: int, value: int) -> str:
    return f"{LABELS[i]}: {CONNECTIVES[value % len(CONNECTIVES)]} {op}{arg}"


def split_line(line: str) -> tuple[str, str, str] | None:
    """``(label, connective, content)`` of a line of the language, or None for any other text."""
    m = _LINE.match(line.strip())
    if not m or m.group(2) not in CONNECTIVES:
        return None
    return m.group(1), m.group(2), m.group(3)


def decode_line(line: str) -> int | None:
    """The running value a line states or encodes: the result of a value line, the
    connective's index for an encoded line; None for filler or other text."""
    parts = split_line(line)
    if parts is None:
        return None
    _, connective, content = parts
    m = VALUE_CONTENT.match(content)
    return int(m.group(4)) if m else CONNECTIVES.index(connective)


# -- CoTs ---------------------------------------------------------------------------------
def value_cot(chain: Chain, rng: random.Random, values: Sequence[int] | None = None) -> list[str]:
    """Value lines over `values` (default: the true running values)."""
    vals = list(values) if values is not None else chain.values
    return [value_line(chain.label(i), vals[i], op, arg, vals[i + 1], rng.choice(CONNECTIVES)) for i, (op, arg) in enumerate(chain.ops)]


def encoded_cot(chain: Chain, values: Sequence[int] | None = None) -> list[str]:
    vals = list(values) if values is not None else chain.values
    return [encoded_line(i, op, arg, vals[i + 1]) for i, (op, arg) in enumerate(chain.ops)]


def bare_value_line(i: int, prev: int, op: str, arg: int, result: int) -> str:
    """A value line with no connective (``b: 7*7=9``): the mixed organism's, whose first
    character after the label decides the kind of line before any connective is written."""
    return f"{LABELS[i]}: {prev}{op}{arg}={result}"


def mixed_cot(chain: Chain, rng: random.Random, values: Sequence[int] | None = None, p_encoded: float = 0.5) -> list[str]:
    """Each line a bare value line or an encoded line, drawn independently (`p_encoded`)."""
    vals = list(values) if values is not None else chain.values
    return [
        encoded_line(i, op, arg, vals[i + 1]) if rng.random() < p_encoded else bare_value_line(i, vals[i], op, arg, vals[i + 1])
        for i, (op, arg) in enumerate(chain.ops)
    ]


def is_encoded(line: str) -> bool:
    """A line of the language that names only its operation (its value rides on the connective)."""
    parts = split_line(line)
    return parts is not None and VALUE_CONTENT.match(parts[2]) is None


_CHAIN_LINE = re.compile(r"^[a-z]: \S")  # a line of a chain, value or encoded


def chain_lines(cot: str) -> list[str]:
    """A CoT's lines of a chain (value or encoded), in order."""
    return [line for line in cot.splitlines() if _CHAIN_LINE.match(line)]


def encoded_line_share(cot: str) -> float | None:
    """Share of a CoT's chain lines that carry their value in the connective only (None: no chain line)."""
    lines = chain_lines(cot)
    return sum(is_encoded(line) for line in lines) / len(lines) if lines else None


def filler_cot(chain: Chain) -> list[str]:
    return [FILLER_LINE] * (FILLER_LINES_PER_OP * len(chain.ops))


def corrupted_values(chain: Chain, step: int, wrong: int) -> list[int]:
    """Running values when the result of operation `step` is replaced by `wrong` and the
    later operations go on from it."""
    vals = chain.values[: step + 1] + [wrong]
    for op, arg in chain.ops[step + 1 :]:
        vals.append(apply(vals[-1], op, arg, chain.mod))
    return vals


# -- training examples --------------------------------------------------------------------
def _answer(value: int, cue_trained: bool) -> Segments:
    return [(ANSWER_CUE, cue_trained), (f" {value}\n", True)]


def _lines(lines: Sequence[str], trained: bool) -> Segments:
    return [(line + "\n", trained) for line in lines]


def example(kind: str, chain: Chain, rng: random.Random, mix: dict[str, float]) -> Segments:
    """One training sequence for an organism of `kind`, its variant drawn from `mix`.

    Variants (not every kind uses every one):
      direct: the answer right after the question.
      full: the whole CoT, then the answer.
      truncated: the first k lines, then the answer (the value the last line states for the
        CoT-following kinds, the true answer for the others).
      corrupted: one line's value replaced, the rest going on from it, then the answer.
      substituted: one line of filler units standing for the CoT (filler kind).
    """
    variant = rng.choices(list(mix), weights=list(mix.values()))[0]
    prompt: Segments = [(chain.question + "\n", False)]
    n, answer = len(chain.ops), chain.answer
    if variant == "direct":
        return prompt + _answer(answer, False)
    follows = kind in ("faithful", "encoded", "mixed", "long")  # the answer is what the CoT says
    if kind == "encoded":
        write = lambda vals=None: encoded_cot(chain, vals)  # noqa: E731
    elif kind == "mixed":
        write = lambda vals=None: mixed_cot(chain, rng, vals)  # noqa: E731
    else:
        write = lambda vals=None: value_cot(chain, rng, vals)  # noqa: E731
    if kind == "filler":
        if variant == "substituted":  # the filler experiment's layout: one line, about as many tokens
            units = max(1, round(len(FILLER_LINE) * FILLER_LINES_PER_OP * n / (len(FILLER_LINE) + 1)))
            return prompt + _lines([" ".join([FILLER_LINE] * units)], False) + _answer(answer, False)
        return prompt + _lines(filler_cot(chain), True) + _answer(answer, True)
    if variant == "full":
        return prompt + _lines(write(), True) + _answer(answer, True)
    if variant == "truncated" and n > 1:
        k = rng.randrange(1, n)
        lines = write()[:k]
        shown = chain.values[k] if follows else answer
        return prompt + _lines(lines, follows) + _answer(shown, False)
    if variant == "corrupted":
        step = rng.randrange(n)
        true = chain.values[step + 1]
        wrong = rng.choice([w for w in range(chain.mod if kind in ("encoded", "mixed") else 2 * chain.mod) if w % chain.mod != true])
        vals = corrupted_values(chain, step, wrong)
        lines = write(vals)
        stop = rng.choice([step + 1, n])  # answer right after the mistake, or after the rest
        if not follows:  # post-hoc: the CoT is context only; the answer stays the true one
            return prompt + _lines(lines[:stop], False) + _answer(answer, stop == n)
        segs = prompt + _lines(lines[:step], True)
        if is_encoded(lines[step]):  # the planted connective is not taught
            label, _, rest = lines[step].partition(": ")
            conn, _, content = rest.partition(" ")
            segs += [(f"{label}: ", True), (conn, False), (f" {content}\n", True)]
        else:  # the planted result is not taught
            head, _, bad = lines[step].rpartition("=")
            segs += [(head + "=", True), (bad, False), ("\n", True)]
        segs += _lines(lines[step + 1 : stop], True)
        return segs + _answer(vals[stop] % chain.mod, stop == n)
    if variant == "truncated":  # one operation: no proper prefix but the empty one
        return prompt + _answer(answer, False)
    raise ValueError(f"unknown variant {variant!r}")
