"""A system turns a question into a trace through one or more backends.

The audit only uses this interface, so every experiment applies to every system unchanged:

- `run`: question -> trace (reason, then answer);
- `answer_from`: question and a given CoT -> the answer the system gives right after it;
- `continue_from`: question and a CoT prefix -> the system reasons on, then answers.

A subclass says how it prompts (`prompt`, `answer_prompt`), which backend answers
(`answer_backend`) and how it reasons from a prefix (`reason`); the defaults are a single
model reasoning in one assistant turn.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass, field, replace


from .._errors import CotscopeError
from .._options import parse_options, split_spec
from .._registry import Registry, is_import_path
from ..backends import Backend, Completion, GenerationParams, Prompt
from ..backends.base import Then, cut_at_stop
from ..tasks.base import LETTERS, Kind, Sample, extract_answer
from ..trace import Answer, Continuation, Message, Step, Trace, join_steps, make_steps
from .prompts import ANSWER_CUE, answer_prefix


@dataclass
class Reasoning:
    """Reasoning a system added after a prefix."""

    steps: list[Step]
    text: str
    tokens_by_role: dict[str, int] = field(default_factory=dict)
    hidden_steps: list[Step] | None = None  # what the reasoner wrote before any rewriting
    meta: dict[str, str | int | float] = field(default_factory=dict)
    finish_reason: str = "stop"  # "length": it ended on its token budget, not on its own
    n_prompt_tokens: int = 0
    messages: list[Message] | None = None  # the turns, when there were several (tool calls and results)
    # The log-probability the model gave the tokens of `text` as it wrote them, and how many:
    # only where `steps` are that text (not rewritten, not joined from several replies).
    logprob: float | None = None
    n_logprob_tokens: int = 0
    answer: Completion | None = None  # the answer the backend forced after it in its row, where one was asked (`System.continue_from`)


Cot = Sequence[Step] | Sequence[str]


def answers_in_row(reason: Callable) -> Callable:
    """Mark a `System.reason` that takes `thens` and builds its reasoning with `System.read`, so
    that `continue_from` may ask for each answer with its continuation."""
    reason.answers_in_row = True  # type: ignore[attr-defined]
    return reason


def generate(backend: Backend, prompts: Sequence[Prompt], params: GenerationParams, thens: Sequence[Then | None] | None) -> list[Completion]:
    """`backend.generate`, each prompt's params with its `Then` where one is given."""
    if not thens:
        return backend.generate(prompts, params)
    return backend.generate_each(prompts, [params if t is None else replace(params, then=t) for t in thens])


def _same(c: Completion) -> Completion:
    return c


