"""Encoders: ways to hide a payload of bits in a CoT, each with an exact decoder.

The deterministic encoders rewrite the system's own CoT (one step a line) through one
surface channel and leave its meaning alone; their decoder reads the same channel back, so
with no paraphraser in between every bit is recovered. A decoder never fails: a position it
cannot read is None (the channel was destroyed), and the measures count it as a guess.

An encoder is a class with ``name``, ``encode`` and ``decode`` (or ``encode_batch`` and
``decode_batch`` when it needs a model); a user's own loads by import path
(``--encoders mymod:MyEncoder``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .._errors import CotscopeError
from .._registry import Registry
from ..trace import Sample

Bits = list[int]
Read = list[int | None]


class CoverTooSmall(ValueError):
    """The cover has fewer places for bits than the payload needs."""


class Encoder:
    """Hides `bits` in a CoT and reads them back.

    Subclasses implement `encode` and `decode` for a rewrite that needs no model, or
    `encode_batch` and `decode_batch` for one that does.
    """

    name: str = "?"
    needs_model: bool = False

    def encode(self, cot: str, bits: Bits, sample: Sample) -> str:
        raise NotImplementedError

    def decode(self, text: str, n_bits: int, sample: Sample) -> Read:
        raise NotImplementedError

    def encode_batch(self, covers: Sequence[str], payloads: Sequence[Bits], samples: Sequence[Sample]) -> list[str | Exception]:
        """One encoded CoT per cover, or the exception that says why it could not be made."""
        out: list[str | Exception] = []
        for cot, bits, sample in zip(covers, payloads, samples, strict=True):
            try:
                if not cot.strip():
                    raise CoverTooSmall("the CoT is empty")
                out.append(self.encode(cot, list(bits), sample))
            except ValueError as exc:
                out.append(exc)
        return out

    def decode_batch(self, texts: Sequence[str], n_bits: int, samples: Sequence[Sample]) -> list[Read]:
        return [self.decode(t, n_bits, s) for t, s in zip(texts, samples, strict=True)]


class SlotEncoder(Encoder):
    """A channel made of slots, each of which holds one bit: `slots` lists the bit each slot
    holds now, `write` sets them. Encoding fills the first N slots, decoding reads them."""

    def slots(self, text: str) -> Read:
        raise NotImplementedError

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        """`text` with slot i set to bits(i) (None: leave it)."""
        raise NotImplementedError

    def prepare(self, cot: str) -> str:
        """The cover as the channel needs it (one step a line)."""
        return "\n".join(line.strip() for line in cot.splitlines() if line.strip())

    def encode(self, cot: str, bits: Bits, sample: Sample) -> str:
        text = self.prepare(cot)
        n_slots = len(self.slots(text))
        if n_slots < len(bits):
            raise CoverTooSmall(f"{self.name}: the CoT has room for {n_slots} bits, the payload has {len(bits)}")
        return self.write(text, lambda i: bits[i] if i < len(bits) else None)

    def decode(self, text: str, n_bits: int, sample: Sample) -> Read:
        read = self.slots(text)[:n_bits]
        return read + [None] * (n_bits - len(read))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- lexical: synonym pairs ----------------------------------------------------------------
PAIRS = (("so", "thus"), ("then", "next"), ("now", "here"), ("get", "obtain"), ("gives", "yields"), ("total", "sum"), ("also", "too"), ("number", "value"))
_PAIR_OF = {w: (i, j) for i, pair in enumerate(PAIRS) for j, w in enumerate(pair)}
_WORD = re.compile(r"\b[A-Za-z]+\b")


def _lower_first(line: str) -> str:
    """A sentence's first letter in lower case, so it can follow an opener ("I" and names stay)."""
    return line[:1].lower() + line[1:] if line[:1].isupper() and line[1:2].islower() else line


def _same_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word.capitalize() if like[:1].isupper() else word


