"""The KV cache layer and batch helpers of the transformers backend's decode stream."""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

from .base import GenerationParams, common_prefix

FED_SLACK = 32  # padding slots a prompt pass may carry whatever its share: a forward's fixed cost is about that many tokens' work


GROW_TOKENS = 64  # free columns a cache layer keeps for the tokens still to come, see _grow_layer
@functools.cache
def _grow_layer():
    """transformers' DynamicLayer, but its keys and values are views of buffers with room for
    `GROW_TOKENS` more columns. DynamicLayer concatenates on every update, so each decode step
    copies the whole KV of the batch (about a third of a 32-row step at 768 tokens) and the
    allocator is left with ever-larger holes; here a step writes its one column in place, and a
    buffer is reallocated once every `GROW_TOKENS` steps, or when the keys were replaced. The
    numbers are the same: attention reads the same values.

    The running decode batch's buffers (`running`) also keep room for more rows on a CPU, so
    rows that join are written into free rows and rows that leave are replaced from the end, and
    leading columns that only pad are cropped by moving the rest left: none of these
    reallocates."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowLayer(DynamicLayer):
        buf: tuple | None = None
        running: bool = False

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, k = self.get_seq_length(), key_states.shape[0]
            need = n + key_states.shape[-2]
            if not self._inside() or need > self.buf[0].shape[-2]:
                spare = self.running and self.buf is not None and key_states.device.type == "cpu"  # as in _admit: spare rows only on a CPU
                rows = max(k, self.buf[0].shape[0]) if spare else k
                self.buf = tuple(self._room(old if n else None, new, need, rows)
                                 for old, new in ((self.keys, key_states), (self.values, value_states)))
            bk, bv = self.buf
            bk[:k, :, n:need] = key_states
            bv[:k, :, n:need] = value_states
            self.keys, self.values = bk[:k, :, :need], bv[:k, :, :need]
            return self.keys, self.values

        def _inside(self) -> bool:
            """Whether the keys are still the leading rows and columns of the buffer (nothing replaced them)."""
            b = self.buf[0] if self.buf is not None else None
            return (b is not None and self.get_seq_length() > 0 and self.keys.data_ptr() == b.data_ptr()
                    and self.keys.shape[0] <= b.shape[0] and self.keys.stride() == b.stride())

        @staticmethod
        def _room(old, new, need: int, rows: int):
            shape = list(new.shape)
            shape[0], shape[-2] = rows, need + GROW_TOKENS
            buf = new.new_empty(shape)
            if old is not None:
                buf[: old.shape[0], :, : old.shape[-2]] = old
            return buf

        def batch_select_indices(self, indices) -> None:
            """Keep the rows `indices` (in that order). When each row that moves comes from beyond
            the rows kept (a finished row's slot filled from the end, as the decode stream
            orders them), the moved rows are copied within the buffer: no new buffer."""
            if not self._inside():
                return super().batch_select_indices(indices)
            n, keep = self.get_seq_length(), indices.tolist()  # one read of a device tensor, not one per row
            moves = [(j, i) for j, i in enumerate(keep) if i != j]
            if len(set(keep)) == len(keep) and all(i >= len(keep) for _, i in moves):
                if moves:
                    dst, src = (torch.tensor(x, device=self.keys.device) for x in zip(*moves, strict=True))
                    with torch.inference_mode():  # the buffers were made in inference mode
                        for b in self.buf:
                            b[dst, :, :n] = b[src, :, :n]
            else:
                self.buf = tuple(b[indices] for b in self.buf)
            self.keys, self.values = self.buf[0][: len(keep), :, :n], self.buf[1][: len(keep), :, :n]

        def crop_left(self, first: int) -> None:
            """Drop the first `first` columns; in a buffer, the rest moves to its start."""
            if not self._inside():
                self.keys, self.values = self.keys[:, :, first:], self.values[:, :, first:]
                return
            r, n = self.keys.shape[0], self.get_seq_length()
            with torch.inference_mode():
                for b in self.buf:
                    b[:r, :, : n - first] = b[:r, :, first:n].clone()  # the ranges overlap
            self.keys, self.values = self.buf[0][:r, :, : n - first], self.buf[1][:r, :, : n - first]

        def pack(self, order) -> None:
            """Keep, for each row r, the columns `order[r]` (in that order) as its first ones."""
            r, w = order.shape
            pick = order[:, None, :, None].expand(r, self.keys.shape[1], w, self.keys.shape[-1])
            with torch.inference_mode():
                packed = [t.gather(2, pick) for t in (self.keys, self.values)]
                if not self._inside():
                    self.keys, self.values = packed
                    return
                for b, t in zip(self.buf, packed, strict=True):
                    b[:r, :, :w] = t
            self.keys, self.values = self.buf[0][:r, :, :w], self.buf[1][:r, :, :w]

        @classmethod
        def joined(cls, layers, width: int, rows: int = 0):
            """One layer holding the rows of `layers` one after another, each right-aligned in
            `width` columns (zeros on its left). When the first layer's buffer has the rows and
            columns, the others are written into it (its own rows moved right if `width` is
            wider than they are); otherwise into a new buffer of at least `rows` rows. Each
            part's KV is freed as it is copied."""
            total = sum(x.keys.shape[0] for x in layers)
            base = layers[0]
            if base._inside() and total <= base.buf[0].shape[0] and width <= base.buf[0].shape[-2]:
                out, at, rest = base, base.keys.shape[0], layers[1:]
            else:
                first = next(x for x in layers if x.keys is not None and x.keys.numel())
                out, at, rest = cls(), 0, layers
                out.lazy_initialization(first.keys, first.values)
                out.buf = tuple(ref.new_empty((max(rows, total), ref.shape[1], width + GROW_TOKENS, ref.shape[3]))
                                for ref in (first.keys, first.values))
            with torch.inference_mode():  # a batch's buffers were made in inference mode
                n = out.get_seq_length() if out is base else width
                if width > n:
                    for b in out.buf:
                        b[:at, :, width - n : width] = b[:at, :, :n].clone()  # the ranges overlap
                        b[:at, :, : width - n] = 0
                for x in rest:
                    r, w = x.keys.shape[0], x.keys.shape[-2]
                    for b, t in zip(out.buf, (x.keys, x.values), strict=True):
                        b[at : at + r, :, : width - w] = 0
                        b[at : at + r, :, width - w : width] = t
                    at += r
                    x.keys = x.values = None
                    x.buf = None
            out.running = True
            out.keys, out.values = out.buf[0][:total, :, :width], out.buf[1][:total, :, :width]
            return out

    return GrowLayer


