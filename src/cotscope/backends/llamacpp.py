"""In-process llama.cpp: ``llamacpp/<path.gguf>`` (``pip install 'cotscope[llamacpp]'``).

A GGUF model runs quantized, as llama.cpp runs it, instead of dequantized as transformers
loads it. The chat template is the GGUF's own (``tokenizer.chat_template``).

Rows run side by side in one llama.cpp context: up to ``n_parallel`` rows (generations or
scorings), each on a sequence of one KV pool of ``n_ctx`` cells that all sequences share. A
step is one ``llama_decode`` over one batch: the next token of every generating row, then
prompt tokens of rows still reading their prompts (``n_batch`` tokens at most). A row that
ends leaves at the next step and a queued one takes its place (continuous batching; greedy
calls under lockstep go through `open_stream`, so rows of different calls share steps). A
sequence keeps its KV when its row ends, and a new row starts from the sequence that holds the
longest prefix of its tokens, shared by reference (``llama_memory_seq_cp``), not evaluated
again: the prompts of a truncation sweep, the continuations from each prefix and the forced
answers after them cost about one pass over the CoT. When the pool is full, the least
recently used idle sequence is dropped.

Options: ``n_ctx`` (KV cells, shared by all sequences; default 16384), ``n_parallel`` (rows at
once, default 16), ``n_batch`` (tokens per step, default 512), ``n_threads`` (default: the
cores this process may use), ``seed`` (default 0; sampled generations use their own seed),
``draft`` (default 0: the most draft tokens a greedy row runs after its next token, looked
up in text already read or written, see `_draft`; it keeps them up to the first token it
would not have chosen, so the text is greedy decoding's). Off by default: on a 2-core CPU a
llama.cpp step costs about the same per token however many rows it runs, so a draft token
saves no more than it costs when kept and wastes its cost when not (the embedded model's
default audit on 8 samples took 365.7 s with 4 against 261.9 s without; 33% of drafts kept).
Drafts pay where a step's cost is mostly reading the weights once (a GPU, a larger model).

Numbers depend a little on the step that computed each position's KV: llama.cpp's CPU
kernels round differently with the number of tokens in a step, and the KV is kept in float16.
On the embedded model, scores differed by up to 0.3 nats between a fresh backend and one whose
reused prefix had been computed in a step of another size (llama.cpp and transformers differ
by up to 0.5). Which rows share a step depends only on what was asked, so a rerun gives the
same numbers; a prefix reused as it was computed gives the same scores (a test checks, to 1e-3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._errors import CotscopeError, require
from ._draft import Drafter, RowIndex
from .base import Backend, Completion, GenerationParams, Prompt, common_prefix, decoded_completion, row_seeds
from .registry import register_backend

INSTALL = "pip install 'cotscope[llamacpp]'"
OPTIONS = ("n_ctx", "n_parallel", "n_batch", "n_threads", "seed", "draft")
DRAFT_TOKENS = 0  # the most draft tokens a greedy row runs a step (option draft), see _GenRow: none by default
DEFER_TOKENS = 16  # a row waits one step for a running row to evaluate a longer prefix it shares


def _check(rest: str, opts: dict[str, str]) -> None:
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
    unknown = set(opts) - set(OPTIONS)
    if unknown:
        raise CotscopeError(f"unknown options for llamacpp/{rest}: {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    for k, v in opts.items():
        if not v.isdigit():
            raise CotscopeError(f"option {k}={v!r} for llamacpp/{rest}: expected a whole number")
    for k in ("n_ctx", "n_parallel", "n_batch"):
        if k in opts and int(opts[k]) < 1:
            raise CotscopeError(f"option {k}={opts[k]} for llamacpp/{rest}: must be at least 1")
    require("llama_cpp", "llamacpp", INSTALL)


class _Seq:
    """A sequence of the KV pool and the tokens whose KV it holds, from position 0."""

    def __init__(self, seq_id: int) -> None:
        self.id = seq_id
        self.tokens: list[int] = []
        self.busy = False
        self.used = 0  # when a row last ran on it: the least recently used is dropped first
        self._arr: np.ndarray | None = None

    def arr(self) -> np.ndarray:
        """The tokens as an array (for `common_prefix`), rebuilt after they change."""
        if self._arr is None:
            self._arr = np.asarray(self.tokens, dtype=np.int64)
        return self._arr

    def cut(self, keep: int) -> None:
        del self.tokens[keep:]
        self._arr = None

    def extend(self, tokens: Sequence[int]) -> None:
        self.tokens.extend(tokens)
        self._arr = None


class _Row:
    """Tokens to have evaluated on a sequence, and what to do with the logits at positions from
    `read_from` on (`take`). A generation row appends the token it picks and goes on; a
    scoring row only reads."""

    def __init__(self, ids: list[int], read_from: int) -> None:
        self.ids = list(ids)
        self.start = np.asarray(ids, dtype=np.int64)  # the tokens it came with
        self.read_from = read_from
        self.n_prompt = len(ids)
        self.seq: _Seq | None = None
        self.n_done = 0  # tokens of `ids` in the sequence's KV
        self.finished = False

    def need(self) -> int:
        """KV cells the row may hold at its end (admission keeps the running rows within the pool)."""
        return len(self.ids)

    def take(self, backend: LlamaCppBackend, pos: int, logits: np.ndarray) -> None:
        raise NotImplementedError


class _GenRow(_Row):
    """A generating row. A greedy one may run a draft after its last token (`backends._draft`):
    its tokens are put after the row's own, each position's logits give the model's choice,
    and the row keeps the draft up to the first token it would not have chosen, plus that
    choice; the KV of the positions after it is dropped (`cut`)."""

    def __init__(self, ids: list[int], params: GenerationParams, tail: int, rng: np.random.Generator | None, key: tuple[int, int]) -> None:
        super().__init__(ids, len(ids) - 1)
        self.params, self.tail, self.rng, self.key = params, tail, rng, key
        self.new: list[int] = []
        self.completion: Completion | None = None
        self.draft: list[int] = []
        self.index = RowIndex()
        self.cut: int | None = None  # the first position whose KV no longer holds (a draft token not kept)

    def need(self) -> int:
        return self.n_prompt + self.params.max_new_tokens

    def propose(self, drafter: Drafter) -> int:
        """Put a draft after the row's last token, when it is greedy and decoding; its length."""
        if self.rng is not None or self.draft or len(self.ids) - self.n_done != 1:
            return 0
        self.draft = drafter.propose(self.ids, self.index, self.params.max_new_tokens - len(self.new) - 1)
        self.ids.extend(self.draft)
        return len(self.draft)

    def take(self, backend: LlamaCppBackend, pos: int, logits: np.ndarray) -> None:
        last = len(self.ids) - 1 - len(self.draft)  # the row's own last token; the draft follows
        if self.finished or self.cut is not None or pos < last:
            return
        if self.new:
            backend.n_decode_row_steps += 1  # one per token after the prompt pass's, as without drafts
        t = backend._pick(logits, self.params, self.rng)
        self.new.append(t)
        i = pos - last
        stopped = backend._ends(self.new, self.params.stop, self.tail)
        if stopped or len(self.new) >= self.params.max_new_tokens:
            self.completion = backend._completion(self.new, self.params, stopped, self.n_prompt)
            self.finished = True
        elif i < len(self.draft) and self.draft[i] == t:
            backend.n_draft_kept += 1
            return
        if pos + 1 < len(self.ids):
            self.cut = pos + 1
        del self.ids[pos + 1 :]
        self.draft = []
        if not self.finished:
            self.ids.append(t)


