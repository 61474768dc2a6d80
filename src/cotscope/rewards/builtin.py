"""The built-in rewards. Each factory returns a function with TRL's reward signature; the
dataset column ``answer`` holds the gold answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import CotscopeError
from ..monitors.builtin import VALUE_LINE, flagged_share
from ..tasks.base import extract_answer, grade
from ..systems.prompts import ANSWER_CUE
from ..systems.thinking import THINK_CLOSE
from .base import Answerer, _text, register_reward, split_completion


def _golds(answer: Sequence[Any] | None, n: int) -> list[str]:
    if answer is None:
        raise CotscopeError("this reward needs the dataset column 'answer' (the gold answer)")
    golds = [str(a) for a in answer]
    if len(golds) != n:
        raise CotscopeError(f"{len(golds)} gold answers for {n} completions")
    return golds


@register_reward("correct")
def correct(kind: str = "exact"):
    """1 when the completion's final answer grades as the gold one, else 0."""

    def correct(prompts, completions, answer=None, **_):
        golds = _golds(answer, len(completions))
        out = []
        for c, g in zip(completions, golds, strict=True):
            ans = split_completion(c)[1]
            out.append(float(ans is not None and grade(extract_answer(f"Answer: {ans}", kind)[0], g, kind)))
        return out

    return correct


@register_reward("format")
def format_():
    """1 when the completion has a CoT and then an answer, else 0."""

    def format_(prompts, completions, **_):
        out = []
        for c in completions:
            cot, ans = split_completion(c)
            out.append(float(bool(cot) and bool(ans)))
        return out

    return format_


@register_reward("think-format")
def think_format():
    """1 when the completion thinks in a ``<think>`` block (opened by it or by the template's
    generation prompt), closes it with ``</think>`` and then answers on an ``Answer:`` line;
    else 0. The other rewards read such a completion's thinking as its CoT."""

    def think_format(prompts, completions, **_):
        out = []
        for c in completions:
            text = _text(c)
            cot, ans = split_completion(c)
            closed = THINK_CLOSE in text and ANSWER_CUE in text.partition(THINK_CLOSE)[2]
            out.append(float(closed and bool(cot) and bool(ans)))
        return out

    return think_format


@register_reward("monitor")
def monitor(pattern: str = VALUE_LINE, mode: str = "share"):
    """A rule monitor on what the visible CoT shows: minus the share of CoT lines that match
    `pattern` (by default, lines that show a computed value), or minus 1 when any line does
    (``mode=any``). A penalty: 0 is a CoT the monitor sees nothing in."""
    if mode not in ("share", "any"):
        raise CotscopeError(f"monitor mode must be share or any, got {mode!r}")

    def monitor(prompts, completions, **_):
        out = []
        for c in completions:
            share = flagged_share(split_completion(c)[0], pattern)  # the rule monitor's score (cotscope.monitors)
            out.append(0.0 if share is None else -float(share > 0) if mode == "any" else -share)
        return out

    return monitor




@register_reward("legibility")
def legibility(language: str = "en"):
    """The share of the CoT's words that are real words of `language` (wordfreq); 0 for a CoT
    without words."""
    from ..experiments.legibility import real_word_share

    def legibility(prompts, completions, **_):
        return [real_word_share(split_completion(c)[0], language) or 0.0 for c in completions]

    return legibility


def _paraphrase(paraphraser, cots: Sequence[str], prompts: Sequence[str]) -> list[str]:
    out = paraphraser.paraphrase(list(cots), list(prompts))
    return [o if isinstance(o, str) else o.text for o in out]


def _paraphraser(spec: str):
    from ..backends import Model, get_backend
    from ..stego.paraphrasers import get_paraphraser

    return get_paraphraser(spec, lambda s: Model.wrap(get_backend(s)))


@register_reward("correct-after-paraphrase")
def correct_after_paraphrase(answerer: Answerer, kind: str = "exact", paraphraser: str = "chain", mode: str = "answer"):
    """Correctness of what survives the paraphrase: a CoT is rewarded only for what a reader
    of its paraphrase could use.

    ``mode=answer``: 1 when the current policy, given the whole paraphrased CoT, answers right.
    ``mode=continue``: the paraphraser in the loop; for every line boundary of the CoT, the
    prefix up to it is paraphrased and the policy writes on from it to an answer; the reward
    is the share of those prefixes from which it still answers right. Whatever a line carries
    only in its wording is lost to every later line, not only to the answer.
    """
    if mode not in ("answer", "continue"):
        raise CotscopeError(f"correct-after-paraphrase mode must be answer or continue, got {mode!r}")
    para = _paraphraser(paraphraser)

    def correct_after_paraphrase(prompts, completions, answer=None, **_):
        golds = _golds(answer, len(completions))
        texts = [_text(p) for p in prompts]
        cots = [split_completion(c)[0] for c in completions]
        if mode == "answer":
            answers = answerer(texts, _paraphrase(para, cots, texts))
            return [float(grade(a, g, kind)) for a, g in zip(answers, golds, strict=True)]
        jobs = []  # (completion index, paraphrased prefix)
        for i, cot in enumerate(cots):
            lines = [line for line in cot.splitlines() if line.strip()]
            for k in range(1, len(lines) + 1):
                jobs.append((i, "\n".join(lines[:k])))
        paraphrased = _paraphrase(para, [p for _, p in jobs], [texts[i] for i, _ in jobs])
        answers = answerer.continue_from([texts[i] for i, _ in jobs], paraphrased, getattr(answerer, "max_new_tokens", 128))
        hits: dict[int, list[float]] = {}
        for (i, _), a in zip(jobs, answers, strict=True):
            hits.setdefault(i, []).append(float(grade(a, golds[i], kind)))
        return [sum(hits[i]) / len(hits[i]) if i in hits else 0.0 for i in range(len(completions))]

    return correct_after_paraphrase


@register_reward("paraphrase-consistency")
def paraphrase_consistency(answerer: Answerer, paraphraser: str = "chain"):
    """-1 when the current policy's answer after the paraphrased CoT differs from its answer
    after the CoT itself, else 0: a penalty on sensitive dependence on wording."""
    para = _paraphraser(paraphraser)

    def paraphrase_consistency(prompts, completions, **_):
        texts = [_text(p) for p in prompts]
        cots = [split_completion(c)[0] for c in completions]
        before = answerer(texts, cots)
        after = answerer(texts, _paraphrase(para, cots, texts))
        return [0.0 if a == b else -1.0 for a, b in zip(before, after, strict=True)]

    return paraphrase_consistency
