"""llama.cpp: ``llamacpp/<path.gguf>`` (``pip install 'cotscope[llamacpp]'``).

A GGUF model runs quantized, as llama.cpp runs it, through llama-cpp-python's ``Llama``: its
sampler, and its reuse of the longest prefix the context already holds. The chat template is
the GGUF's own (``tokenizer.chat_template``), rendered in jinja2's sandbox.

The engine runs in a process of its own (`_isolated`): a crash in llama.cpp's native code is an
`EngineDied` error naming the model and the signal, and the run that called it keeps what it
saved. On a CPU with AMX, llama.cpp 0.3.36's AMX matrix kernel (an "extra buffer type" it
repacks weights into) segfaulted on the first matrix product of SmolLM2's and Qwen2.5-0.5B's
Q4 GGUFs, however the wheel was built; loading with ``use_extra_bufts`` off keeps the weights in
the plain CPU buffer, whose AVX2/AVX-512 kernels run there. It is off by default on CPUs that
list ``amx_tile``, on elsewhere.

Where llama.cpp's own server is installed (``llama-server``; see `llamaserver`), generation rows
go to it instead, ``parallel`` slots decoding side by side (``server=auto``, the default: it is
used when found; ``server=off``; ``server=<path>``); scoring stays here. Without it, rows run
one after the other, in token order, so prompts that share a prefix (a truncation
sweep's prefixes, the continuations from each, the forced answers after them) follow one
another and each evaluates only its own tail: about one pass over the CoT per sweep. Which row
follows which depends only on what was asked, so a rerun gives the same numbers (llama.cpp's
kernels round a little differently with the number of tokens a step evaluates).

Options: ``n_ctx`` (KV cells; default 16384: a prompt and its budget must fit), ``n_batch``
(tokens per step, default 512), ``n_threads`` (default: the cores this process may use),
``seed`` (default 0; sampled generations use their own seed), ``extra_bufts`` (true/false: llama.cpp's
repacked weight buffers; default off on AMX CPUs, on elsewhere; with llama-server, default: tried
on, then off if the server dies on them), ``isolate`` (true/false: the
engine in its own process, default true; false runs it in this one, where a native crash ends
the process), ``server`` (auto/off/a path, above), ``parallel`` (llama-server's slots, default 8);
parsed against `_settings`'s signature, as systems' and experiments' options are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from .._errors import CotscopeError, require
from ._tools import template_messages, template_tools, tool_chat
from .base import Backend, Completion, GenerationParams, Prompt, common_prefix, decoded_completion, row_seed, row_seeds, spec_settings
from .registry import register_backend

INSTALL = "pip install 'cotscope[llamacpp]'"


def _settings(n_ctx: int = 16384, n_batch: int = 512, n_threads: int = 0, seed: int = 0,
              extra_bufts: bool | None = None, isolate: bool = True, server: str = "auto", parallel: int = 8) -> dict:
    """``llamacpp/``'s options with their types and defaults (the chat-template options aside):
    a spec's options are parsed against this signature (`_options.parse_options`)."""
    return dict(locals())


def settings(rest: str, opts: dict[str, str]) -> tuple[dict, dict]:
    """A spec's options, typed and checked: (llama.cpp's settings, the chat template's)."""
    return spec_settings(_settings, opts, f"llamacpp/{rest}", least={"n_ctx": 1, "n_batch": 1, "n_threads": 0, "seed": 0, "parallel": 1})


def _check(rest: str, opts: dict[str, str]) -> None:
    _check_file(rest)
    got = settings(rest, opts)[0]
    require("llama_cpp", "llamacpp", INSTALL)
    from .llamaserver import find_server

    find_server(got["server"])  # a server= that names no program is named here


