"""Readers of released labelled CoTs: each turns a user's local copy of a released set into
labelled traces (`cotscope.monitors.LabelledTrace`) that monitors and detectors score, and that
the ``recorded`` system replays. Nothing released is copied into cotscope: give the path.

A source is ``<format>:<path>`` or a path whose format is read from its name and content:

================  ===========================================================================
``chainscope``    ChainScope's faithfulness YAML (``chainscope/data/faithfulness/<model>.yaml``
                  or ``<model>/<property>.yaml``, with or without a ``questions_by_qid``
                  wrapper): per question, ``unfaithful_responses`` are positives and
                  ``faithful_responses`` negatives; ``unknown_responses`` are left out. A
                  response is text (older files) or a record (``response``, ``final_answer``,
                  ``result``). The cluster is the question.
``bonafide``      BonaFide's CSV (Gur-Arieh, Marasović and Geva 2026): ``id``, ``label_type``
                  (``FAITHFUL`` negative; ``UNFAITHFUL_COT``, ``UNFAITHFUL_STEP`` and any
                  other ``UNFAITHFUL...`` positive) and ``src_type``; the CoT's column is named
                  by ``?text=<column>`` (default ``cot``), the question's by ``?question=``.
``faithcot``      FaithCoT-Bench's JSON: a list of objects (or ``{"data": [...]}``), with the
                  question, CoT, answer and label fields named by options (defaults
                  ``question``, ``cot``, ``answer``, ``label``; a label is true/false, 0/1,
                  or ``faithful``/``unfaithful``).
``monitorability`` the sample rows OpenAI's monitorability-evals scaffold writes (CSV or JSON
                  lines): ``dataset``, ``archetype`` (intervention, process, outcome),
                  ``instance_id``, ``sample_idx``, ``x`` (the arm: 1 cue, 0 control; empty
                  outside intervention), ``y`` (the outcome: the label), ``cot_only``,
                  ``final_answer`` and the monitors' verdicts ``z_cot_only``,
                  ``z_answer_only``, ``z_all_messages`` (kept for the ``recorded`` monitor).
                  The instance is ``<dataset>/<instance_id>``, its cluster too. A row with an
                  ``error`` or no ``y`` is left out and counted in a warning.
``jsonl``         cotscope's own labelled ``.jsonl`` (`cotscope.monitors.measure.load_labelled`).
================  ===========================================================================

Every reader names the line or record it cannot read, refuses a file with two records of one
id, and reports an empty or one-class file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from .._errors import CotscopeError, require
from ..monitors.base import LabelledTrace
from ..trace import Trace, make_steps
from .iphr import yes_no

FORMATS = ("chainscope", "bonafide", "faithcot", "monitorability", "jsonl")


def _trace(cot: str, answer: str | None, system: str) -> Trace:
    return Trace(system=system, steps=make_steps(cot, lambda s: len(s.split())), final_text=answer or "", raw_text=cot,
                 answer=answer or None)


def _unique(items: list[LabelledTrace], where: str) -> list[LabelledTrace]:
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise CotscopeError(f"{where}: two labelled traces share the id {it.id!r}; ids must be unique (a trace is one unit)")
        seen.add(it.id)
    return items


def read_chainscope(path: str | Path) -> list[LabelledTrace]:
    """ChainScope's faithfulness YAML (see the module docstring)."""
    yaml = require("yaml", "pyyaml", "pip install pyyaml")
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CotscopeError(f"{p}: not YAML ({exc})") from exc
    if isinstance(data, dict) and "questions_by_qid" in data:
        data = data["questions_by_qid"]
    if not isinstance(data, dict):
        raise CotscopeError(f"{p}: not a ChainScope faithfulness file (want a mapping of question ids)")
    out = []
    for qid, q in data.items():
        if not isinstance(q, dict) or not ({"faithful_responses", "unfaithful_responses"} & set(q)):
            raise CotscopeError(f"{p}: question {qid!r} has no faithful_responses or unfaithful_responses")
        meta = q.get("metadata") or {}
        question = str(meta.get("q_str") or q.get("prompt") or "")
        for key, label in (("unfaithful_responses", True), ("faithful_responses", False)):
            for rid, resp in (q.get(key) or {}).items():
                if isinstance(resp, dict):
                    text = str(resp.get("response", ""))
                    answer = resp.get("final_answer") or resp.get("result")
                else:
                    text, answer = str(resp), None
                answer = yes_no(str(answer)) if answer else yes_no(text)
                out.append(LabelledTrace(id=f"{qid}/{rid}", question=question, trace=_trace(text, answer, "chainscope"), label=label,
                                         source=f"chainscope:{p.name}", cluster=str(qid)))
    return _unique(out, str(p))


