"""`recorded`: traces written elsewhere (an Inspect log brought in by ``cotscope import-inspect``,
another run directory), audited against a model of your choice:

    cotscope audit --model llamacpp/qwen.gguf --task jsonl:runs/imported/task.jsonl \\
        --system 'recorded?run=runs/imported' --baseline '' --experiments truncate,paraphrase

`run` gives each sample's trace as it was recorded (nothing is generated); the interventions'
forced answers and continuations come from the audit's model, prompted as the `cot` system is
(question, then the recorded CoT). A continuation reasons on in plain text: a recorded agent's
tools are not called again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._errors import CotscopeError
from ..backends import Backend, GenerationParams, Prompt
from ..records import SampleRecord
from ..tasks.base import Kind, Sample
from ..trace import Trace
from .base import System, register_system
from .prompts import cot_prompt


@register_system("recorded")
class Recorded(System):
    """Recorded traces, looked up by sample id.

    Args:
        run: A run directory (its ``samples.jsonl``) or a ``samples.jsonl`` file.
        role: Whose trace in each record (default ``subject``).
    """

    def __init__(self, backend: Backend, kind: Kind, spec: str, params: GenerationParams | None = None,
                 run: str = "", role: str = "subject") -> None:
        super().__init__(backend, kind, spec, params)
        if not run:
            raise CotscopeError("recorded: give the run directory (recorded?run=DIR)")
        path = Path(run)
        path = path / "samples.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise CotscopeError(f"recorded: {path} not found (a run directory or its samples.jsonl)")
        self.traces: dict[str, Trace] = {}
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = SampleRecord.model_validate_json(line)
            except ValueError as exc:
                raise CotscopeError(f"recorded: {path}:{n}: not a sample record ({str(exc).splitlines()[0]})") from exc
            if role in rec.traces:
                self.traces[rec.sample.id] = rec.traces[role]
        if not self.traces:
            raise CotscopeError(f"recorded: {path} holds no {role!r} trace")

    def prompt(self, sample: Sample) -> Prompt:
        return cot_prompt(sample, self.kind)

    def run(self, samples: Sequence[Sample]) -> list[Trace]:
        missing = [s.id for s in samples if s.id not in self.traces]
        if missing:
            raise CotscopeError(f"recorded: no trace for sample(s) {', '.join(missing[:5])} (the task and the run must hold the same ids)")
        return [self.traces[s.id] for s in samples]