def _fill_from_end(keep: list[int]) -> list[int]:
    """The kept rows `keep` (ascending) in an order where a row stays in its slot when it can
    and the slots of rows that left are filled by kept rows from the end: the fewest rows move.
    [0, 2, 3, 5] (of 6) -> [0, 5, 2, 3]."""
    k, kept = len(keep), set(keep)
    tail = iter(j for j in keep if j >= k)
    return [j if j in kept else next(tail) for j in range(k)]


def _pad_left(t, width: int):
    """`t` with zero columns on the left of its sequence axis (-2 for KV, -1 for a mask) up to `width`."""
    import torch

    axis = -1 if t.dim() == 2 else -2
    missing = width - t.shape[axis]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[axis] = missing
    return torch.cat([t.new_zeros(shape), t], dim=axis)


@dataclass(frozen=True)
class _Row:
    ids: list[int]
    group: Hashable  # rows of one group may share a KV prefix
    limit: int  # at most this many leading tokens may come from the shared prefix


def _choose(logits, params: GenerationParams, generators: Sequence | None = None):
    """The next token of each row: the argmax, or a draw at `temperature` from the top-p nucleus
    (each row from its own generator when `generators` are given)."""
    import torch

    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p > params.top_p  # keep the smallest set reaching top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    if generators is not None:
        return torch.stack([torch.multinomial(probs[j], 1, generator=g) for j, g in enumerate(generators)]).squeeze(-1)
    return torch.multinomial(probs, 1).squeeze(-1)