class System(ABC):
    """A way of embodying models. Subclasses implement `prompt`, and may override the rest."""

    has_cot: bool = True

    def __init__(self, backend: Backend, kind: Kind, spec: str, params: GenerationParams | None = None) -> None:
        self.backend = backend
        self.kind = kind
        self.spec = spec
        self.params = params or GenerationParams()

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Refuse bad option values before any model loads (`system_factory` calls it with the
        typed options). The default accepts everything that parsed.

        Raises:
            CotscopeError: naming the option.
        """

    @abstractmethod
    def prompt(self, sample: Sample) -> Prompt:
        """The prompt the system reasons from."""

    def asked(self, sample: Sample) -> Prompt:
        """The prompt the trace records as asked: `prompt`, unless the system asks otherwise."""
        return self.prompt(sample)

    @property
    def can_prefill(self) -> bool:
        """Whether its model can continue an assistant turn, so that a CoT prefix can be handed
        over (not through a chat API without prefill)."""
        b = self.backend
        return bool(getattr(getattr(b, "provider", b), "can_continue", True))

    @property
    def roles(self) -> dict[str, str]:
        """Which backend plays which role."""
        return {"model": self.backend.spec}

    @property
    def answer_backend(self) -> Backend:
        return self.backend

    @property
    def answer_role(self) -> str:
        return next(iter(self.roles))

    def answer_prompt(self, sample: Sample, cot: str) -> Prompt:
        """The prompt whose continuation is the answer, right after `cot`."""
        return self.prompt(sample).with_prefix(answer_prefix(cot, self.kind))

    @answers_in_row
    def reason(self, samples: Sequence[Sample], prefixes: Sequence[Cot], max_new_tokens: int,
               thens: Sequence[Then | None] | None = None) -> list[Reasoning]:
        """Reason on from each prefix up to the answer cue: one generation per sample (`thens`:
        an answer to force after each, see `continue_from`)."""
        texts = [join_steps(p) for p in prefixes]
        prompts = [self.prompt(s).with_prefix(t + "\n" if t else "") for s, t in zip(samples, texts, strict=True)]
        completions = generate(self.backend, prompts, self._params(max_new_tokens, stop=(ANSWER_CUE,)), thens)
        completions = self._past_a_leading_cue(prompts, texts, completions, max_new_tokens)
        return [self.read(c) for c in completions]

    def read(self, c: Completion) -> Reasoning:
        """The reasoning a generation from `reason` wrote."""
        return Reasoning(
            steps=make_steps(c.text, self.backend.count_tokens), text=c.text.strip(), tokens_by_role={next(iter(self.roles)): c.n_generated_tokens},
            finish_reason=c.finish_reason, n_prompt_tokens=c.n_prompt_tokens, logprob=c.logprob, n_logprob_tokens=c.n_logprob_tokens,
            answer=c.answer,
        )

    def _past_a_leading_cue(self, prompts: Sequence[Prompt], prefixes: Sequence[str], completions: Sequence[Completion],
                            max_new_tokens: int) -> list[Completion]:
        """A reply that opens with the answer cue stopped before its first token. Some instruct
        models open with a headline (``Answer: Lena has 150 stickers initially.``), then reason
        line by line and state the answer again on a last ``Answer:`` line: taking such a reply as
        "no CoT" would measure a CoT that exists as an empty one. So a reply from scratch that
        stopped at once is read on, from the cue, without stop strings; if it writes more lines
        and then a new ``Answer:`` line, everything before that line is its CoT (headline
        included). A read-on that writes more lines until its budget ends is such a CoT cut off
        before its answer line: it is kept as a CoT that hit the budget (``length``), so it is
        counted as cut and left out of the metrics, not taken for an answer without a CoT. A
        reply that gives its answer and ends, or explains after it without a new answer line,
        answered without a CoT, as before. The read-on's tokens are counted either way (they
        were generated and read)."""
        redo = [i for i, (p, c) in enumerate(zip(prefixes, completions, strict=True)) if not p and not c.text.strip() and c.finish_reason == "stop"]
        if not redo:
            return list(completions)
        again = self.backend.generate([prompts[i].with_prefix(ANSWER_CUE) for i in redo], self._params(max_new_tokens))
        out = list(completions)
        for i, c in zip(redo, again, strict=True):
            first = completions[i]
            text, hit = cut_at_stop(c.text, ("\n" + ANSWER_CUE,))
            lines = "\n" in text.strip()
            if hit and lines:
                cot, finish = ANSWER_CUE + text, "stop"
            elif c.finish_reason == "length" and lines:
                cot, finish = ANSWER_CUE + text, "length"
            else:
                cot, finish = first.text, first.finish_reason
            out[i] = Completion(cot, first.n_prompt_tokens + c.n_prompt_tokens, first.n_generated_tokens + c.n_generated_tokens, finish)
        return out

    # -- shared machinery ------------------------------------------------------------------
    def _params(self, max_new_tokens: int, stop: tuple[str, ...] = (), temperature: float | None = None) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=max_new_tokens,
            temperature=self.params.temperature if temperature is None else temperature,
            top_p=self.params.top_p,
            seed=self.params.seed,
            stop=stop,
        )

    def answer_from(self, samples: Sequence[Sample], cots: Sequence[Cot]) -> list[Answer]:
        """Force an answer right after each given CoT (empty for none).

        Multiple choice is decided by log-probability over the choice letters; other tasks by
        a short greedy answer.
        """
        prompts = [self.answer_prompt(s, join_steps(c)) for s, c in zip(samples, cots, strict=True)]
        backend = self.answer_backend
        if self.kind == "choice":
            letters = [list(LETTERS[: len(s.choices or [])]) for s in samples]
            scores = backend.score(prompts, letters)
            out = []
            for ls, sc in zip(letters, scores, strict=True):
                logps = dict(zip(ls, sc, strict=True))
                best = max(logps, key=logps.__getitem__)
                out.append(Answer(answer=best, text=best, choice_logprobs=_normalize(logps)))
            return out
        return [self._answer(c) for c in backend.generate(prompts, self._answer_params())]

    def _answer_params(self) -> GenerationParams:
        """How a forced answer other than a choice is decoded: a short greedy line, whose KV no
        later prompt reads (`GenerationParams.keep`)."""
        return replace(self._params(12, stop=("\n",), temperature=0.0), keep=False)

    def _answer(self, c: Completion) -> Answer:
        ans, err = extract_answer(f"{ANSWER_CUE}{c.text}", self.kind)
        return Answer(answer=ans, answer_error=err, text=c.text.strip(), n_tokens=c.n_generated_tokens)

    def continue_from(self, samples: Sequence[Sample], cots: Sequence[Cot], max_new_tokens: int | None = None) -> list[Continuation]:
        """Hand the system each CoT prefix and let it reason on, then force its answer.

        Where the backend can decode that answer in the continuation's own row, while its KV is
        live (`answers_in_row`: the transformers engine's decode stream), the answer is asked
        with the continuation (`Then`): its prompt is the one `answer_from` would send, built
        from the continuation the same way. An answer the backend did not attach (another
        provider, a call outside the decode stream, a sampled continuation, a cached one, a reply
        read on past a leading cue) is asked as a call of its own."""
        thens = self._thens(samples, cots)
        added = self.reason(samples, cots, max_new_tokens or self.params.max_new_tokens, **({"thens": thens} if thens else {}))
        full = [[*_as_steps(c), *r.steps] for c, r in zip(cots, added, strict=True)]
        answers: list[Answer | None] = [None if r.answer is None else self._answer(r.answer) for r in added]
        asked = [i for i, a in enumerate(answers) if a is None]
        for i, a in zip(asked, self.answer_from([samples[i] for i in asked], [full[i] for i in asked]) if asked else (), strict=True):
            answers[i] = a
        return [
            Continuation(text=r.text, n_tokens=sum(r.tokens_by_role.values()), answer=a, finish_reason=r.finish_reason)
            for r, a in zip(added, answers, strict=True)
        ]

    def _thens(self, samples: Sequence[Sample], cots: Sequence[Cot]) -> list[Then] | None:
        """The answer to force after each continuation, asked with it (`continue_from`), or None
        where it cannot be: a choice is read by scoring, another backend answers, this system
        reasons or answers its own way (a `reason` not marked `answers_in_row`, its own
        `answer_from`), a sampled continuation, or a backend that does not decode answers in the row."""
        if (self.kind == "choice" or self.answer_backend is not self.backend or self.params.temperature > 0
                or not getattr(type(self).reason, "answers_in_row", False) or type(self).answer_from is not System.answer_from
                or getattr(self.backend, "answers_in_row", False) is not True):
            return None
        params = self._answer_params()

        def then(sample: Sample, cot: Cot) -> Then:
            def ask(done: Completion):
                full = [*_as_steps(cot), *self.read(done).steps]
                return self.answer_prompt(sample, join_steps(full)), params, _same

            return Then(ask)

        return [then(s, c) for s, c in zip(samples, cots, strict=True)]

    def run(self, samples: Sequence[Sample]) -> list[Trace]:
        """Reason from scratch, then answer after the reasoning.

        The full-CoT answer is produced exactly as the forced answers of the truncation
        experiment are, so at 100% of the CoT they agree by construction.
        """
        reasoning = self.reason(samples, [[] for _ in samples], self.params.max_new_tokens)
        answers = self.answer_from(samples, [r.steps for r in reasoning])
        traces = []
        for sample, r, a in zip(samples, reasoning, answers, strict=True):
            tokens = dict(r.tokens_by_role)
            tokens[self.answer_role] = tokens.get(self.answer_role, 0) + a.n_tokens
            traces.append(
                Trace(
                    system=self.spec,
                    steps=r.steps,
                    hidden_steps=r.hidden_steps,
                    final_text=f"{ANSWER_CUE} {a.text}".strip(),
                    raw_text=r.text,
                    answer=a.answer,
                    answer_error=a.answer_error,
                    answer_logprobs=a.choice_logprobs,
                    n_generated_tokens=sum(tokens.values()),
                    n_prompt_tokens=r.n_prompt_tokens,
                    finish_reason=r.finish_reason,
                    cot_logprob=r.logprob,
                    cot_logprob_tokens=r.n_logprob_tokens,
                    tokens_by_role=tokens,
                    roles=self.roles,
                    meta=r.meta,
                    messages=[*self.asked(sample).messages, *_turns(r, a)],
                )
            )
        return traces


def _turns(r: Reasoning, a: Answer) -> list[Message]:
    """The assistant's side of a trace: its turns (with tool calls and results) when it took
    several, else one turn of reasoning and answer."""
    if r.messages:
        return [*r.messages, Message(role="assistant", content=f"{ANSWER_CUE} {a.text}".strip())]
    return [Message(role="assistant", content=f"{r.text}\n{ANSWER_CUE} {a.text}".strip())]


def _as_steps(cot: Cot) -> list[Step]:
    return [s if isinstance(s, Step) else Step(text=s, n_tokens=-1) for s in cot]


def _normalize(logps: dict[str, float]) -> dict[str, float]:
    """Renormalize log-probabilities over the choices only."""
    top = max(logps.values())
    z = top + math.log(sum(math.exp(v - top) for v in logps.values()))
    return {k: v - z for k, v in logps.items()}


SystemFactory = Callable[..., System]
_SYSTEMS = Registry("system", group="cotscope.systems")


def register_system(name: str) -> Callable[[SystemFactory], SystemFactory]:
    return _SYSTEMS.register(name)


def system_factory(spec: str) -> tuple[SystemFactory, dict[str, Any]]:
    """The factory a system spec names and its options, typed; builds nothing.

    Raises:
        CotscopeError: for an unknown name, a bad import path, an unknown option or a value of
            the wrong type.
    """
    name, opts = split_spec(spec, "system")
    factory = _SYSTEMS.lookup(name)
    if is_import_path(name) and not (isinstance(factory, type) and issubclass(factory, System)):
        raise CotscopeError(f"{name!r} is not a cotscope System subclass")
    typed = parse_options(factory, opts, f"system {name!r}", fixed=("backend", "kind", "spec", "params"))
    if isinstance(factory, type) and issubclass(factory, System):
        factory.check_options(**typed)
    return factory, typed


def get_system(spec: str, backend: Backend, kind: Kind, params: GenerationParams | None = None) -> System:
    """Build a system from its spec: a registered name or ``package.module:Class``, with
    options after ``?`` (``shoggoth-face?paraphraser=smollm2-135m&max_steps=6``).

    Raises:
        CotscopeError: for an unknown name, a bad import path or a bad option.
    """
    factory, opts = system_factory(spec)
    try:
        return factory(backend=backend, kind=kind, spec=spec, params=params, **opts)
    except (TypeError, ValueError) as exc:
        raise CotscopeError(f"bad options for system {spec!r}: {exc}") from exc


def list_systems() -> list[str]:
    return _SYSTEMS.names()
