"""The one abstraction over model access: generate text, score continuations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._errors import CotscopeError
from .._options import parse_options
from ..trace import Message, ToolCall


@dataclass(frozen=True)
class Prompt:
    """A chat conversation and, optionally, assistant text the model continues from.

    The backend renders `messages` with the model's chat template, opens the assistant turn,
    and appends `prefix` verbatim: generation and scoring both start right after it. `tools`
    (JSON text of OpenAI-style function schemas) goes to templates that render tools.
    """

    messages: tuple[Message, ...]
    prefix: str = ""
    tools: str = ""

    @classmethod
    def chat(cls, user: str, system: str | None = None, prefix: str = "") -> "Prompt":
        msgs = ((Message("system", system),) if system else ()) + (Message("user", user),)
        return cls(messages=msgs, prefix=prefix)

    def with_prefix(self, prefix: str) -> "Prompt":
        return Prompt(messages=self.messages, prefix=prefix, tools=self.tools)


@dataclass(frozen=True)
class Then:
    """An answer forced right after a generation, asked for with it (`GenerationParams.then`).

    `ask` takes the generation's completion and gives the answer's prompt, its decoding settings,
    and how the answer's completion reads to the caller (a provider's edge may rewrite it). A
    provider that decodes it in the generation's own row, while that row's KV is live
    (`answers_in_row`), attaches the result as `Completion.answer`; any other leaves it out, and
    the caller asks for the answer as a call of its own. Either way the answer's prompt is the
    one the caller would have sent, so its text is the same greedy text.
    """

    ask: Callable[["Completion"], tuple[Prompt, "GenerationParams", Callable[["Completion"], "Completion"]]]


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings. `temperature=0` means greedy. `then`: an answer to force after the
    generation (see `Then`); `keep`: whether a provider that keeps KV between calls may keep this
    generation's for a later prompt that goes on from its text (a forced answer's is read by
    nothing). Neither takes part in comparisons: a call's cache key is its prompt and the rest."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    then: Then | None = field(default=None, compare=False, repr=False)
    keep: bool = field(default=True, compare=False, repr=False)


@dataclass(frozen=True)
class Completion:
    text: str
    n_prompt_tokens: int
    n_generated_tokens: int
    finish_reason: str = "stop"  # "stop" | "length"
    reasoning: str | None = None  # thinking the provider returned apart from the text (reasoning_content)
    shown: str = "full"  # how much of that thinking it gave: "full", "summary" or "redacted" (nothing readable)
    # Sum of the log-probabilities the model gave the tokens that wrote `text` as it generated
    # them (its raw distribution: temperature 1, no nucleus), and how many tokens that is; None
    # where the provider does not report them, or the text is not what the model generated.
    # Rounding differs with what shares a batch, so two completions compare by their text.
    logprob: float | None = field(default=None, compare=False)
    n_logprob_tokens: int = 0
    # Whether the text was cut at one of its stop strings (True), or ended another way: the
    # model's end token or the budget (False); None where the provider does not say which
    # (an OpenAI-compatible server other than vLLM). A thinking block's stop is its close tag.
    stop_hit: bool | None = field(default=None, compare=False)
    # The answer forced after this text in the same row, where the call asked for one
    # (`GenerationParams.then`) and the provider decoded it; None otherwise.
    answer: "Completion | None" = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ToolTurn:
    """One assistant turn through a provider's own tool-calling interface (a backend with a
    ``tool_chat(messages, tools, params)`` method): its text and the calls it made."""

    text: str
    calls: tuple[ToolCall, ...] = ()
    n_prompt_tokens: int = 0
    n_generated_tokens: int = 0
    finish_reason: str = "stop"


class Backend(ABC):
    """Model access. Subclasses implement `generate`, `score` and `count_tokens`."""

    spec: str = "?"

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """Generate one completion per prompt, continuing after each prompt's prefix."""

    def generate_each(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> list[Completion]:
        """One completion per prompt, each under its own params. This default makes one
        `generate` call per distinct params; a provider that decodes rows with different
        token budgets in one batch overrides it."""
        out: list[Completion | None] = [None] * len(prompts)
        for p in dict.fromkeys(params):
            idx = [i for i, q in enumerate(params) if q == p]
            for i, c in zip(idx, self.generate([prompts[i] for i in idx], p), strict=True):
                out[i] = c
        return out  # type: ignore[return-value]

    @abstractmethod
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Sum of log-probabilities of each candidate continuation right after each prompt.

        Returns:
            One list per prompt, one float per candidate, in the order given.
        """

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text` under the model's tokenizer (no special tokens)."""

    def forget(self) -> None:  # noqa: B027 - optional hook
        """Drop what earlier calls left that later calls would reuse (stored KV, draft tables), so
        that what comes next is computed as in a fresh process."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, memory). Safe to call twice."""


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; return the kept text and whether a stop hit."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def decoded_completion(text: str, n_tokens: int, params: GenerationParams, stopped: bool, n_prompt: int, count_tokens) -> Completion:
    """The completion of a row a local backend decoded: its `n_tokens` tokens as `text`, cut at
    the earliest stop string (then counted again with `count_tokens`: tokens past a stop string
    are not part of the answer). `stopped`: the row ended on an end token or a stop string, not
    on its budget."""
    text, hit = cut_at_stop(text, params.stop)
    n_new = count_tokens(text) if hit else n_tokens
    return Completion(text, n_prompt, n_new, "stop" if hit or stopped else "length", stop_hit=hit)


def written_logprob(new: Sequence[int], logprobs: Sequence[float], text: str, decode) -> tuple[float, int]:
    """The log-probability of the leading tokens of `new` that write `text` (a completion cut at
    a stop string keeps fewer than it decoded; an end token writes nothing): the fewest whose
    decoding (`decode`) is at least as long as `text`. Their sum, and how many."""
    lo, hi = 0, len(new)
    while lo < hi:  # decoded length grows with the tokens decoded
        mid = (lo + hi) // 2
        if len(decode(new[:mid])) >= len(text):
            hi = mid
        else:
            lo = mid + 1
    return float(sum(logprobs[:lo])), lo


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences (lists or integer arrays)."""
    m = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:m]) != np.asarray(b[:m]))
    return int(diff[0]) if len(diff) else m


def row_seeds(seed: int, rows: Sequence[Sequence[int]]) -> list[int]:
    """One sampling seed per row of a call: from the call's seed, the row's prompt tokens and how
    many rows before it in the call have the same prompt (N samples of one prompt draw apart).
    A row's draws then depend on what it is, not on where or beside what it runs."""
    import hashlib

    seen: dict[tuple[int, ...], int] = {}
    out = []
    for ids in rows:
        key = tuple(ids)
        k = seen.get(key, 0)
        seen[key] = k + 1
        digest = hashlib.blake2b(f"{seed}:{k}:{','.join(map(str, key))}".encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little") & (2**63 - 1))
    return out


TEMPLATE_OPTIONS = ("enable_thinking", "reasoning_effort")  # passed to a model's own chat template (Qwen3, gpt-oss)


def row_seed(q: GenerationParams, key: int) -> int:
    """A sampler seed (llama.cpp's) for a sampled row: from the call's seed and the row's own key
    (`row_seeds`), so a row draws the same whichever decoder runs it, wherever it sits in a call."""
    return int(np.random.default_rng([q.seed, key]).integers(2**31 - 1))


def spec_settings(signature: Callable[..., dict], opts: dict[str, str], where: str, least: dict[str, float] | None = None) -> tuple[dict, dict]:
    """A backend spec's options, typed and checked: (its settings, the chat template's options).

    `signature` is a function whose keyword parameters, with their types and defaults, are the
    backend's options, and which returns them as a dict; `least` gives the smallest value each
    numeric option may take. The chat-template options (`template_kwargs`) are read apart.
    """
    opts = dict(opts)
    template = template_kwargs(opts, where)
    got = signature(**parse_options(signature, opts, where, also=TEMPLATE_OPTIONS))
    for k, bound in (least or {}).items():
        if got[k] is not None and got[k] < bound:  # None: the default, chosen later
            raise CotscopeError(f"option {k}={got[k]} for {where}: must be " + ("0 or more" if bound == 0 else f"at least {bound}"))
    return got, template


def template_kwargs(opts: dict[str, str], where: str) -> dict:
    """Pop the chat-template options from `opts`: ``enable_thinking`` (true/false, Qwen3-style
    templates) and ``reasoning_effort`` (low/medium/high, gpt-oss), as the template reads them."""
    out: dict = {}
    if "enable_thinking" in opts:
        value = opts.pop("enable_thinking").lower()
        if value not in ("true", "false", "1", "0"):
            raise CotscopeError(f"option enable_thinking={value!r} for {where}: expected true or false")
        out["enable_thinking"] = value in ("true", "1")
    if "reasoning_effort" in opts:
        value = opts.pop("reasoning_effort").lower()
        if value not in ("low", "medium", "high"):
            raise CotscopeError(f"option reasoning_effort={value!r} for {where}: expected low, medium or high")
        out["reasoning_effort"] = value
    return out
