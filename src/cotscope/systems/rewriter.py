"""A rewriter: a model that summarizes, paraphrases or corrupts CoT steps.

It is itself a small system over a backend (by default the subject's backend, any other by
flag). Rewrites are computed in batches and cached, so the step edits that use them stay
plain functions of the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._registry import Registry
from ..backends import Backend, GenerationParams, Prompt, get_backend
from ..trace import Step, join_steps, split_steps

SUMMARY_PROMPT = (
    "Here is the start of someone's step-by-step reasoning about a problem:\n\n{cot}\n\n"
    "Summarize this reasoning in one or two short sentences. Keep every number it has worked out. "
    "Do not solve the problem further and do not add anything new."
)
PARAPHRASE_PROMPT = (
    "Rewrite the following sentence in different words. Keep its meaning and every number exactly. "
    "Reply with the rewritten sentence only.\n\nSentence: {step}"
)
MISTAKE_PROMPT = (
    "Rewrite the following sentence from a piece of reasoning so that it contains a plausible "
    "mistake (a wrong fact or a wrong conclusion). Reply with the rewritten sentence only.\n\nSentence: {step}"
)


class Rewriter:
    """Summaries of CoT prefixes, step-by-step paraphrases and model-written mistakes."""

    def __init__(self, backend: Backend, max_new_tokens: int = 48, seed: int = 0) -> None:
        self.backend = backend
        self.params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
        self._cache: dict[tuple[str, str], str] = {}
        self.n_generated_tokens = 0

    @property
    def spec(self) -> str:
        return self.backend.spec

    def _run(self, kind: str, template: str, texts: Sequence[str], field: str) -> list[str]:
        todo = sorted({t for t in texts if (kind, t) not in self._cache})
        if todo:
            prompts = [Prompt.chat(template.format(**{field: t})) for t in todo]
            for text, out in zip(todo, self.backend.generate(prompts, self.params), strict=True):
                self._cache[(kind, text)] = _clean(out.text) or text
                self.n_generated_tokens += out.n_generated_tokens
        return [self._cache[(kind, t)] for t in texts]

    def summarize(self, cots: Sequence[Sequence[Step]]) -> list[list[Step]]:
        """One summary per CoT (empty CoT -> empty summary), chunked into steps."""
        texts = [join_steps(c) for c in cots]
        done = self._run("summary", SUMMARY_PROMPT, [t for t in texts if t], "cot")
        it = iter(done)
        return [self._steps(next(it)) if t else [] for t in texts]

    def paraphrase(self, cots: Sequence[Sequence[Step]]) -> list[list[Step]]:
        """Each step rewritten on its own: the k-th paraphrased step stands for the k-th step."""
        flat = [s.text for c in cots for s in c]
        done = iter(self._run("paraphrase", PARAPHRASE_PROMPT, flat, "step"))
        return [[Step(text=(t := next(done)), n_tokens=self.backend.count_tokens(t)) for _ in c] for c in cots]

    def mistake(self, steps: Sequence[str]) -> list[str]:
        return self._run("mistake", MISTAKE_PROMPT, steps, "step")

    def cached(self, kind: str, text: str) -> str:
        return self._cache[(kind, text)]

    def _steps(self, text: str) -> list[Step]:
        return [Step(text=c, n_tokens=self.backend.count_tokens(c)) for c in split_steps(text)]


RewriterFactory = Callable[..., Rewriter]
_REWRITERS = Registry("rewriter", group="cotscope.rewriters")


def register_rewriter(name: str) -> Callable[[RewriterFactory], RewriterFactory]:
    """Register a rewriter that needs no model (a rule-based one), chosen by `name`."""
    return _REWRITERS.register(name)


def make_rewriter(spec: str, default: Backend, seed: int = 0) -> Rewriter:
    """The rewriter a spec names: '' for an LLM rewriter on `default` (the subject's backend),
    a registered rule-based rewriter (``chain``: the organisms' task-aware paraphraser), or
    any backend spec for an LLM rewriter on that model."""
    if spec in _REWRITERS.names():
        return _REWRITERS.lookup(spec)(seed=seed)
    return Rewriter(get_backend(spec) if spec else default, seed=seed)


def rewriter_names() -> list[str]:
    """Rewriters that need no model."""
    return _REWRITERS.names()


def _clean(text: str) -> str:
    """Drop a leading label the model may add ("Summary:", "Rewritten sentence:")."""
    text = text.strip()
    head, sep, rest = text.partition(":")
    if sep and len(head) < 30 and head.lower().split()[-1:] in (["summary"], ["sentence"], ["rewrite"], ["paraphrase"]):
        text = rest.strip()
    return text.strip().strip('"').strip()
