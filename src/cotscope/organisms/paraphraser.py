"""A task-aware rewriter for the organisms' language (rewriter spec ``chain``).

Its paraphrase keeps each line's meaning exactly (label and content) and draws the
connective afresh from the ten synonyms, seeded by the meaning alone: the output is a
function of what the line says, never of how it said it, so whatever rode on wording is
gone and nothing else is touched. Text outside the language (filler, free text) has no
meaning to keep and no wording to vary; it is returned as it is.

The summary of a CoT prefix is its last line, paraphrased: in this language a line states
the whole state so far (value lines) or nothing about it (encoded, filler). A mistake
changes the result a value line states, or the value an encoded line's connective stands
for.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..stego.paraphrasers import Paraphraser, Rewritten, register_paraphraser
from ..systems.rewriter import Rewriter, register_rewriter
from ..trace import Step
from .language import CONNECTIVES, VALUE_CONTENT, split_line


class ChainParaphraser(Rewriter):
    """Rule-based summaries, paraphrases and mistakes for the chain CoT language."""

    def __init__(self, seed: int = 0) -> None:  # no backend: rules only
        self.seed = seed
        self._cache: dict[tuple[str, str], str] = {}
        self.n_generated_tokens = 0

    @property
    def spec(self) -> str:
        return "chain"

    def paraphrase_line(self, text: str) -> str:
        parts = split_line(text)
        if parts is None:
            return text
        label, _, content = parts
        rng = random.Random(f"paraphrase:{self.seed}:{label}:{content}")
        return f"{label}: {rng.choice(CONNECTIVES)} {content}"

    def mistake_line(self, text: str) -> str:
        parts = split_line(text)
        if parts is None:
            return text
        label, connective, content = parts
        rng = random.Random(f"mistake:{self.seed}:{text}")
        if m := VALUE_CONTENT.match(content):
            result = int(m.group(4))
            wrong = rng.choice([v for v in range(10) if v != result])
            return f"{label}: {connective} {m.group(1)}{m.group(2)}{m.group(3)}={wrong}"
        others = [c for c in CONNECTIVES if c != connective]
        return f"{label}: {rng.choice(others)} {content}"

    def _memo(self, kind: str, text: str, fn) -> str:
        if (kind, text) not in self._cache:
            self._cache[(kind, text)] = fn(text)
        return self._cache[(kind, text)]

    def paraphrase(self, cots: Sequence[Sequence[Step]]) -> list[list[Step]]:
        out = []
        for cot in cots:
            texts = [self._memo("paraphrase", s.text, self.paraphrase_line) for s in cot]
            out.append([Step(text=t, n_tokens=len(t)) for t in texts])
        return out

    def summarize(self, cots: Sequence[Sequence[Step]]) -> list[list[Step]]:
        out = []
        for cot in cots:
            if not cot:
                out.append([])
                continue
            text = self._memo("summary", "\n".join(s.text for s in cot), lambda t: self.paraphrase_line(t.splitlines()[-1]))
            out.append([Step(text=text, n_tokens=len(text))])
        return out

    def mistake(self, steps: Sequence[str]) -> list[str]:
        return [self._memo("mistake", s, self.mistake_line) for s in steps]


@register_rewriter("chain")
def _chain(seed: int = 0) -> ChainParaphraser:
    return ChainParaphraser(seed=seed)


@register_paraphraser("chain")
class ChainStegoParaphraser(Paraphraser):
    """The chain paraphrase of every line of a CoT, as a stego paraphraser: meanings kept,
    connectives redrawn from the meaning alone, any other text left as it is."""

    def __init__(self, seed: int = 0) -> None:
        self.rules = ChainParaphraser(seed=seed)

    def paraphrase(self, texts: Sequence[str], questions: Sequence[str], draw: int = 0) -> list[Rewritten | str]:
        return [Rewritten("\n".join(self.rules.paraphrase_line(line) for line in t.splitlines())) for t in texts]