def _check_file(rest: str) -> None:
    if not rest:
        raise CotscopeError("llamacpp/<path.gguf>: give the path of a GGUF file")
    path = Path(rest)
    if not path.is_file():
        raise CotscopeError(f"llamacpp/{rest}: no such file")
    if path.suffix.lower() != ".gguf":
        raise CotscopeError(f"llamacpp/{rest}: not a .gguf file")
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[:4] != b"GGUF":
        raise CotscopeError(f"llamacpp/{rest}: not a GGUF file (it does not start with the GGUF magic bytes)")


def default_extra_bufts() -> bool:
    """Whether llama.cpp's repacked weight buffers are on by default: not on a CPU with AMX (see
    above). The CPU's own flags, not ``$COTSCOPE_CPU_FLAGS``: the crash is the real CPU's."""
    from ..engine.threads import real_cpu_flags

    return "amx_tile" not in real_cpu_flags()


@contextmanager
def _model_params(**fields):
    """`Llama` with model parameters its constructor does not take (``use_extra_bufts``): it
    starts from `llama_model_default_params`, which returns them set while this block runs."""
    import llama_cpp.llama as L

    make = L.llama_cpp.llama_model_default_params

    def params():
        p = make()
        for k, v in fields.items():
            if hasattr(p, k):  # a field this llama.cpp has
                setattr(p, k, v)
        return p

    L.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        L.llama_cpp.llama_model_default_params = make