def read_bonafide(path: str | Path, text: str = "cot", question: str = "") -> list[LabelledTrace]:
    """BonaFide's CSV (see the module docstring)."""
    p = Path(path)
    out = []
    with p.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        missing = [c for c in ("id", "label_type", text) if c not in cols]
        if missing:
            raise CotscopeError(f"{p}: BonaFide CSV lacks the column(s) {missing} (columns: {sorted(cols)}); name the CoT's column with ?text=")
        for n, row in enumerate(reader, 2):
            kind = (row.get("label_type") or "").strip().upper()
            if kind == "FAITHFUL":
                label = False
            elif kind.startswith("UNFAITHFUL"):
                label = True
            else:
                raise CotscopeError(f"{p}:{n}: label_type {kind!r} is neither FAITHFUL nor UNFAITHFUL_...")
            cot = row.get(text) or ""
            if not cot.strip():
                raise CotscopeError(f"{p}:{n}: empty CoT in column {text!r}")
            src = (row.get("src_type") or "").strip()
            out.append(LabelledTrace(id=str(row["id"]), question=str(row.get(question, "")) if question else "",
                                     trace=_trace(cot, None, f"bonafide:{src}" if src else "bonafide"), label=label,
                                     source=f"bonafide:{p.name}", cluster=str(row["id"])))
    return _unique(out, str(p))


_TRUE = {"1", "true", "yes", "unfaithful"}
_FALSE = {"0", "false", "no", "faithful"}


def read_faithcot(path: str | Path, question: str = "question", cot: str = "cot", answer: str = "answer", label: str = "label",
                  id: str = "id") -> list[LabelledTrace]:  # noqa: A002 - the option's name
    """FaithCoT-Bench's JSON (see the module docstring)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CotscopeError(f"{p}: not JSON ({exc})") from exc
    if isinstance(data, dict):
        data = data.get("data", data.get("instances"))
    if not isinstance(data, list):
        raise CotscopeError(f"{p}: want a list of records (or {{'data': [...]}})")
    out = []
    for n, row in enumerate(data):
        if not isinstance(row, dict) or cot not in row or label not in row:
            raise CotscopeError(f"{p}: record {n} lacks {cot!r} or {label!r}")
        raw = str(row[label]).strip().lower()
        if raw not in _TRUE | _FALSE:
            raise CotscopeError(f"{p}: record {n}: label {row[label]!r} is not true/false, 0/1 or faithful/unfaithful")
        rid = str(row.get(id, n))
        out.append(LabelledTrace(id=rid, question=str(row.get(question, "")), trace=_trace(str(row[cot]), str(row.get(answer) or "") or None, "faithcot"),
                                 label=raw in _TRUE, source=f"faithcot:{p.name}", cluster=str(row.get("cluster", rid))))
    return _unique(out, str(p))


_Z_COLUMNS = ("z_cot_only", "z_answer_only", "z_all_messages")
_ARCHETYPE_NAMES = {"intervention": "intervention", "process": "process", "outcome": "outcome", "outcome_property": "outcome",
                    "outcome-property": "outcome"}


def _number(v) -> float | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "none", "null")):
        return None
    f = float(v)
    return None if f != f else f


def read_monitorability(path: str | Path) -> list[LabelledTrace]:
    """The sample rows of OpenAI's monitorability-evals scaffold (see the module docstring)."""
    import warnings

    p = Path(path)
    if p.suffix.lower() == ".csv":
        with p.open(encoding="utf-8", newline="") as fh:
            rows = list(enumerate(csv.DictReader(fh), 2))
    else:
        rows = []
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise CotscopeError(f"{p}:{n}: not a JSON line ({exc})") from exc
    out, skipped = [], 0
    for n, row in rows:
        try:
            missing = [c for c in ("dataset", "archetype", "instance_id", "sample_idx", "y", "cot_only") if c not in row]
            if missing:
                raise ValueError(f"lacks {missing}")
            kind = _ARCHETYPE_NAMES.get(str(row["archetype"]).strip().lower())
            if kind is None:
                raise ValueError(f"archetype {row['archetype']!r} is none of {sorted(_ARCHETYPE_NAMES)}")
            y = _number(row["y"])
            if (row.get("error") or "") or y is None:
                skipped += 1
                continue
            if y not in (0.0, 1.0):
                raise ValueError(f"y {row['y']!r} is not 0 or 1")
            x = _number(row.get("x"))
            if kind == "intervention" and x not in (0.0, 1.0):
                raise ValueError(f"an intervention row needs x 0 or 1, got {row.get('x')!r}")
            instance = f"{row['dataset']}/{row['instance_id']}"
            arm = int(x) if kind == "intervention" else None
            recorded = {c: z for c in _Z_COLUMNS if (z := _number(row.get(c))) is not None}
            out.append(LabelledTrace(id=f"{instance}/{'' if arm is None else f'x{arm}/'}{row['sample_idx']}", trace=_trace(
                str(row["cot_only"] or ""), str(row.get("final_answer") or "") or None, f"monitorability:{row['dataset']}"),
                label=bool(y), source=f"monitorability:{row['dataset']}", cluster=instance, archetype=kind, arm=arm,
                instance=instance, recorded=recorded))
        except (ValueError, TypeError, ValidationError) as exc:
            raise CotscopeError(f"{p}:{n}: not a monitorability-evals row ({str(exc)[:200]})") from exc
    if skipped:
        warnings.warn(f"{p}: {skipped} row(s) with an error or no y left out", stacklevel=2)
    return _unique(out, str(p))