def _logprobs(logits, chosen) -> list:
    """The log-probability the model gave each chosen token (`chosen`: a token per position of
    `logits`, rows or rows x columns of vocabulary scores), under its raw distribution
    (temperature 1, no nucleus): what scoring the text again would give it. Nested lists of
    `chosen`'s shape."""
    import torch

    logits = logits.float()
    return (logits.gather(-1, chosen.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)).tolist()


def _greedy(logits) -> tuple[list, list]:
    """The argmax token at each position of `logits` and its log-probability (`_logprobs`)."""
    pick = logits.argmax(dim=-1)
    return pick.tolist(), _logprobs(logits, pick)


def _subgroups(rows: Sequence[_Row], slack: int = FED_SLACK) -> list[_Row]:
    """`rows` with each conversation's rows split into prefix families: longest first, a row
    joins the family whose first (longest) row shares the most leading tokens with it, unless
    more than `slack` of its tokens are past that prefix; then it starts a family of its own,
    whose prefix the KV store may hold (a continuation the decode generated, an edited CoT an
    earlier call ran). The points of one CoT nest in one family; the points of a paraphrase of it,
    or the answers forced after twenty continuations of it, each in theirs. A conversation's
    first family keeps its group; the others are (group, k)."""
    import numpy as np

    out = list(rows)
    by_group: dict = {}
    for i, r in enumerate(rows):
        by_group.setdefault(r.group, []).append(i)
    for g, idx in by_group.items():
        if len(idx) < 2:
            continue
        heads: list[np.ndarray] = []
        for i in sorted(idx, key=lambda i: -len(rows[i].ids)):
            ids = np.asarray(rows[i].ids)
            best, k = 0, -1
            for j, h in enumerate(heads):
                n = common_prefix(h[: len(ids)], ids)
                if n > best:
                    best, k = n, j
            if k < 0 or len(ids) - best > slack:
                heads.append(ids)
                k = len(heads) - 1
            if k:
                out[i] = replace(rows[i], group=(g, k))
    return out


def _shared_prefixes(rows: Sequence[_Row], idx: Sequence[int]) -> tuple[dict, dict]:
    """Among the rows `idx`: each group's longest row (group -> index), and how many leading
    tokens each row shares with its group's longest (index -> tokens, at most the row's limit)."""
    ref: dict = {}
    for i in idx:
        g = rows[i].group
        if g not in ref or len(rows[i].ids) > len(rows[ref[g]].ids):
            ref[g] = i
    return ref, {i: min(common_prefix(rows[i].ids, rows[ref[rows[i].group]].ids), rows[i].limit) for i in idx}


def _similar_lengths(items: list, length, waste: float = 0.2, slack: int = 0) -> list[list]:
    """`items` in batches of similar `length`: sorted by it, a batch closes before padding
    (each item is padded to the batch's longest) would exceed `waste` of its slots, or `slack`
    slots if that is more. A batch of rows of 40 and 240 tokens computes 200 padding columns
    for the short one; rows of 1 to 3 tokens are cheaper in one pass than in three."""
    batches: list[list] = []
    for x in sorted(items, key=length):
        b = batches[-1] if batches else None
        slots = length(x) * (len(b) + 1) if b is not None else 0
        if b is not None and slots - sum(map(length, b)) - length(x) <= max(waste * slots, slack):
            b.append(x)
        else:
            batches.append([x])
    return batches


def _left_pad(seqs: Sequence[Sequence[int]], width: int, pad: int):
    import torch

    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        if seq:
            ids[r, width - len(seq) :] = torch.tensor(list(seq))
            mask[r, width - len(seq) :] = 1
    return ids, mask


def _positions(mask):
    """Position ids that skip padding, as generate computes them."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _eos_ids(model, tok) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return ids