class _ScoreRow(_Row):
    """The summed log-probability of the tokens after position `read_from` (`targets`), or,
    with `choices`, the log-probability of each choice as the next token after the last one."""

    def __init__(self, ids: list[int], read_from: int, targets: list[int] | None = None, choices: list[int] | None = None) -> None:
        super().__init__(ids, read_from)
        self.targets, self.choices = targets, choices
        self.total = 0.0
        self.values: list[float] = []

    def take(self, backend: LlamaCppBackend, pos: int, logits: np.ndarray) -> None:
        x = logits.astype(np.float64)
        top = float(x.max())
        lse = top + math.log(float(np.exp(x - top).sum()))
        if self.choices is not None:
            self.values = [float(x[c]) - lse for c in self.choices]
        else:
            self.total += float(x[self.targets[pos + 1]]) - lse
        if pos == len(self.ids) - 1:
            self.finished = True


class LlamaCppBackend(Backend):
    """A GGUF model in this process through llama-cpp-python, rows batched over one KV pool."""

    def __init__(self, llm, n_ctx: int = 16384, n_parallel: int = 16, n_batch: int = 512, n_threads: int = 1, draft: int = DRAFT_TOKENS) -> None:
        import llama_cpp as L

        self.L, self.llm = L, llm
        self.n_ctx, self.n_parallel, self.n_batch = n_ctx, n_parallel, n_batch
        self.n_generated_tokens = self.n_prefill_tokens = self.n_decode_row_steps = 0
        self.drafter = Drafter(draft) if draft > 0 else None
        self.n_draft_tokens = self.n_draft_kept = 0  # draft tokens run, and kept
        self.precision = "llama.cpp, GGUF weights as stored"
        meta = getattr(llm, "metadata", {}) or {}
        self.template, self._template = meta.get("tokenizer.chat_template"), None
        self.bos = self._piece(llm.token_bos())
        self.eos = self._piece(llm.token_eos())
        self.add_bos = str(meta.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
        self.n_vocab = llm.n_vocab()
        model = llm._model.model
        self.vocab = L.llama_model_get_vocab(model)
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, n_batch, min(n_batch, 512)
        self.n_seq = min(4 * n_parallel, L.llama_max_parallel_sequences())  # idle sequences keep prefixes for later rows
        cp.n_seq_max, cp.kv_unified = self.n_seq, True
        cp.n_threads = cp.n_threads_batch = n_threads
        if hasattr(cp, "n_outputs_max_per_seq"):
            cp.n_outputs_max_per_seq = n_batch  # a scoring row reads several positions of one sequence
        self.ctx = L.llama_init_from_model(model, cp)
        if not self.ctx:
            raise CotscopeError(f"llama.cpp could not create a context of {n_ctx} KV cells; lower n_ctx")
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        self.seqs = [_Seq(i) for i in range(self.n_seq)]
        self.live: set[_Row] = set()  # rows running on a sequence, of every caller
        self.clock = 0
        import atexit

        # Free the context and model while the interpreter is whole: llama-cpp-python's own
        # finalizer, left to run at shutdown, fails on a half-torn-down module.
        atexit.register(self.close)

    @classmethod
    def load(cls, path: str, opts: dict[str, str] | None = None) -> LlamaCppBackend:
        opts = dict(opts or {})
        _check(path, opts)
        llama_cpp = require("llama_cpp", "llamacpp", INSTALL)
        from ._threads import available_cores

        threads = int(opts.get("n_threads", 0)) or available_cores()
        # This Llama holds the weights and the tokenizer; its own context stays tiny, since
        # the rows run in the backend's context.
        try:
            llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_batch=64, n_ubatch=64, n_threads=threads,
                                  seed=int(opts.get("seed", 0)), logits_all=False, verbose=False)
        except ValueError as exc:  # llama.cpp says only "Failed to load model from file"
            raise CotscopeError(f"llamacpp/{path}: llama.cpp could not load this GGUF file (cut short or damaged?): {exc}") from exc
        return cls(llm, n_ctx=int(opts.get("n_ctx", 16384)), n_parallel=int(opts.get("n_parallel", 16)),
                   n_batch=int(opts.get("n_batch", 512)), n_threads=threads, draft=int(opts.get("draft", DRAFT_TOKENS)))

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

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            try:
                self._template = env.from_string(self.template)
            except TemplateError as exc:
                raise CotscopeError(f"the GGUF chat template does not parse: {exc}") from exc
        return self._template

    def render(self, prompt: Prompt) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in prompt.messages]
        if self.template:
            from jinja2.exceptions import TemplateError

            try:
                text = self._chat_template().render(messages=msgs, add_generation_prompt=True, bos_token=self.bos, eos_token=self.eos)
            except TemplateError as exc:  # the sandbox's SecurityError among them
                raise CotscopeError(f"the GGUF chat template failed: {exc}") from exc
        else:
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"
            text += " " if prompt.prefix and not prompt.prefix.startswith((" ", "\n")) else ""
        return text + prompt.prefix

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

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        """All rows in one running batch, each with its own budget, stop strings and sampling."""
        stream = self.open_stream()
        stream.add(prompts, params)
        out: list[Completion] = []
        while stream.busy():
            for _, outs in stream.step():
                out = outs
        return out

    def open_stream(self) -> _LlamaStream:
        """Generation step by step in one running batch, which calls join and leave between
        steps (continuous batching; `backends.lockstep` drives it)."""
        return _LlamaStream(self)

    def _pick(self, logits: np.ndarray, params: GenerationParams, rng: np.random.Generator | None) -> int:
        if rng is None:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / params.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        if params.top_p < 1.0:
            order = np.argsort(-p)
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), params.top_p)) + 1]
            return int(rng.choice(keep, p=p[keep] / p[keep].sum()))
        return int(rng.choice(len(p), p=p))

    def _stop_tail(self, stop: tuple[str, ...]) -> int:
        """How many of a row's last tokens are decoded again to look for a stop string."""
        return max((self.count_tokens(s) for s in stop if s), default=0) + 2

    def _ends(self, new: list[int], stop: tuple[str, ...], tail: int) -> bool:
        """Whether a row ends at its last token: an end token, or a stop string in its tail."""
        if self.L.llama_vocab_is_eog(self.vocab, new[-1]):
            return True
        return bool(stop) and any(s in self._text(new[-tail:]) for s in stop if s)

    def _completion(self, new: list[int], params: GenerationParams, stopped: bool, n_prompt: int) -> Completion:
        out = decoded_completion(self._text(new), len(new), params, stopped, n_prompt, self.count_tokens)
        self.n_generated_tokens += out.n_generated_tokens
        return out

    # -- the shared engine -----------------------------------------------------------------
    def _admit(self, running: list[_Row], queue: list[_Row]) -> None:
        """Move queued rows onto free sequences while fewer than `n_parallel` run and their
        KV fits the pool, each starting from the sequence holding the longest prefix of its
        tokens. A row that shares a longer prefix with a running row, not yet evaluated there,
        waits for it."""
        load = sum(r.need() for r in self.live)  # every caller's running rows share the pool
        i = 0
        while i < len(queue) and len(running) < self.n_parallel:
            free = [s for s in self.seqs if not s.busy]
            row = queue[i]
            if not free or (running and load + row.need() > self.n_ctx):
                return
            best, n = None, 0
            for s in self.seqs:
                if s.tokens and (k := common_prefix(s.arr(), row.start)) > n:
                    best, n = s, k
            if any(common_prefix(r.start, row.start) > n + DEFER_TOKENS for r in running):
                i += 1
                continue
            start = min(n, row.read_from)  # the positions it reads are evaluated again
            seq = min(free, key=lambda s: (bool(s.tokens), s.used))  # an empty one, else the least recently used
            if seq is best:
                self._drop(seq, start)
            else:
                self._drop(seq, 0)
                if start:
                    self.L.llama_memory_seq_cp(self.mem, best.id, seq.id, 0, start)
                    seq.extend(row.ids[:start])
            self.clock += 1
            seq.busy, seq.used = True, self.clock
            row.seq, row.n_done = seq, start
            running.append(row)
            self.live.add(row)
            queue.pop(i)
            load += row.need()

    def _drop(self, seq: _Seq, keep: int) -> None:
        """Forget a sequence's KV from position `keep` on."""
        self.L.llama_memory_seq_rm(self.mem, seq.id, keep, -1)
        seq.cut(keep)

    def _step(self, running: list[_Row]) -> list[_Row]:
        """One llama_decode over the running rows (generating rows' next tokens first, then
        prompt tokens); hand each row its logits; return the rows that finished, their
        sequences freed."""
        plan: list[tuple[_Row, int]] = []  # (row, tokens it runs)
        room = self.n_batch
        if self.drafter is not None:
            for r in running:
                if isinstance(r, _GenRow):
                    self.n_draft_tokens += r.propose(self.drafter)
        for r in sorted(running, key=lambda r: len(r.ids) - r.n_done):
            k = min(len(r.ids) - r.n_done, room)
            if k <= 0:
                break
            plan.append((r, k))
            room -= k
        self._run(plan)
        done = [r for r in running if r.finished]
        for r in done:
            if isinstance(r, _GenRow) and self.drafter is not None:
                self.drafter.learn(r.ids[: r.n_prompt] + r.new)
        for r in done:
            running.remove(r)
            self.live.discard(r)
            r.seq.busy = False
        return done

    def _run(self, plan: list[tuple[_Row, int]]) -> None:
        """Decode the planned tokens and hand each row its logits. When the pool cannot hold
        them even after idle sequences are dropped, the rows run in two halves (and fewer rows
        are admitted from then on); one row that does not fit is a named error."""
        L, batch = self.L, self.batch
        n, reads = 0, []
        for r, k in plan:
            for pos in range(r.n_done, r.n_done + k):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = r.ids[pos], pos, 1
                batch.seq_id[n][0] = r.seq.id
                batch.logits[n] = pos >= r.read_from
                if pos >= r.read_from:
                    reads.append((n, r, pos))
                n += 1
        batch.n_tokens = n
        if not self._decode(plan):
            half = len(plan) // 2
            self.n_parallel = max(1, min(self.n_parallel, half))
            self._run(plan[:half])
            self._run(plan[half:])
            return
        for r, k in plan:
            self.n_prefill_tokens += max(0, min(r.n_done + k, r.n_prompt) - r.n_done)
            r.seq.extend(r.ids[r.n_done : r.n_done + k])
            r.n_done += k
        for i, r, pos in reads:
            logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
            r.take(self, pos, logits)
        for r, _ in plan:
            if isinstance(r, _GenRow) and r.cut is not None:  # a draft token not kept, and what came after it
                self._drop(r.seq, r.cut)
                r.n_done, r.cut = r.cut, None

    def _decode(self, plan: list[tuple[_Row, int]]) -> bool:
        """llama_decode the batch; when the pool is full, drop idle sequences' KV and retry.
        False when it is still full with nothing idle and the batch has rows to split."""
        while True:
            rc = self.L.llama_decode(self.ctx, self.batch)
            if rc == 0:
                return True
            for r, _ in plan:  # on failure llama.cpp restores the pool; make sure of it
                self.L.llama_memory_seq_rm(self.mem, r.seq.id, r.n_done, -1)
            idle = [s for s in self.seqs if not s.busy and s.tokens]
            if rc == 1 and not idle and len(plan) > 1:
                return False
            if rc != 1 or not idle:
                why = "the KV pool is full" if rc == 1 else f"error code {rc}"
                raise CotscopeError(f"llama.cpp decode failed ({why}; {len(plan)} rows running, n_ctx={self.n_ctx}): raise n_ctx or lower n_parallel")
            self._drop(min(idle, key=lambda s: s.used), 0)

    def _release(self, rows: Sequence[_Row]) -> None:
        for r in rows:
            self.live.discard(r)
            if r.seq is not None:
                self._drop(r.seq, r.n_done)
                r.seq.busy = False

    # -- scoring ---------------------------------------------------------------------------
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        rows: list[_ScoreRow] = []
        owners: list[list[tuple[_ScoreRow | None, int]]] = []  # per prompt, per candidate: (row, index in its choices)
        for p, conts in zip(prompts, continuations, strict=True):
            text = self.render(p)
            ctx = self.encode(text)
            if not ctx:
                raise CotscopeError("cannot score after an empty prompt")
            fulls = []
            for c in conts:
                full = self.encode(text + c)
                if full[: len(ctx)] != ctx:  # the join merged tokens: score the parts separately
                    full = ctx + self.llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)
                fulls.append(full)
            if conts and all(len(f) == len(ctx) + 1 for f in fulls):  # one-token candidates: one row reads them all
                row = _ScoreRow(ctx, len(ctx) - 1, choices=[f[-1] for f in fulls])
                rows.append(row)
                owners.append([(row, j) for j in range(len(fulls))])
                continue
            mine = []
            for f in fulls:
                if len(f) == len(ctx):  # an empty continuation
                    mine.append((None, 0))
                    continue
                row = _ScoreRow(f[:-1], len(ctx) - 1, targets=f)
                rows.append(row)
                mine.append((row, -1))
            owners.append(mine)
        queue: list[_Row] = list(rows)
        running: list[_Row] = []
        try:
            while queue or running:
                self._admit(running, queue)
                if not running:
                    raise CotscopeError(f"llama.cpp: no free sequence for scoring ({self.n_seq} in use)")
                self._step(running)
        except BaseException:
            self._release(running)
            raise
        return [[0.0 if r is None else (r.total if j < 0 else r.values[j]) for r, j in mine] for mine in owners]

    def close(self) -> None:
        if getattr(self, "ctx", None) is not None:
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "llm", None) is not None and hasattr(self.llm, "close"):
            self.llm.close()
            self.llm = None


