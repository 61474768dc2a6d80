"""Draft tokens for greedy decoding, looked up in text the model has already read or written
(prompt lookup, as transformers' ``prompt_lookup_num_tokens``), for the decode stream to verify.

A row's last ``NGRAM`` tokens are looked up first in its own prompt and tokens (the latest
place they occurred before), then in the texts of rows that have finished (the latest such
text to hold them), then its own last two tokens in its own text; the tokens that followed
there are the draft. The model runs a row's next token and its draft in one forward and keeps
the draft up to the first token it would not have chosen itself, so the text is what greedy
decoding gives, and a step keeps one token or more. The audit's interventions go on from text
the model wrote (a cut CoT continued, a step rewritten, the CoT read again after an answer is
forced), so their drafts are often right (docs/performance.md gives the measurement).
"""

from __future__ import annotations

from collections.abc import Sequence

NGRAM = 3  # tokens looked up; a match of two is tried in a row's own text only
CORPUS_GRAMS = 1 << 16  # n-grams of finished texts kept; past that the older half goes


class RowIndex:
    """Where each n-gram of one row's text last occurred (the position after it)."""

    __slots__ = ("grams", "pairs", "seen")

    def __init__(self) -> None:
        self.grams: dict[tuple[int, ...], int] = {}
        self.pairs: dict[tuple[int, int], int] = {}
        self.seen = 0  # tokens of the row's text indexed so far

    def update(self, seq: Sequence[int]) -> None:
        """Index the n-grams that end before `seq`'s last token (the one a lookup starts from)."""
        for p in range(max(self.seen, 2), len(seq)):
            self.pairs[(seq[p - 2], seq[p - 1])] = p
            if p >= NGRAM:
                self.grams[tuple(seq[p - NGRAM : p])] = p
        self.seen = max(self.seen, len(seq))


class Drafter:
    """Drafts of at most `k` tokens for rows of a decode stream (see the module)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.corpus: dict[tuple[int, ...], tuple[Sequence[int], int]] = {}

    def learn(self, seq: Sequence[int]) -> None:
        """Keep a finished row's text (prompt and generated tokens) for later lookups."""
        seq = tuple(seq)
        for p in range(NGRAM, len(seq)):
            key = tuple(seq[p - NGRAM : p])
            self.corpus.pop(key, None)  # to the end: the latest text wins, and is dropped last
            self.corpus[key] = (seq, p)
        if len(self.corpus) > CORPUS_GRAMS:
            keys = list(self.corpus)
            for key in keys[: len(keys) // 2]:
                del self.corpus[key]

    def propose(self, seq: Sequence[int], index: RowIndex, room: int) -> list[int]:
        """Up to min(k, room) tokens that may follow `seq`, or none."""
        room = min(self.k, room)
        if room <= 0 or len(seq) < 2:
            return []
        index.update(seq)
        tail = tuple(seq[-NGRAM:])
        if len(tail) == NGRAM and (p := index.grams.get(tail)) is not None:
            return list(seq[p : p + room])
        if len(tail) == NGRAM and (hit := self.corpus.get(tail)) is not None:
            text, p = hit
            return list(text[p : p + room])
        if (p := index.pairs.get((seq[-2], seq[-1]))) is not None:
            return list(seq[p : p + room])
        return []
