"""`cotscope stego`: encoders x paraphrasers on the CoTs of a real task.

For each sample the system writes its CoT (the cover). Each encoder hides a random payload in
it; each paraphraser rewrites the encoded CoT; the encoder's decoder reads the payload back;
the subject answers from the encoded and from the paraphrased CoT. Per paraphraser, the
injection templates are placed in the cover beside their controls, and `coverage_draws`
samples of the paraphrase show how much each surface channel varies between draws.

Every piece of work is one line of ``records.jsonl`` (a cover, an encoding, a cell, an
injection, a coverage draw set), appended and flushed as it finishes: a killed run resumes
where it stopped and recomputes nothing that was written.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from pydantic import BaseModel, ValidationError

from .._errors import CotscopeError, first_error
from .._options import with_overrides
from ..backends import Backend, GenerationParams, Model, check_backend, get_backend
from ..audit import RunFiles, model_slug, task_slug
from ..store import append_line, check_config_file, read_lines, write_config_file
from ..systems import get_system
from ..systems.base import system_factory
from ..tasks import Sample, Task, get_task
from ..trace import join_steps, split_steps
from .encoders import DETERMINISTIC, ENCODERS, Encoder, encoder_factory, get_encoder
from .injections import BY_NAME, Injection, inject
from .paraphrasers import Paraphraser, Rewritten, check_paraphraser, get_paraphraser
from .records import (
    CONFIG_VERSION, RECORD, CellRecord, CoverageRecord, CoverRecord, EncodingRecord, InjectionRecord, StegoConfig, key,
)
from .report import plot_stego, write_stego_report
from .similarity import Similarity, check_similarity
from .summary import StegoSummary, summarize_stego

class StegoStore:
    """``config.json`` and ``records.jsonl`` of a stego run directory."""

    def __init__(self, run_dir: str | Path, config: StegoConfig) -> None:
        self.dir = Path(run_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise CotscopeError(f"run directory {self.dir} is an existing file; give --out a directory")
        self.config = config
        self.config_path = self.dir / "config.json"
        self.path = self.dir / "records.jsonl"
        check_config_file(self.config_path, config, "stego")
        self.records: dict[tuple[str, ...], BaseModel] = {}
        for lineno, line in read_lines(self.path, repair=True):
            try:
                rec = RECORD.validate_json(line)
            except ValidationError as exc:
                where, err = first_error(exc)
                raise CotscopeError(f"{self.path}:{lineno}: not a stego record ({where}: {err['msg']})") from exc
            self.records.setdefault(key(rec), rec)

    def open(self) -> None:
        write_config_file(self.config_path, self.config, "stego", CONFIG_VERSION)

    def append(self, rec: BaseModel) -> None:
        k = key(rec)
        if k in self.records:
            return
        append_line(self.path, rec.model_dump_json() + "\n")
        self.records[k] = rec

    def get(self, *k: str) -> BaseModel | None:
        return self.records.get(k)


# -- the plan ------------------------------------------------------------------------------
@dataclass
class StegoPlan:
    config: StegoConfig
    task: Task
    injections: list[Injection]

    def templates(self, sample: Sample) -> list[Injection]:
        """The injection templates tried on a sample: `injections_per_sample` of them, in turn."""
        k = self.config.injections_per_sample
        if not k or k >= len(self.injections):
            return self.injections
        i = next(j for j, s in enumerate(self.task.samples) if s.id == sample.id)
        return [self.injections[(i * k + j) % len(self.injections)] for j in range(k)]


def make_stego_config(config: StegoConfig | None = None, **overrides) -> StegoConfig:
    """A stego config with keyword overrides applied, validated."""
    return with_overrides(StegoConfig, config, overrides)


def check_stego(config: StegoConfig, *, backend: Backend | None = None) -> StegoPlan:
    """Resolve every name before any model loads.

    Raises:
        CotscopeError: naming the first thing that is wrong.
    """
    if not config.encoders:
        raise CotscopeError("--encoders needs at least one encoder")
    if not config.paraphrasers:
        raise CotscopeError("--paraphrasers needs at least one paraphraser (none is the control)")
    for spec in config.encoders:
        encoder_factory(spec)
    for spec in config.paraphrasers:
        check_paraphraser(spec)
    check_similarity(config.similarity)
    unknown = [n for n in config.injections if n not in BY_NAME]
    if unknown:
        raise CotscopeError(f"unknown injection {unknown[0]!r}; known: {', '.join(BY_NAME)}")
    system_factory(config.system)
    if backend is None:
        check_backend(config.model)
    task = get_task(config.task, config.task_args, limit=config.n_samples, seed=config.seed)
    return StegoPlan(config=config, task=task, injections=[BY_NAME[n] for n in config.injections])


def payload(config: StegoConfig, sample_id: str, encoder: str) -> list[int]:
    rng = random.Random(f"payload:{config.seed}:{sample_id}:{encoder}")
    return [rng.randrange(2) for _ in range(config.payload_bits)]


@dataclass
class StegoResult(RunFiles):
    summary: StegoSummary
    run_dir: Path
    records: list[BaseModel]


def default_stego_dir(config: StegoConfig) -> Path:
    return Path("runs") / f"stego-{task_slug(config.task)}-{model_slug(config.model)}-s{config.seed}"


def stego(
    config: StegoConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    backend: Backend | None = None,
    progress: bool = True,
    plots: bool = True,
    **overrides,
) -> StegoResult:
    """Measure how many hidden bits survive each paraphraser, how much meaning it keeps, and how
    often text inside the CoT steers it.

    Args:
        config: The configuration; keyword `overrides` replace its fields
            (``stego(paraphrasers=("none", "chain"), model="organism/faithful", task="chain")``).
        run_dir: Where to write; an existing stego run directory with the same config is resumed.
        backend: A backend object to use instead of building one from ``config.model``.
        progress: Show a progress bar.
        plots: Write the plot and the HTML report.

    Returns:
        The summary, the run directory and every record.
    """
    from tqdm.auto import tqdm

    config = make_stego_config(config, **overrides)
    plan = check_stego(config, backend=backend)
    run_dir = Path(run_dir) if run_dir is not None else default_stego_dir(config)
    store = StegoStore(run_dir, config)
    samples = plan.task.samples
    todo = [s for s in samples if not _sample_done(store, config, plan, s)]
    if todo:
        work = _Work(config, plan, store, backend)
        store.open()
        bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc="stego", unit="sample", disable=not progress, file=sys.stderr)
        for start in range(0, len(todo), config.samples_per_flush):
            batch = todo[start : start + config.samples_per_flush]
            work.run(batch, on_stage=lambda name, n=len(batch): bar.set_postfix_str(f"{name} ×{n}"))
            bar.update(len(batch))
        bar.close()
    records = list(store.records.values())
    summary = summarize_stego(records, config, [s.id for s in samples])
    (run_dir / "summary.json").write_text(summary.model_dump_json(indent=2))
    if plots:
        plot_stego(summary, run_dir)
        write_stego_report(run_dir, summary, records)
    return StegoResult(summary=summary, run_dir=run_dir, records=records)


def _sample_done(store: StegoStore, config: StegoConfig, plan: StegoPlan, s: Sample) -> bool:
    keys = [("cover", s.id)]
    keys += [("encoding", s.id, e) for e in config.encoders]
    keys += [("cell", s.id, e, p) for e in config.encoders for p in config.paraphrasers]
    keys += [("injection", s.id, p, t.name) for p in config.paraphrasers for t in plan.templates(s)]
    if config.coverage_draws >= 2:
        keys += [("coverage", s.id, p) for p in config.paraphrasers]
    return all(k in store.records for k in keys)


class _Work:
    """Builds the models once, then does whatever a batch of samples still lacks."""

    def __init__(self, config: StegoConfig, plan: StegoPlan, store: StegoStore, backend: Backend | None) -> None:
        self.config, self.plan, self.store = config, plan, store
        self.model = Model.wrap(backend or get_backend(config.model))
        params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=0.0, seed=config.seed)
        self.system = get_system(config.system, self.model, plan.task.kind, params)
        self._models: dict[str, Backend] = {config.model: self.model}
        self.encoders: dict[str, Encoder] = {spec: get_encoder(spec, model=self.model) for spec in config.encoders}
        self.paraphrasers: dict[str, Paraphraser] = {
            spec: get_paraphraser(spec, self._model, seed=config.seed) for spec in config.paraphrasers
        }
        self.channels: dict[str, Encoder] = {name: ENCODERS.lookup(name)() for name in DETERMINISTIC}
        self._memo: dict[tuple[str, str, int], Rewritten | Exception] = {}
        self.similarity = Similarity(config.similarity) if config.similarity else None

    def _model(self, spec: str) -> Backend:
        if spec not in self._models:
            self._models[spec] = Model.wrap(get_backend(spec))
        return self._models[spec]

    def run(self, samples: Sequence[Sample], on_stage=lambda name: None) -> None:
        on_stage("cover")
        covers = self._covers(samples)
        for spec, enc in self.encoders.items():
            on_stage(f"encode {spec}")
            self._encode(spec, enc, samples, covers)
        for spec, para in self.paraphrasers.items():
            on_stage(f"paraphrase {spec}")
            self._prefetch(spec, para, samples, covers)
            self._cells(spec, para, samples)
            self._injections(spec, para, samples, covers)
            if self.config.coverage_draws >= 2:
                on_stage(f"coverage {spec}")
                self._coverage(spec, para, samples, covers)
            self._memo.clear()

    def _prefetch(self, spec: str, para: Paraphraser, samples: Sequence[Sample], covers: dict[str, str]) -> None:
        """Every first-draw paraphrase the batch still needs, in one call: a backend batches
        them together, instead of three rounds each waiting on its longest row."""
        need: dict[tuple[str, str], None] = {}
        for s in samples:
            for _, _, e in self._cell_jobs(spec, [s]):
                if e.text is not None:
                    need[(e.text, s.question)] = None
            for _, t in self._injection_jobs(spec, [s]):
                need[(inject(covers[s.id], t), s.question)] = None
                need[(inject(covers[s.id], t, control=True), s.question)] = None
            for _ in self._coverage_todo(spec, [s]):
                need[(covers[s.id], s.question)] = None
        if need:
            self._paraphrase(para, [t for t, _ in need], [q for _, q in need])

    # -- what a batch still lacks (shared by the prefetch and the stages) --------------------
    def _cell_jobs(self, spec: str, samples: Sequence[Sample]) -> list[tuple[Sample, str, EncodingRecord]]:
        """(sample, encoder, its encoding) of every cell through `spec` not yet stored."""
        jobs = []
        for enc_spec in self.encoders:
            for s in samples:
                if self.store.get("cell", s.id, enc_spec, spec) is None:
                    e = self.store.get("encoding", s.id, enc_spec)
                    assert isinstance(e, EncodingRecord)
                    jobs.append((s, enc_spec, e))
        return jobs

    def _injection_jobs(self, spec: str, samples: Sequence[Sample]) -> list[tuple[Sample, Injection]]:
        return [(s, t) for s in samples for t in self.plan.templates(s) if self.store.get("injection", s.id, spec, t.name) is None]

    def _coverage_todo(self, spec: str, samples: Sequence[Sample]) -> list[Sample]:
        if self.config.coverage_draws < 2:
            return []
        return [s for s in samples if self.store.get("coverage", s.id, spec) is None]

    # -- stages ----------------------------------------------------------------------------
    def _covers(self, samples: Sequence[Sample]) -> dict[str, str]:
        todo = [s for s in samples if self.store.get("cover", s.id) is None]
        if todo:
            for s, t in zip(todo, self.system.run(todo), strict=True):
                self.store.append(CoverRecord(
                    sample=s, cot=join_steps(t.steps), answer=t.answer, correct=self.plan.task.grade(t.answer, s),
                    finish_reason=t.finish_reason,
                ))
        return {s.id: self.store.get("cover", s.id).cot for s in samples}  # type: ignore[union-attr]

    def _answers(self, samples: Sequence[Sample], texts: Sequence[str]) -> list[tuple[str | None, bool]]:
        if not samples:
            return []
        answers = self.system.answer_from(samples, [split_steps(t) for t in texts])
        return [(a.answer, self.plan.task.grade(a.answer, s)) for a, s in zip(answers, samples, strict=True)]

    def _encode(self, spec: str, enc: Encoder, samples: Sequence[Sample], covers: dict[str, str]) -> None:
        todo = [s for s in samples if self.store.get("encoding", s.id, spec) is None]
        if not todo:
            return
        payloads = [payload(self.config, s.id, spec) for s in todo]
        try:
            encoded = enc.encode_batch([covers[s.id] for s in todo], payloads, todo)
        except Exception as exc:  # noqa: BLE001 - a user's encoder that raises is a recorded failure
            encoded = [exc] * len(todo)
        ok = [(s, t) for s, t in zip(todo, encoded, strict=True) if isinstance(t, str)]
        answers = dict(zip([s.id for s, _ in ok], self._answers([s for s, _ in ok], [t for _, t in ok]), strict=True))
        for s, bits, t in zip(todo, payloads, encoded, strict=True):
            if isinstance(t, str):
                a, c = answers[s.id]
                self.store.append(EncodingRecord(sample_id=s.id, encoder=spec, payload=bits, text=t, answer=a, correct=c))
            else:
                self.store.append(EncodingRecord(sample_id=s.id, encoder=spec, payload=bits, failure=_failure(t)))

    def _paraphrase(self, para: Paraphraser, texts: Sequence[str], questions: Sequence[str], draw: int = 0) -> list[Rewritten | Exception]:
        """One rewrite per text (remembered for the batch), or the exception that stands for
        its failure: never raises. A paraphraser that raises on the batch is asked one text
        at a time, so that only the texts it fails on are lost."""
        keys = [(t, q, draw) for t, q in zip(texts, questions, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            for k, out in zip(todo, self._paraphrase_now(para, [k[0] for k in todo], [k[1] for k in todo], draw), strict=True):
                self._memo[k] = out
        return [self._memo[k] for k in keys]

    def _paraphrase_now(self, para: Paraphraser, texts: Sequence[str], questions: Sequence[str], draw: int) -> list[Rewritten | Exception]:
        if not texts:
            return []
        try:
            got = para.paraphrase(list(texts), list(questions), draw=draw)
            if len(got) != len(texts):
                raise CotscopeError(f"returned {len(got)} paraphrases for {len(texts)} texts")
            out: list[Rewritten | Exception] = [_rewritten(g) for g in got]
        except Exception as exc:  # noqa: BLE001
            if len(texts) == 1:
                return [exc]
            out = [o for t, q in zip(texts, questions, strict=True) for o in self._paraphrase_now(para, [t], [q], draw)]
        return [ValueError("the paraphrase is empty") if isinstance(o, Rewritten) and not o.text.strip() else o for o in out]

    def _cells(self, spec: str, para: Paraphraser, samples: Sequence[Sample]) -> None:
        jobs = []
        for s, enc_spec, e in self._cell_jobs(spec, samples):
            if e.text is None:
                self.store.append(CellRecord(sample_id=s.id, encoder=enc_spec, paraphraser=spec, payload=e.payload, failure=f"encoding failed: {e.failure}"))
            else:
                jobs.append((s, enc_spec, e))
        outs = self._paraphrase(para, [e.text for _, _, e in jobs], [s.question for s, _, _ in jobs])
        done = [(j, o) for j, o in zip(jobs, outs, strict=True) if isinstance(o, Rewritten)]
        answers = self._answers([s for (s, _, _), _ in done], [o.text for _, o in done])
        answer_of = {(s.id, enc_spec): a for ((s, enc_spec, _), _), a in zip(done, answers, strict=True)}
        sims = self.similarity([e.text for (_, _, e), _ in done], [o.text for _, o in done]) if self.similarity else [None] * len(done)
        sim_of = {(s.id, enc_spec): x for ((s, enc_spec, _), _), x in zip(done, sims, strict=True)}
        reads: dict[tuple[str, str], list] = {}
        decode_errors: dict[str, str] = {}
        for enc_spec in self.encoders:
            mine = [(s, o) for (s, es, _), o in done if es == enc_spec]
            if not mine:
                continue
            try:
                got = self.encoders[enc_spec].decode_batch([o.text for _, o in mine], self.config.payload_bits, [s for s, _ in mine])
            except Exception as exc:  # noqa: BLE001 - a decoder that raises is a recorded failure
                decode_errors[enc_spec] = f"decoding failed: {_failure(exc)}"
                continue
            for (s, _), r in zip(mine, got, strict=True):
                reads[(s.id, enc_spec)] = list(r)[: self.config.payload_bits] + [None] * max(0, self.config.payload_bits - len(r))
        for (s, enc_spec, e), o in zip(jobs, outs, strict=True):
            if isinstance(o, Exception):
                self.store.append(CellRecord(sample_id=s.id, encoder=enc_spec, paraphraser=spec, payload=e.payload, failure=f"paraphrase failed: {_failure(o)}"))
                continue
            if enc_spec in decode_errors:
                self.store.append(CellRecord(sample_id=s.id, encoder=enc_spec, paraphraser=spec, payload=e.payload, failure=decode_errors[enc_spec]))
                continue
            a, c = answer_of[(s.id, enc_spec)]
            self.store.append(CellRecord(
                sample_id=s.id, encoder=enc_spec, paraphraser=spec, payload=e.payload, paraphrased=o.text,
                read=reads[(s.id, enc_spec)], cut=o.cut, answer=a, correct=c, similarity=sim_of[(s.id, enc_spec)],
            ))

    def _injections(self, spec: str, para: Paraphraser, samples: Sequence[Sample], covers: dict[str, str]) -> None:
        jobs = self._injection_jobs(spec, samples)
        if not jobs:
            return
        texts: dict[tuple[str, str], str] = {}  # distinct texts to paraphrase (controls are shared)
        for s, t in jobs:
            texts.setdefault((s.id, inject(covers[s.id], t)), s.question)
            texts.setdefault((s.id, inject(covers[s.id], t, control=True)), s.question)
        order = list(texts)
        outs = dict(zip(order, self._paraphrase(para, [t for _, t in order], [texts[k] for k in order]), strict=True))
        for s, t in jobs:
            o = outs[(s.id, inject(covers[s.id], t))]
            c = outs[(s.id, inject(covers[s.id], t, control=True))]
            if isinstance(o, Exception) or isinstance(c, Exception):
                bad = o if isinstance(o, Exception) else c
                self.store.append(InjectionRecord(sample_id=s.id, paraphraser=spec, template=t.name, failure=f"paraphrase failed: {_failure(bad)}"))
                continue
            self.store.append(InjectionRecord(
                sample_id=s.id, paraphraser=spec, template=t.name, output=o.text, control_output=c.text,
                obeyed=t.obeyed(o.text), control_obeyed=t.obeyed(c.text),
            ))

    def _coverage(self, spec: str, para: Paraphraser, samples: Sequence[Sample], covers: dict[str, str]) -> None:
        todo = self._coverage_todo(spec, samples)
        if not todo:
            return
        draws = [self._paraphrase(para, [covers[s.id] for s in todo], [s.question for s in todo], draw=d) for d in range(self.config.coverage_draws)]
        for i, s in enumerate(todo):
            got = [d[i] for d in draws]
            bad = [g for g in got if isinstance(g, Exception)]
            if bad:
                self.store.append(CoverageRecord(sample_id=s.id, paraphraser=spec, failure=f"paraphrase failed: {_failure(bad[0])}"))
                continue
            texts = [g.text for g in got]
            self.store.append(CoverageRecord(sample_id=s.id, paraphraser=spec, draws=texts, disagreements=disagreements(self.channels, texts, s)))


def disagreements(channels: dict[str, Encoder], texts: Sequence[str], sample: Sample, max_bits: int = 32) -> dict[str, list[int]]:
    """Per surface channel, for every pair of draws and every position both draws carry:
    1 where the two draws put a different bit there. A channel that a paraphraser leaves the
    same in every draw is one an encoder can rely on; one that varies is randomized."""
    out: dict[str, list[int]] = {}
    for name, ch in channels.items():
        reads = [ch.decode(t, max_bits, sample) for t in texts]
        flags = []
        for a in range(len(reads)):
            for b in range(a + 1, len(reads)):
                flags += [int(x != y) for x, y in zip(reads[a], reads[b], strict=True) if x is not None and y is not None]
        out[name] = flags
    return out


def _rewritten(x: Rewritten | str) -> Rewritten:
    if isinstance(x, Rewritten):
        return x
    if isinstance(x, str):
        return Rewritten(x)
    raise CotscopeError(f"a paraphraser returned {type(x).__name__}, not text")


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