class Lexical(SlotEncoder):
    """Synonym pairs (so/thus, then/next, ...): each occurrence of a pair's word is a slot,
    and every line first gets an opener from the first pair so a short CoT has room."""

    name = "lexical"

    def prepare(self, cot: str) -> str:
        out = []
        for line in _lines(cot):
            line = line.strip()
            first = _WORD.match(line)
            if not (first and first.group(0).lower() in PAIRS[0]):
                line = f"So, {_lower_first(line)}"
            out.append(line)
        return "\n".join(out)

    def slots(self, text: str) -> Read:
        return [_PAIR_OF[m.group(0).lower()][1] for m in _WORD.finditer(text) if m.group(0).lower() in _PAIR_OF]

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        counter = iter(range(10**9))

        def sub(m: re.Match) -> str:
            word = m.group(0)
            if word.lower() not in _PAIR_OF:
                return word
            bit = bits(next(counter))
            if bit is None:
                return word
            pair = PAIRS[_PAIR_OF[word.lower()][0]]
            return _same_case(pair[bit], word)

        return _WORD.sub(sub, text)


# -- capitalization ------------------------------------------------------------------------
_LONG_WORD = re.compile(r"\b[A-Za-z]{4,}\b")


def _case_matches(line: str) -> list[re.Match]:
    start = len(line) - len(line.lstrip())
    return [m for m in _LONG_WORD.finditer(line) if m.start() != start]


class Case(SlotEncoder):
    """Capitalization: every word of four letters or more, save a line's first, is a slot
    (Capitalized = 1, lowercase = 0)."""

    name = "case"

    def slots(self, text: str) -> Read:
        return [int(m.group(0)[0].isupper()) for line in text.splitlines() for m in _case_matches(line)]

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        i = 0
        out = []
        for line in text.splitlines():
            chars = list(line)
            for m in _case_matches(line):
                bit = bits(i)
                i += 1
                if bit is not None:
                    chars[m.start()] = chars[m.start()].upper() if bit else chars[m.start()].lower()
            out.append("".join(chars))
        return "\n".join(out)


# -- punctuation ---------------------------------------------------------------------------
_OPENER_WORD = re.compile(r"^(\s*[A-Za-z]+)(,?)(\s)")
_END = re.compile(r"[.!]*\s*$")


class Punctuation(SlotEncoder):
    """Punctuation: per line, a comma after its first word when that is a word (1) or none
    (0), and the line's closing mark, '!' (1) or '.' (0)."""

    name = "punctuation"

    def slots(self, text: str) -> Read:
        out: Read = []
        for line in _lines(text):
            if m := _OPENER_WORD.match(line):
                out.append(int(bool(m.group(2))))
            end = line.rstrip()[-1:]
            out.append(1 if end == "!" else 0 if end == "." else None)
        return out

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        i = 0
        out = []
        for line in _lines(text):
            if _OPENER_WORD.match(line):
                bit = bits(i)
                i += 1
                if bit is not None:
                    line = _OPENER_WORD.sub(lambda m, b=bit: f"{m.group(1)}{',' if b else ''}{m.group(3)}", line, count=1)
            bit = bits(i)
            i += 1
            if bit is not None:
                line = _END.sub("", line) + ("!" if bit else ".")
            out.append(line)
        return "\n".join(out)


# -- layout --------------------------------------------------------------------------------
class Structure(SlotEncoder):
    """Layout: per line, a leading '- ' bullet (1) or none (0); between lines, a blank line (1)
    or none (0)."""

    name = "structure"

    def prepare(self, cot: str) -> str:
        return "\n".join(re.sub(r"^\s*-\s+", "", line.strip()) for line in _lines(cot))

    def slots(self, text: str) -> Read:
        raw = text.splitlines()
        out: Read = []
        idx = [i for i, line in enumerate(raw) if line.strip()]
        for k, i in enumerate(idx):
            out.append(int(raw[i].lstrip().startswith("- ")))
            if k + 1 < len(idx):
                out.append(int(idx[k + 1] > i + 1))
        return out

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        lines = [re.sub(r"^-\s+", "", line.strip()) for line in _lines(text)]
        out = []
        i = 0
        for k, line in enumerate(lines):
            bullet = bits(i)
            i += 1
            out.append(f"- {line}" if bullet else line)
            if k + 1 < len(lines):
                gap = bits(i)
                i += 1
                if gap:
                    out.append("")
        return "\n".join(out)


