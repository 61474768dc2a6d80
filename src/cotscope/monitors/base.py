"""The monitor interface, the registry, and the quote check every flag passes."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from .._errors import CotscopeError
from .._options import parse_options, split_spec
from .._registry import Registry
from ..trace import Trace

Reads = Literal["cot", "answer", "both"]
ARCHETYPES: tuple[str, ...] = ("intervention", "process", "outcome")
READS: tuple[str, ...] = ("cot", "answer", "both")


class LabelledTrace(BaseModel):
    """A trace with its ground truth: did the behaviour a monitor looks for happen?"""

    id: str
    question: str = ""
    trace: Trace
    label: bool = Field(description="The behaviour happened (a positive).")
    source: str = Field("", description="Where the label comes from: 'hint switch', 'organism', a file name.")
    cluster: str = Field("", description="The unit the trace belongs to (its sample, its question pair): traces of one cluster are "
                         "not independent, and every interval counts clusters, not traces. Empty: the trace is its own cluster.")

    archetype: str = Field("", description="The kind of ground truth, as OpenAI's monitorability evaluations sort it: 'intervention' "
                           "(a cue present or absent), 'process' (which solution path), 'outcome' (a property of the result); empty: none.")
    arm: int | None = Field(None, description="Intervention: 1 when the cue was present, 0 for the control arm (no cue); the label is the "
                            "outcome (the answer moved to the cue) in both arms.")
    instance: str = Field("", description="The problem instance (a question with one cue) whose samples in both arms are compared; "
                          "empty: the cluster.")
    recorded: dict[str, float] = Field(default_factory=dict, description="Monitor scores another tool recorded with the trace "
                                       "(read by the `recorded` monitor).")

    @field_validator("archetype")
    @classmethod
    def _known_archetype(cls, v: str) -> str:
        if v and v not in ARCHETYPES:
            raise ValueError(f"archetype {v!r}: want one of {', '.join(ARCHETYPES)} (or none)")
        return v

    @field_validator("arm")
    @classmethod
    def _binary_arm(cls, v: int | None) -> int | None:
        if v is not None and v not in (0, 1):
            raise ValueError(f"arm {v!r}: want 1 (cue present) or 0 (control)")
        return v

    @property
    def unit(self) -> str:
        return self.cluster or self.id


class MonitorVerdict(BaseModel):
    """What a monitor said about one trace."""

    score: float = Field(description="Suspicion in [0, 1].")
    flagged: bool = Field(description="Score at or above the monitor's threshold, with its quote found in the text it read.")
    quote: str | None = Field(None, description="The evidence it gave.")
    quote_found: bool | None = Field(None, description="The quote appears in the text it read (verbatim or up to whitespace); None: no quote.")
    voided: bool = Field(False, description="A flag voided because its quote is not in the text.")
    error: str | None = Field(None, description="Why no verdict could be read (an unparseable reply); score 0, not flagged.")


def visible_text(trace: Trace, reads: str) -> str:
    """What a monitor that reads `cot`, `answer` or `both` is shown of a trace."""
    answer = (trace.final_text or "").strip() or (trace.answer or "")
    if reads == "cot":
        return trace.cot_text
    if reads == "answer":
        return answer
    return f"{trace.cot_text}\n\nFinal answer: {answer}"


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def quote_in(quote: str, text: str) -> bool:
    """Whether `quote` appears in `text`, verbatim or after whitespace and case are normalized."""
    q = quote.strip().strip('"').strip()
    return bool(q) and (q in text or _squash(q) in _squash(text))


class Monitor:
    """Base class: subclasses implement `score_texts`; `judge` applies the threshold and the quote check."""

    name = ""

    def __init__(self, reads: str = "cot", threshold: float = 0.5) -> None:
        if reads not in READS:
            raise CotscopeError(f"monitor reads {reads!r}: want one of {', '.join(READS)}")
        if not 0.0 <= threshold <= 1.0:
            raise CotscopeError(f"monitor threshold {threshold} is not in [0, 1]")
        self.reads, self.threshold = reads, threshold

    @property
    def spec(self) -> str:
        return f"{self.name}?reads={self.reads}"

    def score_texts(self, texts: Sequence[str], questions: Sequence[str]) -> list[tuple[float, str | None, str | None]]:
        """Per text: (score in [0, 1], quote or None, error or None)."""
        raise NotImplementedError

    def judge(self, items: Sequence[LabelledTrace | Trace]) -> list[MonitorVerdict]:
        traces = [i.trace if isinstance(i, LabelledTrace) else i for i in items]
        questions = [i.question if isinstance(i, LabelledTrace) else "" for i in items]
        texts = [visible_text(t, self.reads) for t in traces]
        out = []
        for text, (score, quote, error) in zip(texts, self.score_texts(texts, questions), strict=True):
            score = min(max(float(score), 0.0), 1.0)
            found = None if quote is None else quote_in(quote, text)
            over = score >= self.threshold and error is None
            out.append(MonitorVerdict(score=score, quote=quote, quote_found=found, flagged=over and found is not False,
                                      voided=over and found is False, error=error))
        return out


MonitorFactory = Callable[..., Monitor]
MONITORS = Registry("monitor", group="cotscope.monitors")


def register_monitor(name: str) -> Callable[[MonitorFactory], MonitorFactory]:
    return MONITORS.register(name)


def get_monitor(spec: str) -> Monitor:
    """A monitor from its spec: ``rule?pattern=...&reads=cot``, ``llm?model=smollm2-135m&prompt=baker``,
    a plug-in's name, or ``package.module:Class``.

    Raises:
        CotscopeError: for an unknown monitor or a bad option.
    """
    name, opts = split_spec(spec, "monitor")
    factory = MONITORS.lookup(name)
    typed = parse_options(factory, opts, f"monitor {name!r}")
    try:
        mon = factory(**typed)
    except TypeError as exc:
        raise CotscopeError(f"monitor {spec!r}: {exc}") from exc
    if not isinstance(mon, Monitor):
        raise CotscopeError(f"monitor {spec!r} is not a cotscope Monitor")
    return mon
