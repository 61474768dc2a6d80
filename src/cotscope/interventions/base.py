"""Interventions edit a trace's steps; `reask` puts the edited CoT back to the system.

An intervention is a registered factory: the outer function takes the configuration and
returns a callable that maps steps to steps. Its `InterventionSpec` (name + arguments) is
stored beside every result so that each can be re-created.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .._errors import CotscopeError
from .._registry import Registry
from ..backends import lockstep
from ..records import InterventionSpec
from ..systems import System
from ..trace import Answer, Continuation
from ..tasks import Sample
from ..trace import Step

Edit = Callable[[list[Step]], list[Step]]
_INTERVENTIONS = Registry("intervention", group="cotscope.interventions")


def register_intervention(name: str) -> Callable[[Callable[..., Edit]], Callable[..., Edit]]:
    return _INTERVENTIONS.register(name)


def make_intervention(spec: InterventionSpec, **context: Any) -> Edit:
    """Build the edit a spec names. `context` (e.g. ``rewriter=``) goes to the factories
    that take it: model-based edits need their model, pure ones need nothing."""
    if spec.name not in _INTERVENTIONS:
        raise CotscopeError(f"unknown intervention {spec.name!r}; known: {', '.join(sorted(_INTERVENTIONS))}")
    factory = _INTERVENTIONS[spec.name]
    wanted = inspect.signature(factory).parameters
    return factory(**spec.args, **{k: v for k, v in context.items() if k in wanted})


def reask(
    system: System,
    samples: Sequence[Sample],
    steps: Sequence[list[Step]],
    specs: Sequence[Sequence[InterventionSpec]],
    mode: Literal["answer", "continue"],
    max_new_tokens: int | None = None,
    **context: Any,
) -> tuple[list[list[list[Step]]], list[list[Answer | Continuation]]]:
    """Apply each sample's interventions to its steps and re-ask the system, in one batch.

    Args:
        system: The system to re-ask.
        samples: The questions.
        steps: Each sample's original CoT steps.
        specs: Per sample, the interventions to apply (one re-ask each).
        mode: ``answer`` forces an answer right after the edited CoT; ``continue`` lets the
            system reason on from it first.
        max_new_tokens: Least budget of a continuation. Each continuation may also spend 1.5x
            the tokens the original CoT spent after the point it continues from (+16), so
            that a long CoT is not measured by continuations cut short.
        context: Passed to the intervention factories (e.g. ``rewriter=``).

    Returns:
        Per sample and spec, in order: the edited steps, and the system's answer or continuation.
    """
    flat_samples, flat_steps, shape, budgets = [], [], [], []
    for sample, st, sp in zip(samples, steps, specs, strict=True):
        shape.append(len(sp))
        total = sum(max(s.n_tokens, 0) for s in st)
        for spec in sp:
            flat_samples.append(sample)
            edited = make_intervention(spec, **context)(list(st))
            flat_steps.append(edited)
            budgets.append(continuation_budget(max_new_tokens, total, edited))
    if not flat_samples:
        return [[] for _ in samples], [[] for _ in samples]
    if mode == "answer":
        results: list = system.answer_from(flat_samples, flat_steps)
    else:
        results = [None] * len(flat_samples)
        groups = [[i for i, b in enumerate(budgets) if b == budget] for budget in sorted(set(budgets), key=lambda b: (b is None, b or 0))]
        # One call per budget, in lockstep: their generations share batches, each row with its own budget.
        outs = lockstep.parallel([
            lambda idx=idx: system.continue_from([flat_samples[i] for i in idx], [flat_steps[i] for i in idx], max_new_tokens=budgets[idx[0]])
            for idx in groups
        ])
        for idx, got in zip(groups, outs, strict=True):
            for i, r in zip(idx, got, strict=True):
                results[i] = r
    return regroup(flat_steps, shape), regroup(results, shape)


def continuation_budget(floor: int | None, cot_tokens: int, given: Sequence[Step]) -> int | None:
    """At least `floor`, and room for 1.5x what the original CoT spent after the given steps
    (+16), rounded up to a multiple of 32 so that similar budgets share a batch."""
    if floor is None:
        return None
    rest = max(cot_tokens - sum(max(s.n_tokens, 0) for s in given), 0)
    need = -(-(3 * rest // 2 + 16) // 32) * 32
    return max(floor, need)


def regroup(flat: list, shape: Sequence[int]) -> list[list]:
    out, i = [], 0
    for n in shape:
        out.append(flat[i : i + n])
        i += n
    return out
