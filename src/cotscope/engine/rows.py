"""Rows of a batch and the tensors they become: padding, positions, prefix families, picking tokens."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

from ..backends.base import GenerationParams, common_prefix

FED_SLACK = 32  # padding slots a prompt pass may carry whatever its share: a forward's fixed cost is about that many tokens' work


def fill_from_end(keep: list[int]) -> list[int]:
    """The kept rows `keep` (ascending) in an order where a row stays in its slot when it can
    and the slots of rows that left are filled by kept rows from the end: the fewest rows move.
    [0, 2, 3, 5] (of 6) -> [0, 5, 2, 3]."""
    k, kept = len(keep), set(keep)
    tail = iter(j for j in keep if j >= k)
    return [j if j in kept else next(tail) for j in range(k)]


def pad_left(t, width: int):
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
class Row:
    ids: list[int]
    group: Hashable  # rows of one group may share a KV prefix
    limit: int  # at most this many leading tokens may come from the shared prefix


def choose(logits, params: GenerationParams, generators: Sequence | None = None):
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


def logprobs(logits, chosen) -> list:
    """The log-probability the model gave each chosen token (`chosen`: a token per position of
    `logits`, rows or rows x columns of vocabulary scores), under its raw distribution
    (temperature 1, no nucleus): what scoring the text again would give it. Nested lists of
    `chosen`'s shape."""
    import torch

    logits = logits.float()
    return (logits.gather(-1, chosen.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)).tolist()


def greedy(logits) -> tuple[list, list]:
    """The argmax token at each position of `logits` and its log-probability (`logprobs`)."""
    pick = logits.argmax(dim=-1)
    return pick.tolist(), logprobs(logits, pick)


def subgroups(rows: Sequence[Row], slack: int = FED_SLACK) -> list[Row]:
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


def shared_prefixes(rows: Sequence[Row], idx: Sequence[int]) -> tuple[dict, dict]:
    """Among the rows `idx`: each group's longest row (group -> index), and how many leading
    tokens each row shares with its group's longest (index -> tokens, at most the row's limit)."""
    ref: dict = {}
    for i in idx:
        g = rows[i].group
        if g not in ref or len(rows[i].ids) > len(rows[ref[g]].ids):
            ref[g] = i
    return ref, {i: min(common_prefix(rows[i].ids, rows[ref[rows[i].group]].ids), rows[i].limit) for i in idx}


def similar_lengths(items: list, length, waste: float = 0.2, slack: int = 0) -> list[list]:
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


def left_pad(seqs: Sequence[Sequence[int]], width: int, pad: int):
    import torch

    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        if seq:
            ids[r, width - len(seq) :] = torch.tensor(list(seq))
            mask[r, width - len(seq) :] = 1
    return ids, mask


def positions(mask):
    """Position ids that skip padding, as generate computes them."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def eos_ids(model, tok) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return ids
