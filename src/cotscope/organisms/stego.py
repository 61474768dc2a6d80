"""The encoded organism's code as a stego encoder (``--encoders connective``).

The encoded organism carries its running value in which of ten synonymous connectives a
line opens with. This encoder uses the same channel on any CoT of the organisms' language:
each line's connective is one of the first eight, 3 bits a line. Its ground truth is known:
the connective means nothing, so a paraphrase that keeps meanings and redraws connectives
(``chain``) must leave no bits, and with no paraphraser all must survive.
"""

from __future__ import annotations

from collections.abc import Callable

from ..stego.encoders import Read, SlotEncoder, register_encoder
from .language import CONNECTIVES, split_line

BITS_PER_LINE = 3


@register_encoder("connective")
class Connective(SlotEncoder):
    """3 bits a line in the choice of connective (the first eight of the language's ten)."""

    name = "connective"

    def slots(self, text: str) -> Read:
        out: Read = []
        for line in text.splitlines():
            parts = split_line(line)
            if parts is None:
                continue
            idx = CONNECTIVES.index(parts[1])
            if idx >= 2**BITS_PER_LINE:
                out.extend([None] * BITS_PER_LINE)
            else:
                out.extend((idx >> (BITS_PER_LINE - 1 - k)) & 1 for k in range(BITS_PER_LINE))
        return out

    def write(self, text: str, bits: Callable[[int], int | None]) -> str:
        out, k = [], 0
        for line in text.splitlines():
            parts = split_line(line)
            if parts is None:
                out.append(line)
                continue
            group = [bits(BITS_PER_LINE * k + j) for j in range(BITS_PER_LINE)]
            k += 1
            if all(b is None for b in group):
                out.append(line)
                continue
            idx = sum((b or 0) << (BITS_PER_LINE - 1 - j) for j, b in enumerate(group))
            label, _, content = parts
            out.append(f"{label}: {CONNECTIVES[idx]} {content}")
        return "\n".join(out)