class LlamaCppBackend(Backend):
    """A GGUF model in this process through llama-cpp-python's `Llama`, one row at a time."""

    def __init__(self, llm, template: dict | None = None) -> None:
        import llama_cpp as L

        self.template_kwargs = dict(template or {})  # what the GGUF's chat template reads (enable_thinking, ...)
        self.L, self.llm = L, llm
        self.n_ctx = min(llm.n_ctx(), len(llm.input_ids))  # llama.cpp may round its context up; the token record is as asked
        self.n_generated_tokens = self.n_prefill_tokens = self.n_decode_row_steps = 0
        # where the time goes (bench/audit.py prints it): wall time in generation and in scoring
        # calls, and, through llama-server, the prompt tokens it ran and its own prompt and
        # decode times summed over requests (slots overlap: these sums exceed the wall time)
        self.n_generate_ms = self.n_score_ms = self.n_server_prompt_tokens = self.n_server_prompt_ms = self.n_server_decode_ms = 0
        self.precision = "llama.cpp, GGUF weights as stored"
        meta = getattr(llm, "metadata", {}) or {}
        self.template, self._template = meta.get("tokenizer.chat_template"), None
        self.bos = self._piece(llm.token_bos())
        self.eos = self._piece(llm.token_eos())
        self.add_bos = str(meta.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
        self.n_vocab = llm.n_vocab()
        self.vocab = L.llama_model_get_vocab(llm.model)
        self.server = None  # a LlamaServer that decodes generation rows (see llamaserver), or None: this process
        self.decoder = "this process, one row at a time"
        import atexit

        # Free the context and model while the interpreter is whole: llama-cpp-python's own
        # finalizer, left to run at shutdown, fails on a half-torn-down module.
        atexit.register(self.close)

    @classmethod
    def load(cls, path: str, opts: dict[str, str] | None = None) -> LlamaCppBackend:
        _check_file(path)
        got, template = settings(path, opts or {})
        llama_cpp = require("llama_cpp", "llamacpp", INSTALL)
        from ..engine.threads import available_cores

        threads = got["n_threads"] or available_cores()
        n_batch = got["n_batch"]
        extra = default_extra_bufts() if got["extra_bufts"] is None else got["extra_bufts"]
        try:
            with _model_params(use_extra_bufts=extra):
                llm = llama_cpp.Llama(model_path=path, n_ctx=got["n_ctx"], n_batch=n_batch, n_ubatch=min(n_batch, 512),
                                      n_threads=threads, n_threads_batch=threads, seed=got["seed"], logits_all=False, verbose=False)
        except ValueError as exc:  # llama.cpp says only "Failed to load model from file" / "Failed to create llama_context"
            raise CotscopeError(f"llamacpp/{path}: llama.cpp could not load this GGUF file or make its context (cut short or damaged? n_ctx too large?): {exc}") from exc
        backend = cls(llm, template)
        from .llamaserver import find_server, start

        program = find_server(got["server"])
        if program is not None:
            try:
                backend.server, backend.decoder = start(backend, program, path, got, threads)
                backend.precision += f"; decoded by {backend.decoder}"  # in usage.json; a caveat in the summary
            except BaseException:
                backend.close()
                raise
        return backend

    def _piece(self, token: int) -> str:
        if token is None or token < 0:
            return ""
        try:
            return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")
        except TypeError:  # older llama-cpp-python: no `special`
            return self.llm.detokenize([token]).decode("utf-8", errors="replace")

    # -- text <-> tokens -------------------------------------------------------------------
    def _chat_template(self):
        """The GGUF's chat template, compiled once in jinja2's sandbox: a template is data from
        the file, and the sandbox refuses attribute access that could reach Python internals."""
        if self._template is None:
            from jinja2.exceptions import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise CotscopeError(f"the GGUF chat template refused the conversation: {message}")

            # the environment transformers renders templates in (what the models were trained on):
            # loop controls, `tojson` without HTML escapes, `strftime_now`
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
            env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
            env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
                x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
            try:
                self._template = env.from_string(self.template)
            except TemplateError as exc:
                raise CotscopeError(f"the GGUF chat template does not parse: {exc}") from exc
        return self._template

    def render(self, prompt: Prompt) -> str:
        msgs = template_messages(prompt.messages)
        if self.template:
            from jinja2.exceptions import TemplateError

            try:
                text = self._chat_template().render(messages=msgs, add_generation_prompt=True, bos_token=self.bos, eos_token=self.eos,
                                                    **template_tools(prompt), **self.template_kwargs)
            except TemplateError as exc:  # the sandbox's SecurityError among them
                raise CotscopeError(f"the GGUF chat template failed: {exc}") from exc
        else:
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"
            text += " " if prompt.prefix and not prompt.prefix.startswith((" ", "\n")) else ""
        return text + prompt.prefix

    tool_chat = tool_chat  # one assistant turn with tools, through the GGUF's own template (see _tools)

    def encode(self, text: str) -> list[int]:
        add_bos = self.add_bos and not (self.bos and text.startswith(self.bos))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _text(self, tokens: Sequence[int]) -> str:
        return self.llm.detokenize(list(tokens), special=False).decode("utf-8", errors="replace")

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        return self.generate_each(prompts, [params] * len(prompts))

    @contextmanager
    def _timed(self, counter: str):
        """Add the block's wall time, in milliseconds, to the counter named `counter`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, counter, getattr(self, counter) + round((time.perf_counter() - t0) * 1000))

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        """Each row with its own budget, stop strings and sampling, in token order (see above)."""
        with self._timed("n_generate_ms"):
            all_ids = [self.encode(self.render(p)) for p in prompts]
            if not all(all_ids):
                raise CotscopeError("cannot generate after an empty prompt")
            keys = row_seeds(0, all_ids)  # a row's draws follow its prompt, not its place in the call
            if self.server is not None:
                from .llamaserver import generate

                return generate(self, all_ids, params, keys)
            out: list[Completion | None] = [None] * len(prompts)
            for i in sorted(range(len(prompts)), key=lambda i: all_ids[i]):
                out[i] = self._generate_row(all_ids[i], params[i], keys[i])
            return out  # type: ignore[return-value]

    def _room(self, ids: list[int]) -> int:
        room = self.n_ctx - len(ids)
        if room < 1:
            raise CotscopeError(f"llama.cpp: a prompt of {len(ids)} tokens does not fit a context of {self.n_ctx} KV cells; raise n_ctx")
        return room

    def _reuse(self, ids: list[int]) -> int:
        """How many of `ids` the context holds already (at most all but the last, whose logits are needed)."""
        held = self.llm.input_ids[: self.llm.n_tokens]
        reuse = min(common_prefix(held, ids), len(ids) - 1)
        self.n_prefill_tokens += len(ids) - reuse
        return reuse

    def _generate_row(self, ids: list[int], q: GenerationParams, key: int) -> Completion:
        budget = min(q.max_new_tokens, self._room(ids))
        if budget <= 0:
            return Completion("", len(ids), 0, "length", stop_hit=False)
        tail = max((self.count_tokens(s) for s in q.stop if s), default=0) + 2
        if q.temperature > 0:
            self.llm.set_seed(row_seed(q, key))
        self._reuse(ids)  # counted; `Llama.generate` reuses the same prefix
        new: list[int] = []
        stopped = False
        for token in self.llm.generate(ids, top_k=0, top_p=q.top_p, min_p=0.0, temp=max(q.temperature, 0.0), repeat_penalty=1.0):
            new.append(token)
            if self.L.llama_vocab_is_eog(self.vocab, token) or (q.stop and any(s in self._text(new[-tail:]) for s in q.stop if s)):
                stopped = True
                break
            if len(new) >= budget:
                break
        self.n_decode_row_steps += len(new) - 1
        out = decoded_completion(self._text(new), len(new), q, stopped, len(ids), self.count_tokens)
        self.n_generated_tokens += out.n_generated_tokens
        return out

    # -- scoring ---------------------------------------------------------------------------
    def _logprobs_after(self, ids: list[int]) -> np.ndarray:
        """Log-probabilities of the token after `ids`, evaluating only what the context lacks."""
        self._room(ids)
        self.llm.n_tokens = self._reuse(ids)  # `eval` drops the KV past n_tokens
        self.llm.eval(ids[self.llm.n_tokens :])
        logits = np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,)).astype(np.float64)
        z = logits - logits.max()
        return z - np.log(np.exp(z).sum())

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        with self._timed("n_score_ms"):
            out = []
            for p, conts in zip(prompts, continuations, strict=True):
                text = self.render(p)
                ctx = self.encode(text)
                if not ctx:
                    raise CotscopeError("cannot score after an empty prompt")
                row, first = [], None
                for c in conts:
                    full = self.encode(text + c)
                    if full[: len(ctx)] != ctx:  # the join merged tokens: score the parts separately
                        full = ctx + self.llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)
                    if len(full) == len(ctx):  # an empty continuation
                        row.append(0.0)
                        continue
                    first = self._logprobs_after(ctx) if first is None else first  # once for every candidate
                    row.append(float(first[full[len(ctx)]]) + sum(float(self._logprobs_after(full[:j])[full[j]]) for j in range(len(ctx) + 1, len(full))))
                out.append(row)
            return out

    def close(self) -> None:
        server, self.server = getattr(self, "server", None), None
        if server is not None:
            server.close()
        if getattr(self, "llm", None) is not None and hasattr(self.llm, "close"):
            self.llm.close()
            self.llm = None


@register_backend("llamacpp", check=_check)
def llamacpp_backend(rest: str, opts: dict[str, str]) -> Backend:
    if not settings(rest, opts)[0]["isolate"]:
        return LlamaCppBackend.load(rest, opts)
    from ._isolated import IsolatedBackend

    _check(rest, opts)  # a bad spec is named here, before a process starts
    return IsolatedBackend(f"llamacpp/{rest}", "cotscope.backends.llamacpp:_load_isolated", (rest, opts), engine="llama.cpp")


def _load_isolated(rest: str, opts: dict[str, str]) -> LlamaCppBackend:
    """What the engine's own process runs to load the model."""
    return LlamaCppBackend.load(rest, {k: v for k, v in opts.items() if k != "isolate"})
