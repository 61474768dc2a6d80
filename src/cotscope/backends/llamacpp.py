"""In-process llama.cpp: ``llamacpp/<path.gguf>`` (``pip install 'cotscope[llamacpp]'``).

A GGUF model runs quantized, as llama.cpp runs it, instead of dequantized to fp32 as
transformers loads it. The chat template is the GGUF's own (``tokenizer.chat_template``).
Every prompt is evaluated on top of the KV cache of the longest prefix it shares with the
previous one (llama-cpp-python's prefix matching), so the prompts of a truncation sweep,
which grow one CoT step at a time, cost about one pass over the CoT. Prompts run one at a
time, in the order given.

Options: ``n_ctx`` (default 4096), ``n_threads`` (default: the cores this process may use),
``n_batch`` (default 512), ``seed`` (default 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._errors import CotscopeError, require
from .base import Backend, Completion, GenerationParams, Prompt, cut_at_stop
from .registry import register_backend

INSTALL = "pip install 'cotscope[llamacpp]'"
OPTIONS = ("n_ctx", "n_threads", "n_batch", "seed")


def _check(rest: str, opts: dict[str, str]) -> None:
    if not rest:
        raise CotscopeError("llamacpp/<path.gguf>: give the path of a GGUF file")
    path = Path(rest)
    if not path.is_file():
        raise CotscopeError(f"llamacpp/{rest}: no such file")
    if path.suffix.lower() != ".gguf":
        raise CotscopeError(f"llamacpp/{rest}: not a .gguf file")
    unknown = set(opts) - set(OPTIONS)
    if unknown:
        raise CotscopeError(f"unknown options for llamacpp/{rest}: {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    for k, v in opts.items():
        if not v.isdigit():
            raise CotscopeError(f"option {k}={v!r} for llamacpp/{rest}: expected a whole number")
    require("llama_cpp", "llamacpp", INSTALL)


class LlamaCppBackend(Backend):
    """A GGUF model in this process through llama-cpp-python."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self.n_generated_tokens = 0
        self.n_prefill_tokens = 0
        meta = getattr(llm, "metadata", {}) or {}
        self.template = meta.get("tokenizer.chat_template")
        self.bos = self._piece(llm.token_bos())
        self.eos = self._piece(llm.token_eos())
        self.add_bos = str(meta.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
        import atexit

        # Free the model while the interpreter is whole: llama-cpp-python's own finalizer,
        # left to run at shutdown, fails on a half-torn-down module.
        atexit.register(self.close)

    @classmethod
    def load(cls, path: str, opts: dict[str, str] | None = None) -> "LlamaCppBackend":
        opts = dict(opts or {})
        _check(path, opts)
        llama_cpp = require("llama_cpp", "llamacpp", INSTALL)
        from ._threads import available_cores

        threads = int(opts.get("n_threads", 0)) or available_cores()
        llm = llama_cpp.Llama(
            model_path=path, n_ctx=int(opts.get("n_ctx", 4096)), n_threads=threads, n_batch=int(opts.get("n_batch", 512)),
            seed=int(opts.get("seed", 0)), logits_all=False, verbose=False,
        )
        return cls(llm)

    def _piece(self, token: int) -> str:
        if token is None or token < 0:
            return ""
        try:
            return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")
        except TypeError:  # older llama-cpp-python: no `special`
            return self.llm.detokenize([token]).decode("utf-8", errors="replace")

    # -- text <-> tokens -------------------------------------------------------------------
    def render(self, prompt: Prompt) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in prompt.messages]
        if self.template:
            import jinja2

            env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
            text = env.from_string(self.template).render(messages=msgs, add_generation_prompt=True, bos_token=self.bos, eos_token=self.eos)
        else:
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"
            text += " " if prompt.prefix and not prompt.prefix.startswith((" ", "\n")) else ""
        return text + prompt.prefix

    def encode(self, text: str) -> list[int]:
        add_bos = self.add_bos and not (self.bos and text.startswith(self.bos))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        out = []
        for p in prompts:
            ids = self.encode(self.render(p))
            before = self._cached_prefix(ids)
            res = self.llm.create_completion(
                prompt=ids, max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                seed=params.seed, stop=list(params.stop) or None,
            )
            choice = res["choices"][0]
            text, hit = cut_at_stop(choice["text"], params.stop)
            n_new = int(res["usage"]["completion_tokens"])
            self.n_generated_tokens += n_new
            self.n_prefill_tokens += len(ids) - before
            finish = "stop" if hit or choice.get("finish_reason") == "stop" else "length"
            out.append(Completion(text, len(ids), n_new, finish))
        return out

    def _cached_prefix(self, ids: Sequence[int]) -> int:
        """Tokens at the start of `ids` whose KV state is already in the cache."""
        n = 0
        for a, b in zip(self.llm.input_ids[: self.llm.n_tokens], ids):
            if a != b:
                break
            n += 1
        return n

    # -- scoring ---------------------------------------------------------------------------
    def _eval_from(self, ids: Sequence[int], start: int) -> np.ndarray:
        """Log-probabilities of the token after ids[:start + 1], evaluating only what the cache lacks."""
        keep = min(self._cached_prefix(ids[: start + 1]), start)  # re-evaluate at least one token for fresh logits
        self.llm.n_tokens = keep
        self.llm.eval(list(ids[keep : start + 1]))
        self.n_prefill_tokens += start + 1 - keep
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return logits - (top + math.log(np.exp(logits - top).sum()))

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        out = []
        for p, conts in zip(prompts, continuations, strict=True):
            text = self.render(p)
            ctx = self.encode(text)
            if not ctx:
                raise CotscopeError("cannot score after an empty prompt")
            row = []
            for c in conts:
                full = self.encode(text + c)
                if full[: len(ctx)] != ctx:  # the join merged tokens: score the parts separately
                    full = ctx + self.llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)
                total = 0.0
                for pos in range(len(ctx), len(full)):
                    total += float(self._eval_from(full, pos - 1)[full[pos]])
                row.append(total)
            out.append(row)
        return out

    def close(self) -> None:
        if getattr(self, "llm", None) is not None and hasattr(self.llm, "close"):
            self.llm.close()


@register_backend("llamacpp", check=_check)
def llamacpp_backend(rest: str, opts: dict[str, str]) -> Backend:
    return LlamaCppBackend.load(rest, opts)