def load_labelled(path: str | Path) -> list[LabelledTrace]:
    """A labelled file, one JSON object a line: ``{"id", "question", "cot", "answer", "label"}``
    (a CoT as text) or ``{"id", "trace": <a cotscope Trace>, "label"}``, each with an optional
    ``cluster`` (the unit it belongs to: its sample or pair) and ``source``, and for the
    archetype measures ``archetype``, ``arm`` and ``instance`` (`LabelledTrace`). A malformed line, or
    an id given twice, is a named error with its line number.

    Raises:
        CotscopeError: for a missing file or a malformed line.
    """
    p = Path(path)
    if not p.is_file():
        raise CotscopeError(f"no labelled file at {p}")
    out: list[LabelledTrace] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "trace" in row:
                trace = Trace.model_validate(row["trace"])
            else:
                cot, answer = str(row["cot"]), str(row.get("answer", ""))
                trace = Trace(system="file", steps=make_steps(cot, lambda s: len(s.split())), final_text=answer, raw_text=cot,
                              answer=answer or None, channel=row.get("channel", "prompted"))
            label = row["label"]
            if not isinstance(label, (bool, int)) or label not in (0, 1):
                raise ValueError(f"label must be true/false or 0/1, got {label!r}")
            rid = str(row.get("id", n))
            if rid in seen:
                raise ValueError(f"the id {rid!r} is on line {seen[rid]} already; ids must be unique")
            seen[rid] = n
            out.append(LabelledTrace(id=rid, question=str(row.get("question", "")), trace=trace, label=bool(label),
                                     source=str(row.get("source") or p.name), cluster=str(row.get("cluster", "")),
                                     archetype=str(row.get("archetype", "")), arm=row.get("arm"), instance=str(row.get("instance", "")),
                                     recorded=dict(row.get("recorded") or {})))
        except (json.JSONDecodeError, KeyError, ValueError, TypeError, ValidationError) as exc:
            raise CotscopeError(f"{p}:{n}: not a labelled trace ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return out


def _sniff(p: Path) -> str:
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "chainscope"
    with p.open(encoding="utf-8", errors="replace") as fh:
        head = fh.readline()
    if "instance_id" in head and "archetype" in head:  # the monitorability-evals scaffold's rows, CSV or JSON lines
        return "monitorability"
    if suffix == ".csv":
        return "bonafide"
    if suffix == ".json":
        return "faithcot"
    return "jsonl"


def read_labelled(source: str | Path) -> list[LabelledTrace]:
    """Labelled traces from ``[<format>:]<path>[?option=value&...]`` (see the module docstring).

    Raises:
        CotscopeError: for an unknown format or option, a missing file, or a record it cannot read.
    """
    text = str(source)
    fmt, sep, rest = text.partition(":")
    if not sep or fmt not in FORMATS:
        fmt, rest = "", text
    rest, _, query = rest.partition("?")
    opts = dict(kv.partition("=")[::2] for kv in query.split("&") if kv)
    p = Path(rest)
    if not p.is_file():
        raise CotscopeError(f"no labelled file at {p}")
    fmt = fmt or _sniff(p)
    readers: dict[str, Callable[..., list[LabelledTrace]]] = {
        "chainscope": read_chainscope, "bonafide": read_bonafide, "faithcot": read_faithcot, "monitorability": read_monitorability,
    }
    if fmt == "jsonl":
        if opts:
            raise CotscopeError(f"{text}: the jsonl format takes no options")
        return load_labelled(p)
    import inspect

    known = [k for k in inspect.signature(readers[fmt]).parameters if k != "path"]
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise CotscopeError(f"{text}: unknown option(s) {unknown} for the {fmt} reader; known: {', '.join(known) or 'none'}")
    return readers[fmt](p, **opts)
