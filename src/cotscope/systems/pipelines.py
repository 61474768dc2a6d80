"""Multi-role and selection systems: shoggoth + paraphraser + face, and best-of-N."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from ..backends import Backend, GenerationParams, Prompt, get_backend
from ..tasks.base import Kind, Sample
from ..trace import Step, join_steps, make_steps
from .base import Cot, Reasoning, System, _as_steps, get_system, register_system
from .rewriter import make_rewriter
from .prompts import ANSWER_CUE, answer_format, answer_prefix, cot_prompt, format_question

FACE_PROMPT = (
    "{question}\n\nHere is some reasoning about this question:\n\n{cot}\n\n"
    "Using this reasoning, give the final answer in the form {fmt}."
)


@register_system("shoggoth-face")
class ShoggothFace(System):
    """One model (the shoggoth) writes the CoT one step at a time; a paraphraser rewrites each
    step before the shoggoth sees it again; a separate model (the face) writes the answer from
    the paraphrased CoT only. Pressure on the answer's looks never reaches the CoT, and
    wording tricks do not survive a step.

    Options: ``paraphraser`` and ``face`` (backend specs; default: the subject's model),
    ``max_steps`` (default 8), ``step_tokens`` (budget of one step, default 48), ``think``
    (``true``: the shoggoth thinks natively, its steps written in the thinking block its chat
    template opens, as the ``think`` system writes them; the face is shown the paraphrased
    thinking).
    """

    def __init__(
        self,
        backend: Backend,
        kind: Kind,
        spec: str,
        params: GenerationParams | None = None,
        paraphraser: str = "",
        face: str = "",
        max_steps: int = 8,
        step_tokens: int = 48,
        think: bool = False,
    ) -> None:

        super().__init__(backend, kind, spec, params)
        self.paraphraser = make_rewriter(paraphraser, backend, seed=self.params.seed)
        self.face = get_backend(face) if face else backend
        self.max_steps, self.step_tokens = int(max_steps), int(step_tokens)
        self.thinker = get_system("think", backend, kind, params) if think else None

    def run(self, samples: Sequence[Sample]):
        traces = super().run(samples)
        return [t.model_copy(update={"channel": "thinking", "thinking": "full"}) for t in traces] if self.thinker else traces

    @property
    def roles(self) -> dict[str, str]:
        return {"shoggoth": self.backend.spec, "paraphraser": self.paraphraser.spec, "face": self.face.spec}

    @property
    def answer_backend(self) -> Backend:
        return self.face

    @property
    def answer_role(self) -> str:
        return "face"

    def prompt(self, sample: Sample) -> Prompt:
        return self.thinker.prompt(sample) if self.thinker else cot_prompt(sample, self.kind)

    def _shoggoth_prompt(self, sample: Sample, shown: str, blank: bool) -> Prompt:
        """Where the shoggoth writes its next step: after the steps shown to it so far, in its
        assistant turn or (thinking natively) in the thinking block its template opens."""
        if self.thinker:
            return self.prompt(sample).with_prefix(self.thinker.thinking_prefix(sample, shown) + ("\n" if blank else ""))
        return self.prompt(sample).with_prefix((shown + "\n" if shown else "") + ("\n" if blank else ""))

    def answer_prompt(self, sample: Sample, cot: str) -> Prompt:
        body = FACE_PROMPT.format(question=format_question(sample), cot=cot or "(none)", fmt=answer_format(self.kind, sample))
        return Prompt.chat(body, prefix=answer_prefix("", self.kind))

    def reason(self, samples: Sequence[Sample], prefixes: Sequence[Cot], max_new_tokens: int) -> list[Reasoning]:
        shown = [list(_as_steps(p)) for p in prefixes]  # what the shoggoth sees: paraphrased steps
        n_given = [len(s) for s in shown]
        hidden: list[list[Step]] = [[] for _ in samples]
        spent = [{"shoggoth": 0, "paraphraser": 0} for _ in samples]
        blank = [False] * len(samples)  # the model opened a blank line: give it one
        active = list(range(len(samples)))
        for _ in range(self.max_steps):
            active = [i for i in active if spent[i]["shoggoth"] < max_new_tokens]
            if not active:
                break
            prompts = [self._shoggoth_prompt(samples[i], join_steps(shown[i]), blank[i]) for i in active]
            budget = min(self.step_tokens, max(1, max_new_tokens - min(spent[i]["shoggoth"] for i in active)))
            outs = self.backend.generate(prompts, GenerationParams(
                max_new_tokens=budget, temperature=self.params.temperature, top_p=self.params.top_p,
                seed=self.params.seed, stop=("\n", self.thinker.close_tag) if self.thinker else ("\n",),
            ))
            new_steps, still = [], []
            for i, c in zip(active, outs, strict=True):
                spent[i]["shoggoth"] += c.n_generated_tokens
                line = c.text.strip()
                if not line and not blank[i]:
                    blank[i] = True
                    still.append(i)
                elif line and not line.startswith(ANSWER_CUE) and not (self.thinker and line.startswith(self.thinker.close_tag)):
                    blank[i] = False
                    step = Step(text=line, n_tokens=self.backend.count_tokens(line))
                    hidden[i].append(step)
                    new_steps.append((i, step))
                    still.append(i)
            if new_steps:
                before = self.paraphraser.n_generated_tokens
                rewritten = self.paraphraser.paraphrase([[s] for _, s in new_steps])
                cost = self.paraphraser.n_generated_tokens - before
                for (i, _), (r,) in zip(new_steps, rewritten, strict=True):
                    shown[i].append(r)
                    spent[i]["paraphraser"] += cost // len(new_steps)
            active = still
        cut = set(active)  # still writing steps when max_steps ran out
        return [
            Reasoning(steps=s[n:], text=join_steps(s[n:]), tokens_by_role=t, hidden_steps=h, finish_reason="length" if i in cut else "stop")
            for i, (s, n, t, h) in enumerate(zip(shown, n_given, spent, hidden, strict=True))
        ]


@register_system("best-of-n")
class BestOfN(System):
    """N chains of thought sampled at a temperature, one answer selected: by majority vote
    over their answers, or by the log-probability the model gives each chain (per token).

    Options: ``n`` (default 4), ``select`` (``vote`` or ``logprob``), ``temperature`` (default 0.7).
    """

    def __init__(
        self,
        backend: Backend,
        kind: Kind,
        spec: str,
        params: GenerationParams | None = None,
        n: int = 4,
        select: Literal["vote", "logprob"] = "vote",
        temperature: float = 0.7,
    ) -> None:
        super().__init__(backend, kind, spec, params)
        self.n, self.select, self.temperature = int(n), select, float(temperature)
        if select not in ("vote", "logprob") or self.n < 1:
            raise TypeError(f"select must be vote or logprob and n >= 1; got select={select!r}, n={n}")

    def prompt(self, sample: Sample) -> Prompt:
        return cot_prompt(sample, self.kind)

    def reason(self, samples: Sequence[Sample], prefixes: Sequence[Cot], max_new_tokens: int) -> list[Reasoning]:
        """N sampled continuations of each prefix; the selected one is returned."""
        rep_samples = [s for s in samples for _ in range(self.n)]
        rep_prefixes = [p for p in prefixes for _ in range(self.n)]
        texts = [join_steps(p) for p in rep_prefixes]
        prompts = [self.prompt(s).with_prefix(t + "\n" if t else "") for s, t in zip(rep_samples, texts, strict=True)]
        outs = self.backend.generate(prompts, self._params(max_new_tokens, stop=(ANSWER_CUE,), temperature=self.temperature))
        cands = [make_steps(o.text, self.backend.count_tokens) for o in outs]
        full = [[*_as_steps(p), *c] for p, c in zip(rep_prefixes, cands, strict=True)]
        answers = self.answer_from(rep_samples, full)
        scores = None
        if self.select == "logprob":
            raw = self.backend.score([p for p in prompts], [[o.text] for o in outs])
            scores = [r[0] / max(1, o.n_generated_tokens) for r, o in zip(raw, outs, strict=True)]
        result = []
        for j in range(len(samples)):
            block = range(j * self.n, (j + 1) * self.n)
            votes = Counter(answers[i].answer for i in block if answers[i].answer is not None)
            if scores is not None:
                pick = max(block, key=lambda i: scores[i])
            elif votes:
                top = votes.most_common(1)[0][0]
                pick = next(i for i in block if answers[i].answer == top)
            else:
                pick = block[0]
            spent = sum(outs[i].n_generated_tokens + answers[i].n_tokens for i in block)
            meta = {"votes": ",".join(f"{a}:{c}" for a, c in votes.most_common()), "picked": pick - block[0]}
            result.append(Reasoning(steps=cands[pick], text=outs[pick].text.strip(), tokens_by_role={"model": spent}, meta=meta,
                                    finish_reason=outs[pick].finish_reason))
        return result
