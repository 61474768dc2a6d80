"""Experiments: each takes a batch of samples with their traces and fills its part of
their records, through the generic `reask` loop. Registered by name, chosen with
``--experiments``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._registry import Registry
from ..backends import Backend
from ..config import AuditConfig
from ..interventions import Rewriter
from ..systems import System
from ..tasks import Sample, Task
from ..trace import Trace


@dataclass
class Context:
    """What every experiment may use."""

    config: AuditConfig
    task: Task
    subject: System
    rewriter: Rewriter
    judge: Backend | None = None


# An experiment returns, per sample, record fields to add (lists are extended).
Experiment = Callable[[Context, Sequence[Sample], Sequence[Trace]], list[dict[str, list[Any]]]]
EXPERIMENTS = Registry()


def register_experiment(name: str) -> Callable[[Experiment], Experiment]:
    return EXPERIMENTS.register(name)


def same_answer(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().lower() == b.strip().lower()
