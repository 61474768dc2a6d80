"""The transformers engine: batches of token rows through the model, greedy or sampled decoding, scoring,
the prefix store and the decode stream. The hf adapter hands it rows and reads its results."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..backends.base import Completion, GenerationParams, decoded_completion, row_seeds, written_logprob
from .draft import Drafter
from .memory import release_freed_memory
from .rows import Row, choose, eos_ids, left_pad, logprobs, positions, shared_prefixes, subgroups
from .store import PrefixStore

if TYPE_CHECKING:
    from .stream import DecodeStream

BATCH_SIZE = 32  # rows decoded together (option batch_size; on a CPU the loader may choose fewer, see backends._load.default_batch_size)
KV_STORE_MIB = 192  # KV kept between calls (option kv_store); SmolLM2-135M: 23 KB a token in bfloat16, 46 KB in float32; a 7B model 128 KB
DRAFT_TOKENS = 4  # draft tokens a row of the decode stream checks a step at most (option draft; 0: none), see draft


class Engine(PrefixStore):
    """A causal LM and its tokenizer run on rows of token ids: `generate`, `score`, `open_stream`, `forget`.

    A row (`rows.Row`) is a prompt's token ids, the conversation it belongs to (rows of one may
    share KV) and how many of its leading tokens may come from a shared prefix."""

    def __init__(self, model, tokenizer, batch_size: int = BATCH_SIZE, prefix_cache: bool = True, draft_tokens: int = DRAFT_TOKENS,
                 kv_store_bytes: int = KV_STORE_MIB * 2**20, answer_in_row: bool = True) -> None:
        self.model, self.tok = model, tokenizer
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self.n_generated_tokens = 0
        self.n_scored_tokens = 0
        self.n_prefill_tokens = 0  # prompt tokens run through the model (generation and scoring)
        self.n_decode_row_steps = 0  # tokens decode steps gave rows: one per generated token after the first (a kept draft included), none for a row that has ended
        self.kv_store_bytes = kv_store_bytes  # at most this much KV kept between calls (option kv_store)
        self.kv_store: OrderedDict = OrderedDict()
        self.drafter = Drafter(draft_tokens) if draft_tokens > 0 else None  # the decode stream's drafts, see draft
        self.n_draft_tokens = 0  # draft tokens the decode stream checked
        self.n_draft_kept = 0  # of those, the ones it kept
        # The decode stream forces an answer asked with a generation in its row, and a generation
        # that asks not to be kept (a forced answer's) leaves no KV (option answer_in_row), see DecodeStream.
        self.answer_in_row = answer_in_row
        self.n_answers_in_row = 0  # answers it decoded so

    def keeps(self, params: GenerationParams) -> bool:
        """Whether a finished row's KV goes to the store: unless it asks not to be kept (a forced
        answer's, `GenerationParams.keep`) and answers run in the row (option answer_in_row; off,
        every row's is kept, as before)."""
        return params.keep or not self.answer_in_row

    def forget(self) -> None:
        """Drop the stored KV and the draft tables: what follows is computed as in a fresh process."""
        self.kv_store.clear()
        if self.drafter is not None:
            self.drafter = Drafter(self.drafter.k)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def generate(self, rows: Sequence[Row], params: Sequence[GenerationParams]) -> list[Completion]:
        """One completion per row. Rows that differ only in their token budget and stop strings
        share batches; each row stops at its own."""
        results: list[Completion | None] = [None] * len(rows)
        eos = eos_ids(self.model, self.tok)
        shared_params = [replace(q, max_new_tokens=0, stop=()) for q in params]
        for shared in dict.fromkeys(shared_params):
            which = [i for i, q in enumerate(shared_params) if q == shared]
            fam = self.families([rows[i] for i in which])
            seeds = row_seeds(shared.seed, [r.ids for r in fam]) if shared.temperature > 0 else None
            for idx in self.batches(fam):
                cache, ids, mask, lp = self.layout(fam, idx)
                own = [params[which[r]] for r in idx]
                mine = [seeds[r] for r in idx] if seeds else None
                decoded = self._decode(cache, ids, mask, lp, shared, own, eos, mine, [fam[r].ids for r in idx])
                for row, q, (new, stopped, lps) in zip(idx, own, decoded, strict=True):
                    results[which[row]] = self.completion(new, q, stopped, len(fam[row].ids), lps)
                self.release()
        return [r for r in results if r is not None]

    def score(self, rows: Sequence[Row], reads: Sequence[tuple[str, int | list[int]]]) -> list[float | list[float]]:
        """Per row, what its read asks: ("tail", n), the summed log-probability of its last n
        tokens; ("next", tokens), the next-token log-probability of each of `tokens`."""
        import torch

        rows = self.families(list(rows))
        values: list[float | list[float]] = [0.0] * len(rows)
        before = self.n_prefill_tokens
        for idx in self.batches(rows):
            cache, ids, mask, lp = self.layout(rows, idx)
            pos = positions(mask)
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
        self.release()
        return values

    def batches(self, rows: Sequence[Row]) -> list[list[int]]:
        """Row indices in batches of at most `batch_size`; a group's rows sit together, and
        groups of similar length share a batch, so little compute goes to padding."""
        longest: dict = {}
        for r in rows:
            longest[r.group] = max(longest.get(r.group, 0), len(r.ids))
        order = sorted(range(len(rows)), key=lambda i: (longest[rows[i].group] // 32, str(rows[i].group), len(rows[i].ids)))
        return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def layout(self, rows: Sequence[Row], idx: Sequence[int]):
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
        ref, shared = shared_prefixes(rows, idx) if self.prefix_cache else ({}, {})
        group_len = {g: max(shared[i] for i in idx if rows[i].group == g) for g in ref} if shared else {}
        if not shared or min(group_len.values()) < 1:
            width = max(len(rows[i].ids) for i in idx)
            ids, mask = left_pad([rows[i].ids for i in idx], width, pad)
            self.n_prefill_tokens += sum(len(rows[i].ids) for i in idx)
            return None, ids.to(dev), mask.to(dev), 0
        groups = list(ref)
        kv = self._prefix_kv({g: rows[ref[g]].ids[: group_len[g]] for g in groups})
        lp = max(group_len.values())
        # Each row's KV: its group's first L tokens, right-aligned in lp columns.
        cache = self.stack_kv([(kv[rows[i].group], shared[i]) for i in idx], lp)
        row_prefix = [rows[i].ids[: shared[i]] for i in idx]
        suffixes = [rows[i].ids[shared[i] :] for i in idx]
        self.n_prefill_tokens += sum(len(x) for x in suffixes)
        pr_ids, pr_mask = left_pad(row_prefix, lp, pad)
        s_ids, s_mask = left_pad(suffixes, max(len(x) for x in suffixes), pad)
        ids = torch.cat([pr_ids, s_ids], dim=1)
        mask = torch.cat([pr_mask, s_mask], dim=1)
        return cache, ids.to(dev), mask.to(dev), lp

    def fed_lengths(self, rows: Sequence[Row]) -> list[int]:
        """How many tokens of each row a prompt pass feeds after its prefix KV (see `layout`):
        with the prefix cache, those past the prefix it shares with its group's longest row. The
        truncation points of one trace feed a few tokens each, a new conversation one; batched
        by whole length, a row feeding 27 tokens padded ten rows feeding 1-3 to 27 each."""
        if not self.prefix_cache:
            return [len(r.ids) for r in rows]
        _, shared = shared_prefixes(rows, range(len(rows)))
        return [len(r.ids) - shared[i] for i, r in enumerate(rows)]

    def families(self, rows: list[Row]) -> list[Row]:
        """With the prefix cache, each conversation's rows split into prefix families (`subgroups`)."""
        return subgroups(rows) if self.prefix_cache else rows

    def alone(self, rows: Sequence[Row]) -> list[int]:
        """The rows alone in their conversation, to start one by one past the store (`start_alone`)."""
        if not self.prefix_cache:
            return []
        per_group = Counter(r.group for r in rows)
        return [i for i, r in enumerate(rows) if per_group[r.group] == 1]

    def on_cpu(self) -> bool:
        return self.model.device.type == "cpu"

    def padding_waste(self) -> float:
        """The share of a prompt batch's slots that may be padding (on a GPU a small batch is launch-bound)."""
        return 0.2 if self.on_cpu() else 1.0

    def release(self) -> None:
        """Give freed host heap back (`_memory`); on a GPU the tensors are not on that heap."""
        if self.on_cpu():
            release_freed_memory()

    def completion(self, new: list[int], params: GenerationParams, stopped: bool, n_prompt: int, logprobs: Sequence[float] = ()) -> Completion:
        """A row's completion from its decoded tokens (`stopped`: it ended on an end token or a
        stop string, not on its budget) and, when given, the log-probability of each."""
        decode = lambda ids: self.tok.decode(ids, skip_special_tokens=True)  # noqa: E731
        out = decoded_completion(decode(new), len(new), params, stopped, n_prompt, self.count_tokens)
        self.n_generated_tokens += out.n_generated_tokens
        if len(logprobs) == len(new):
            lp, k = written_logprob(new, logprobs, out.text, decode)
            out = replace(out, logprob=lp, n_logprob_tokens=k)
        return out

    def stop_tail(self, stop: tuple[str, ...]) -> int:
        """How many of a row's last tokens are decoded again to look for a stop string."""
        return max((len(self.encode(s)) for s in stop if s), default=0) + 2

    def ends(self, new: list[int], stop: tuple[str, ...], tail: int, eos: set[int]) -> bool:
        """Whether a row ends at its last token: an end token, or a stop string in its tail."""
        return new[-1] in eos or (bool(stop) and any(st in self.tok.decode(new[-tail:], skip_special_tokens=True) for st in stop))

    def start(self, cache, ids, mask, lp: int):
        """Run a batch's prompt tokens past its cached prefix: (cache, next-token logits, last positions)."""
        import torch

        pos = positions(mask).to(self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids[:, lp:], attention_mask=mask, position_ids=pos[:, lp:],
                             cache=self.new_cache() if cache is None else cache, use_cache=True, logits_to_keep=1)
        return out.cache, out.logits[:, -1, :], pos[:, -1]

    def step(self, chosen: list[int], cache, mask, last):
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
        prompt tokens (`prompts`), a row's KV goes to the store as it leaves (`keep_generated`)."""
        import torch

        n = ids.shape[0]
        new: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        ended = [False] * n
        live = list(range(n))
        tails = {q.stop: self.stop_tail(q.stop) for q in own}
        gens = None
        if params.temperature > 0:
            # Each row draws from a generator of its own (see `row_seeds`), so what it samples
            # does not depend on which rows share its batch: a resumed run batches differently.
            if seeds is None:
                raise ValueError("sampled decoding needs a seed per row (row_seeds)")
            gens = [torch.Generator(device=self.model.device).manual_seed(k) for k in seeds]
        with torch.inference_mode():
            cache, logits, last = self.start(cache, ids, mask, lp)
            while True:
                picked = choose(logits, params, [gens[r] for r in live] if gens else None)
                chosen = picked.tolist()
                self.n_decode_row_steps += len(live)
                keep = []
                for j, (r, t, lp) in enumerate(zip(live, chosen, logprobs(logits, picked), strict=True)):
                    new[r].append(t)  # an end token is kept (and counted); decoding drops it
                    lps[r].append(lp)
                    if self.ends(new[r], own[r].stop, tails[own[r].stop], eos):
                        ended[r] = True
                    elif len(new[r]) < own[r].max_new_tokens:
                        keep.append(j)
                if prompts is not None and self.prefix_cache and len(keep) < len(live):
                    gone = set(range(len(live))) - set(keep)
                    for j in sorted(gone):
                        r, valid = live[j], mask[j].bool()
                        if not self.keeps(own[r]):
                            continue
                        self.keep_generated(list(prompts[r]) + new[r][:-1], [(layer.keys[j][:, valid], layer.values[j][:, valid]) for layer in cache.layers])
                if not keep:
                    break
                if len(keep) < len(live):
                    sel = torch.tensor(keep, device=self.model.device)
                    cache.batch_select_indices(sel)
                    mask, last = mask[sel], last[sel]
                    live = [live[j] for j in keep]
                    chosen = [chosen[j] for j in keep]
                cache, logits, mask, last = self.step(chosen, cache, mask, last)
        return list(zip(new, ended, lps, strict=True))

    def open_stream(self, row_of) -> DecodeStream:
        """Greedy generation step by step in one running batch, which calls join and leave
        between steps (continuous batching; `backends.lockstep` drives it)."""
        from .stream import DecodeStream

        return DecodeStream(self, row_of)
