"""The prefix store: KV of token prefixes kept between calls, so that a prompt that starts with tokens
an earlier call ran (its conversation so far, a shared instruction, a generated CoT) runs only the rest."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from ..backends.base import common_prefix
from .cache import grow_layer
from .rows import FED_SLACK, Row, left_pad, positions, similar_lengths


class PrefixStore:
    """The store's part of `Engine`: its entries, looking prefixes up, running what they lack, keeping new ones."""

    model: object
    tok: object
    kv_store: OrderedDict  # conversation -> (prefix ids, its KV per layer, its bytes), see _prefix_kv
    kv_store_bytes: int
    prefix_cache: bool
    n_prefill_tokens: int

    def new_cache(self):
        """A DynamicCache whose full-attention layers write each new token in place (`grow_layer`)."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(config=self.model.config)
        cache.layers = [grow_layer()() if type(layer) is DynamicLayer else layer for layer in cache.layers]
        return cache

    def stack_kv(self, parts: Sequence[tuple[list | None, int]], width: int):
        """A cache of one row per part: the first n tokens of the part's KV (per layer, heads x
        tokens x dim; None when n is 0), right-aligned in `width` columns, zeros to their left."""
        ref = next(kv for kv, n in parts if n)
        cache = self.new_cache()
        for layer_idx, (k0, v0) in enumerate(ref):
            keys = k0.new_zeros((len(parts), k0.shape[0], width, k0.shape[2]))
            values = v0.new_zeros((len(parts), v0.shape[0], width, v0.shape[2]))
            for r, (kv, n) in enumerate(parts):
                if n:
                    keys[r, :, width - n :] = kv[layer_idx][0][:, :n]
                    values[r, :, width - n :] = kv[layer_idx][1][:, :n]
            cache.update(keys, values, layer_idx)
        return cache

    def _prefix_kv(self, prefixes: dict) -> dict:
        """The KV of each group's prefix tokens (per layer, heads x tokens x dim). A prefix's
        leading tokens that an earlier call already ran (the same conversation, or any other
        that starts with the same tokens, such as a rewriting instruction; kept in a small
        store, least recently used out) are not run again: only the rest goes through the
        model, after the stored KV, which is the same for the same tokens at the same positions."""
        out: dict = {}
        need = []
        for g, ids in prefixes.items():
            m, hit = self.stored(g, ids)
            if hit and m == len(ids):
                out[g] = [(k[:, :m], v[:, :m]) for k, v in hit[1]]
            else:
                need.append((g, ids, m, hit))
        for part in similar_lengths(need, lambda x: len(x[1]) - x[2], self.padding_waste()):
            self._run_prefixes(part, out)
        return out

    def stored(self, g, ids: list[int]) -> tuple[int, tuple | None]:
        """How many leading tokens of `ids` the KV store holds, and the entry that holds them:
        the conversation's own, or another's that shares more leading tokens (a rewriter's
        instructions, a generated CoT that a later prompt goes on from)."""
        hit = self.kv_store.get(g)
        m = common_prefix(hit[0], ids) if hit else 0
        if hit:
            self.kv_store.move_to_end(g)
        if m < len(ids):
            found = None
            for key, other in self.kv_store.items():
                if (n := common_prefix(other[0], ids)) > m:
                    hit, m, found = other, n, key
            if found is not None and m > FED_SLACK:  # read for more than a shared template header: recently used, whoever wrote it
                self.kv_store.move_to_end(found)
        return m, hit

    def _run_prefixes(self, need: list, out: dict, passing: Sequence[bool] = ()):
        """Run prefixes past their stored KV in one batch; put each one's KV in `out` and the
        store. Returns the batch's cache, its next-token logits and its attention mask.

        A `passing` row's prompt (an answer's forced after a text: read again at most by a score of
        that answer) is not stored when an entry it does not extend holds all but `FED_SLACK` of
        its tokens: that entry serves the read again, short of those few tokens, and the copy
        would take the room of entries later prompts go on from (a truncation point's forced
        answer that could not join the running batch copied most of its trace). On the long-trace
        bench (10 samples) the entries stored from prompts ending in an answer cue fell from 231
        (917 MB of KV over the run, through a 192 MiB store) to 158, and the prompt tokens run
        from 72,139 to 69,812 (docs/reasoning.md)."""
        import torch

        dev = self.model.device
        wm = max(m for _, _, m, _ in need)
        n_ids, n_mask = left_pad([ids[m:] for _, ids, m, _ in need], max(len(ids) - m for _, ids, m, _ in need), self.tok.pad_token_id)
        m_mask = torch.zeros((len(need), wm), dtype=torch.long)
        for r, (_, _, m, _) in enumerate(need):
            m_mask[r, wm - m :] = 1
        cache = self.stack_kv([(hit[1] if hit else None, m) for _, _, m, hit in need], wm) if wm else self.new_cache()
        mask = torch.cat([m_mask, n_mask], dim=1).to(dev)
        with torch.inference_mode():
            res = self.model(
                input_ids=n_ids.to(dev), attention_mask=mask, position_ids=positions(mask)[:, wm:], cache=cache,
                use_cache=True, logits_to_keep=1,  # logits over every position would cost vocab x tokens of memory
            )
        self.n_prefill_tokens += sum(len(ids) - m for _, ids, m, _ in need)
        for r, (g, ids, m, hit) in enumerate(need):
            valid = mask[r].bool()
            kv = [(layer.keys[r][:, valid], layer.values[r][:, valid]) for layer in res.cache.layers]
            covered = bool(passing) and passing[r] and hit is not None and len(ids) - m <= FED_SLACK and m < len(hit[0])
            out[g] = kv if covered else self._remember(g, ids, kv)
        return res.cache, res.logits[:, -1, :], mask

    def start_alone(self, rows: Sequence[Row], passing: Sequence[bool] = ()) -> list[tuple]:
        """Start rows that are alone in their conversation: each runs past the KV the store
        holds for its leading tokens (at least its last token, whose logits start decoding) in
        one pass, where `layout` and `start` would take two (a pass costs about the same
        however few tokens it feeds). Batches of similar length, each (cache, mask, last
        positions, logits, the indices of its rows). `passing[i]`: row i's prompt is read again
        at most once (a forced answer's), see `_run_prefixes`."""
        need = []
        for i, r in enumerate(rows):
            m, hit = self.stored(r.group, r.ids)
            need.append((r.group, r.ids, min(m, r.limit), hit, i))
        parts = []
        for part in similar_lengths(need, lambda x: len(x[1]) - x[2], self.padding_waste(), FED_SLACK):
            cache, logits, mask = self._run_prefixes([x[:4] for x in part], {}, [bool(passing) and passing[x[4]] for x in part])
            parts.append((cache, mask, positions(mask)[:, -1], logits, [x[4] for x in part]))
        return parts

    def _remember(self, group, ids, kv) -> list:
        """Keep a prefix's KV for later calls of its conversation, within `kv_store_bytes`, least
        recently used out; returns the KV as kept. A budget in bytes, not tokens, holds for any
        model: a 7B model's KV takes 128 KB a token in bfloat16, a 0.5B model's 12 KB."""
        k0 = kv[0][0]
        if all(t.shape == k0.shape for pair in kv for t in pair):  # layers of one shape (no sliding windows)
            buf = k0.new_empty((len(kv), 2, *k0.shape))
            for i, pair in enumerate(kv):
                buf[i, 0], buf[i, 1] = pair
            kv = [(buf[i, 0], buf[i, 1]) for i in range(len(kv))]
        for key in [key for key, (held, _, _) in self.kv_store.items() if key != group and len(held) <= len(ids) and common_prefix(held, ids) == len(held)]:
            del self.kv_store[key]  # its tokens are the new entry's first ones: the new one serves whatever it served
        self.kv_store[group] = (list(ids), kv, sum(t.numel() * t.element_size() for layer in kv for t in layer))
        self.kv_store.move_to_end(group)
        while sum(x[2] for x in self.kv_store.values()) > self.kv_store_bytes and len(self.kv_store) > 1:
            self.kv_store.popitem(last=False)
        return kv

    def keep_generated(self, ids: list[int], kv) -> None:
        """Keep the KV of a finished row (its prompt and the tokens it generated, but the last,
        which was never fed; `kv`: per layer, that row's keys and values). A later prompt that goes
        on from that text (the answer forced after a CoT or a continuation, a truncation of it)
        then runs only its new tokens: on the default audit a fifth of the prompt tokens were such
        text, on a long thinking trace nearly all of a continuation's answer."""
        if self.prefix_cache:
            self._remember(("generated", tuple(ids)), ids, kv)