class _LlamaStream:
    """Calls' generation rows in the backend's running batch: `add` queues a call's rows,
    `step` runs one step and returns the calls whose rows have all ended."""

    def __init__(self, backend: LlamaCppBackend) -> None:
        self.b = backend
        self.queue: list[_Row] = []
        self.rows: list[_Row] = []
        self.tickets: dict[int, list[Completion | None]] = {}
        self.n_tickets = 0

    def add(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> int:
        ticket, self.n_tickets = self.n_tickets, self.n_tickets + 1
        outs: list[Completion | None] = [None] * len(prompts)
        self.tickets[ticket] = outs
        all_ids = [self.b.encode(self.b.render(p)) for p in prompts]
        if not all(all_ids):
            raise CotscopeError("cannot generate after an empty prompt")
        keys = row_seeds(0, all_ids)  # a row's draws follow its prompt, not its place in the call
        for i, (ids, q) in enumerate(zip(all_ids, params, strict=True)):
            if q.max_new_tokens <= 0:
                outs[i] = Completion("", len(ids), 0, "length")
                continue
            rng = np.random.default_rng([q.seed, keys[i]]) if q.temperature > 0 else None
            self.queue.append(_GenRow(ids, q, self.b._stop_tail(q.stop), rng, (ticket, i)))
        return ticket

    def busy(self) -> bool:
        return bool(self.tickets)

    def reset(self) -> None:
        self.b._release(self.rows)
        self.queue, self.rows, self.tickets = [], [], {}

    def step(self) -> list[tuple[int, list[Completion]]]:
        if self.queue or self.rows:
            self.b._admit(self.rows, self.queue)
            try:
                ended = self.b._step(self.rows) if self.rows else []
            except BaseException:
                self.reset()
                raise
            for r in ended:
                ticket, i = r.key
                self.tickets[ticket][i] = r.completion
        done = [t for t, outs in self.tickets.items() if all(o is not None for o in outs)]
        return [(t, self.tickets.pop(t)) for t in done]  # type: ignore[misc]


@register_backend("llamacpp", check=_check)
def llamacpp_backend(rest: str, opts: dict[str, str]) -> Backend:
    return LlamaCppBackend.load(rest, opts)
