"""Models with sliding-window (or other bounded) attention layers, run through transformers'
own `generate` and cache classes: Mistral, Gemma 2 and 3, gpt-oss and the like.

The KV prefix store and the decode stream of `hf` keep every token of every layer; a layer
that keeps only its last W tokens breaks that, so such a model is not given them.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Completion, GenerationParams, Prompt, row_seeds
from .hf import HFBackend, _eos_ids, _left_pad


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
        out: list[Completion | None] = [None] * len(prompts)
        greedy = [i for i, q in enumerate(params) if q.temperature <= 0]
        for idx in self._batches([rows[i] for i in greedy]):
            which = [greedy[j] for j in idx]
            for i, new in zip(which, self._run([rows[i].ids for i in which], [params[i] for i in which], None), strict=True):
                out[i] = self._cut(new, params[i], len(rows[i].ids))
        sampled = [i for i, q in enumerate(params) if q.temperature > 0]
        seeds = row_seeds(params[sampled[0]].seed, [rows[i].ids for i in sampled]) if sampled else []
        for i, seed in zip(sampled, seeds, strict=True):
            (new,) = self._run([rows[i].ids], [params[i]], seed)
            out[i] = self._cut(new, params[i], len(rows[i].ids))
        return [c for c in out if c is not None]

    def _run(self, seqs: list[list[int]], params: list[GenerationParams], seed: int | None) -> list[list[int]]:
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
                max_new_tokens=max(p.max_new_tokens for p in params), eos_token_id=sorted(_eos_ids(self.model, self.tok)),
                pad_token_id=self.tok.pad_token_id, **kwargs,
            )
        self.n_prefill_tokens += sum(len(s) for s in seqs)
        return [row[ids.shape[1] :].tolist() for row in gen]

    def _cut(self, new: list[int], params: GenerationParams, n_prompt: int) -> Completion:
        """A row's completion: its tokens up to its own budget, its first end token or stop string."""
        eos, tail = _eos_ids(self.model, self.tok), self._stop_tail(params.stop)
        kept: list[int] = []
        for t in new[: params.max_new_tokens]:
            kept.append(t)
            if self._ends(kept, params.stop, tail, eos):
                return self._completion(kept, params, True, n_prompt)
        return self._completion(kept, params, False, n_prompt)