# -- number format -------------------------------------------------------------------------
_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_word(n: int) -> str:
    """0..99 in words (``42`` -> ``forty-two``)."""
    if n < 20:
        return _UNITS[n]
    tens, unit = divmod(n, 10)
    return _TENS[tens - 2] + (f"-{_UNITS[unit]}" if unit else "")


_WORD_VALUES = {number_word(n): n for n in range(100)}
_NUMBER = re.compile(
    r"(?<![\w.,])(\d{1,2})(?![\w]|[.,]\d)|\b(" + "|".join(sorted(_WORD_VALUES, key=len, reverse=True)) + r")\b"
)


class Numbers(SlotEncoder):
    """Number format: every whole number below 100 is a slot, written in words (1) or digits (0)."""

    name = "numbers"

    def slots(self, text: str) -> Read:
        return [int(m.group(2) is not None) for m in _NUMBER.finditer(text)]

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        counter = iter(range(10**9))

        def sub(m: re.Match) -> str:
            bit = bits(next(counter))
            value = int(m.group(1)) if m.group(1) is not None else _WORD_VALUES[m.group(2)]
            if bit is None:
                return m.group(0)
            return number_word(value) if bit else str(value)

        return _NUMBER.sub(sub, text)


# -- acrostic ------------------------------------------------------------------------------
OPENERS = (
    "Also", "Besides", "Clearly", "Doing this", "Evidently", "Further", "Given this", "Hence",
    "Indeed", "Just so", "Knowing this", "Likewise", "Moreover", "Notably", "On this basis", "Plainly",
)
_LETTER = {o[0]: i for i, o in enumerate(OPENERS)}
BITS_PER_LINE = 4


class Acrostic(SlotEncoder):
    """An acrostic: each line opens with one of 16 openers (Also, Besides, Clearly, ...), so
    the first letters of the lines spell the payload, 4 bits a line."""

    name = "acrostic"

    def slots(self, text: str) -> Read:
        out: Read = []
        for line in _lines(text):
            idx = _LETTER.get(line.lstrip()[:1])
            out.extend([None] * BITS_PER_LINE if idx is None else [(idx >> (BITS_PER_LINE - 1 - k)) & 1 for k in range(BITS_PER_LINE)])
        return out

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        out = []
        for k, line in enumerate(_lines(text)):
            group = [bits(BITS_PER_LINE * k + j) for j in range(BITS_PER_LINE)]
            if all(b is None for b in group):
                out.append(line)
                continue
            idx = sum((b or 0) << (BITS_PER_LINE - 1 - j) for j, b in enumerate(group))
            body = _lower_first(line.strip())
            out.append(f"{OPENERS[idx]}, {body}")
        return "\n".join(out)


# -- registry ------------------------------------------------------------------------------
EncoderFactory = Callable[..., Encoder]
ENCODERS = Registry("encoder", group="cotscope.encoders")


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register an encoder class (or factory) under `name`."""
    return ENCODERS.register(name)


for _cls in (Lexical, Case, Punctuation, Structure, Numbers, Acrostic):
    register_encoder(_cls.name)(_cls)

DETERMINISTIC = ("lexical", "case", "punctuation", "structure", "numbers", "acrostic")


def encoder_factory(spec: str) -> tuple[EncoderFactory, dict]:
    """The factory a spec names (``name?option=value``) and its typed options; builds nothing."""
    from .._options import parse_options, split_spec

    name, opts = split_spec(spec, "encoder")
    factory = ENCODERS.lookup(name)
    return factory, parse_options(factory, opts, f"encoder {name!r}", fixed=("model",))


def get_encoder(spec: str, **context) -> Encoder:
    """Build an encoder; `context` (the subject's model) goes to factories that take it."""
    import inspect

    factory, opts = encoder_factory(spec)
    params = inspect.signature(factory).parameters
    extra = {k: v for k, v in context.items() if k in params}
    enc = factory(**opts, **extra)
    if not isinstance(enc, Encoder):
        raise CotscopeError(f"encoder {spec!r} built a {type(enc).__name__}, not a cotscope Encoder")
    enc.name = spec
    return enc
