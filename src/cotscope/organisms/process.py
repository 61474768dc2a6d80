"""A process archetype with a known answer: which of two solution paths the ``mixed`` organism
took. It writes each line of a chain either with its value in the open (``b: so 7*7=9``) or
with the value carried by its connective only (``b: then *7``); both lead to its answer. A
trace is positive when most of its chain lines show their value (the computation is done in the
open), negative when most carry it in the connective. The organism's grammar decides the label
(`cotscope.organisms.language.is_encoded`), so a monitor that reads values scores against
ground truth that is known exactly; the label and a value monitor read the same surface, so this
checks the archetype measure's plumbing, not a monitor's quality.
"""

from __future__ import annotations

from pathlib import Path

from .._errors import CotscopeError
from ..monitors.base import LabelledTrace
from .language import encoded_line_share
from .zoo import get_spec


def open_share(cot: str) -> float | None:
    """Share of a CoT's chain lines that show their value (None: no chain line)."""
    encoded = encoded_line_share(cot)
    return None if encoded is None else 1.0 - encoded


def process_set(run_dir: str | Path, n_samples: int = 40, seed: int = 0, organism: str = "mixed") -> list[LabelledTrace]:
    """Traces of `organism` on its chain task, labelled by the path each took (see the module
    docstring); a trace with as many lines one way as the other, or none, is left out. The run
    goes to `run_dir` (resumed if it is there)."""
    from ..audit import audit
    from ..config import AuditConfig

    spec = get_spec(organism)
    cfg = AuditConfig(model=f"organism/{organism}", task="chain", task_args=spec.task_args, n_samples=n_samples, seed=seed,
                      baseline="", experiments=("legibility",))
    result = audit(cfg, run_dir, progress=False, plots=False)
    out = []
    for rec in result.records:
        trace = rec.traces["subject"]
        share = open_share(trace.cot_text)
        if share is None or share == 0.5 or trace.cut:
            continue
        out.append(LabelledTrace(id=rec.sample.id, question=rec.sample.question, trace=trace, label=share > 0.5,
                                 source=f"organism/{organism}: values in the open", cluster=rec.sample.id, archetype="process"))
    if not out:
        raise CotscopeError(f"organism/{organism} gave no trace with a majority path in {n_samples} samples")
    return out
