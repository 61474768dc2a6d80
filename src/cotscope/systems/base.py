"""A system turns a question into a trace through one or more backends.

The audit only uses this interface: `run` (question -> trace), `answer_from` (question and a
given CoT -> forced answer) and `continue_from` (question and a CoT prefix -> the system
reasons on and answers), so every experiment applies to every system unchanged.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

from .._errors import CotscopeError
from ..backends import Backend, GenerationParams, Prompt
from ..tasks.base import LETTERS, Kind, Sample, extract_answer
from ..trace import Step, Trace, join_steps, make_steps
from .prompts import ANSWER_CUE, answer_prefix


class Answer(BaseModel):
    """A forced answer given a CoT."""

    answer: str | None = Field(description="Parsed answer, None if none parsed.")
    answer_error: str | None = Field(default=None, description="Why parsing failed.")
    text: str = Field(default="", description="Raw answer text, or the top choice when scored.")
    n_tokens: int = Field(default=0, description="Tokens generated for the answer (0 when scored).")
    choice_logprobs: dict[str, float] | None = Field(default=None, description="Log-probability per choice letter, when scored.")


class Continuation(BaseModel):
    """What a system did when handed a CoT prefix and left to go on."""

    text: str = Field(description="The reasoning it added.")
    n_tokens: int = Field(description="Tokens it spent before answering.")
    answer: Answer


class System(ABC):
    """A way of embodying models. Subclasses set `has_cot` and implement `run`."""

    has_cot: bool = True

    def __init__(self, backend: Backend, kind: Kind, spec: str, params: GenerationParams | None = None) -> None:
        self.backend = backend
        self.kind = kind
        self.spec = spec
        self.params = params or GenerationParams()

    @abstractmethod
    def prompt(self, sample: Sample) -> Prompt:
        """The prompt that opens the system's answer to `sample`."""

    @abstractmethod
    def run(self, samples: Sequence[Sample]) -> list[Trace]:
        """Answer each sample; return its trace."""

    @property
    def roles(self) -> dict[str, str]:
        return {"model": self.backend.spec}

    # -- shared machinery ------------------------------------------------------------------
    def answer_from(self, samples: Sequence[Sample], cots: Sequence[Sequence[Step] | Sequence[str]]) -> list[Answer]:
        """Force an answer right after each given CoT (empty for none).

        Multiple choice is decided by log-probability over the choice letters; other tasks by
        a short greedy answer.
        """
        prompts = [self.prompt(s).with_prefix(answer_prefix(join_steps(c), self.kind)) for s, c in zip(samples, cots, strict=True)]
        if self.kind == "choice":
            letters = [list(LETTERS[: len(s.choices or [])]) for s in samples]
            scores = self.backend.score(prompts, letters)
            out = []
            for ls, sc in zip(letters, scores, strict=True):
                logps = dict(zip(ls, sc, strict=True))
                best = max(logps, key=logps.__getitem__)
                out.append(Answer(answer=best, text=best, choice_logprobs=_normalize(logps)))
            return out
        params = GenerationParams(max_new_tokens=12, temperature=0.0, seed=self.params.seed, stop=("\n",))
        completions = self.backend.generate(prompts, params)
        out = []
        for c in completions:
            ans, err = extract_answer(f"{ANSWER_CUE}{c.text}", self.kind)
            out.append(Answer(answer=ans, answer_error=err, text=c.text.strip(), n_tokens=c.n_generated_tokens))
        return out

    def continue_from(self, samples: Sequence[Sample], cots: Sequence[Sequence[Step] | Sequence[str]], max_new_tokens: int | None = None) -> list[Continuation]:
        """Hand the system each CoT prefix and let it reason on, then force its answer."""
        prefixes = [join_steps(c) for c in cots]
        prompts = [self.prompt(s).with_prefix(p + "\n" if p else "") for s, p in zip(samples, prefixes, strict=True)]
        params = GenerationParams(
            max_new_tokens=max_new_tokens or self.params.max_new_tokens,
            temperature=self.params.temperature,
            top_p=self.params.top_p,
            seed=self.params.seed,
            stop=(ANSWER_CUE,),
        )
        completions = self.backend.generate(prompts, params)
        full = [[t for t in (p, c.text.strip()) if t] for p, c in zip(prefixes, completions, strict=True)]
        answers = self.answer_from(samples, full)
        return [Continuation(text=c.text.strip(), n_tokens=c.n_generated_tokens, answer=a) for c, a in zip(completions, answers, strict=True)]


def _normalize(logps: dict[str, float]) -> dict[str, float]:
    """Renormalize log-probabilities over the choices only."""
    top = max(logps.values())
    z = top + math.log(sum(math.exp(v - top) for v in logps.values()))
    return {k: v - z for k, v in logps.items()}


SystemFactory = Callable[..., System]
_SYSTEMS: dict[str, SystemFactory] = {}


def register_system(name: str) -> Callable[[SystemFactory], SystemFactory]:
    def deco(fn: SystemFactory) -> SystemFactory:
        _SYSTEMS[name] = fn
        return fn

    return deco


def get_system(spec: str, backend: Backend, kind: Kind, params: GenerationParams | None = None) -> System:
    """Build a registered system by name.

    Raises:
        CotscopeError: for an unknown name.
    """
    from . import builtin  # noqa: F401 - registration

    if spec not in _SYSTEMS:
        raise CotscopeError(f"unknown system {spec!r}; known: {', '.join(sorted(_SYSTEMS))}")
    return _SYSTEMS[spec](backend=backend, kind=kind, spec=spec, params=params)


def list_systems() -> list[str]:
    from . import builtin  # noqa: F401

    return sorted(_SYSTEMS)


def traces_from_reasoning(system: System, samples: Sequence[Sample], prompts: Sequence[Prompt]) -> list[Trace]:
    """Generate reasoning up to the answer cue, chunk it, then force the answer after it.

    The full-CoT answer is produced exactly as the forced answers of the truncation
    experiment are, so at 100% of the CoT they agree by construction.
    """
    params = GenerationParams(
        max_new_tokens=system.params.max_new_tokens,
        temperature=system.params.temperature,
        top_p=system.params.top_p,
        seed=system.params.seed,
        stop=(ANSWER_CUE,),
    )
    completions = system.backend.generate(prompts, params)
    steps = [make_steps(c.text, system.backend.count_tokens) for c in completions]
    answers = system.answer_from(samples, steps)
    return [
        Trace(
            system=system.spec,
            steps=st,
            final_text=f"{ANSWER_CUE} {a.text}".strip(),
            raw_text=c.text,
            answer=a.answer,
            answer_error=a.answer_error,
            answer_logprobs=a.choice_logprobs,
            n_prompt_tokens=c.n_prompt_tokens,
            n_generated_tokens=c.n_generated_tokens + a.n_tokens,
            roles=system.roles,
        )
        for c, st, a in zip(completions, steps, answers, strict=True)
    ]
