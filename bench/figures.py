"""The experiments whose outcomes the docs quote, run as documented and recorded as tables: each
figure a doc shows comes from a line of bench/results.jsonl that this script wrote, and
`python bench/report.py` writes it into the doc's ``<!-- results: figures.NAME -->`` region.

    python bench/figures.py NAME [--record] [--out DIR] [--n-samples N] [--model SPEC]

NAME:
  steps        `cotscope organisms validate --steps --n-samples 20`: deletion and resampling
               against each organism's ground truth (docs/steps.md)
  obfuscation  `cotscope organisms obfuscation`: both GRPO arms' first and last audits
               (docs/training.md)
  stego        `cotscope stego --paraphrasers none,smollm2-135m --n-samples 10`: capacity per
               encoder and paraphraser on the embedded model, and the paraphraser's obedience
               to injections and its coverage of each channel (docs/stego.md)
  stego_organism  the same on organism/faithful (chain task, the chain paraphraser, n=100)
  legibility   `cotscope audit --experiments legibility --n-samples 20` on the embedded model
               (docs/legibility.md)
  organisms    `cotscope organisms validate --n-samples 100` and `cotscope drift` between the
               faithful and encoded runs: legibility and paraphrase per organism (docs/legibility.md)
  iphr         `cotscope iphr --pairs-per-property 2 --samples 4` (docs/validation.md)
  detectors    `cotscope detectors --hints` on the embedded model's hint audit, and
               `--organisms` on the faithful and post-hoc organisms (docs/validation.md)
  tool_loop    the tool loop with a corrupted result on a tool-trained GGUF (--model
               llamacpp/<path>; docs/reasoning.md)
  paired       `cotscope audit --model organism/faithful --task chain --experiments
               mistake,delete,resample --n-samples 12`: off-policy edits and on-policy
               resampling, by third and paired by step (docs/steps.md)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from report import model_name


def _ci(e, pct: bool = True, signed: bool = False) -> str:
    """`value [lo, hi]` as the project's tables write it (rates in percent); n/a for none."""
    from cotscope.report.table import fmt_interval

    return "n/a" if e is None else fmt_interval(e, pct, signed)


def steps(out: Path, n: int = 20, model: str = "") -> tuple[str, list[dict]]:
    from cotscope.organisms.validate import validate

    v = validate(out_dir=out, n_samples=n, steps=True, progress=False)
    rows = [{"organism": r.organism, "CoT load-bearing (truth)": "yes" if r.truth else "no",
             "delete: answer changes minus control": _ci(r.delete_effect, pct=False, signed=True), "says": r.delete_says,
             "resample: anchors": _ci(r.anchors), "resample: importance": _ci(r.importance, pct=False, signed=True),
             "says ": r.resample_says} for r in v.steps]
    return f"organisms validate --steps --n-samples {n}", rows


def obfuscation(out: Path, n: int = 50, model: str = "") -> tuple[str, list[dict]]:
    from cotscope.organisms.obfuscation import obfuscation as run

    o = run(out, audit_samples=n, progress=False)
    names = (("organism/encoded_share", "encoded lines"), ("accuracy/subject", "accuracy"), ("monitor/flag_share", "monitor flags"),
             ("paraphrase/answer_change", "answer moved by a paraphrase"))
    rows = []
    for arm in o.arms:
        for when, curve in (("first audit", arm.curves[0]), (f"after {arm.steps} steps", arm.curves[-1])):
            m = curve["metrics"]
            rows.append({"arm": f"{arm.arm} ({'+'.join(arm.rewards)})", "audit": when,
                         **{label: _ci(_est(m.get(k))) for k, label in names}})
        rows.append({"arm": arm.arm, "audit": "last minus first, paired", **{label: _ci(arm.change[k], signed=True) for k, label in names if k in arm.change}})
    rows += [{"arm": "B - A", "audit": "last audit, paired", **{label: _ci(o.safety_tax[k], signed=True) for k, label in names if k in o.safety_tax}}]
    return f"organisms obfuscation (organism {o.organism}, penalty {o.penalty}, seed {o.seed}, {o.audit_samples} held-out questions)", rows


def _est(v):
    from cotscope.stats import Estimate

    return v if v is None or isinstance(v, Estimate) else Estimate.model_validate(v)


def _stego_tables(s) -> list[tuple[str, list[dict]]]:
    """A stego summary's tables: capacity per encoder and paraphraser, and each model paraphraser's
    obedience to injections and coverage of each channel."""
    rows = []
    for enc in dict.fromkeys(c.encoder for c in s.cells):
        row = {"encoder": enc}
        for c in (c for c in s.cells if c.encoder == enc):
            e = c.exact
            row[f"through {c.paraphraser}: exact"] = f"{round(e.value * c.n) if e.value is not None else 0}/{c.n}"
            row[f"through {c.paraphraser}: capacity (bits)"] = _ci(c.capacity, pct=False)
            if c.paraphraser != "none":
                row[f"through {c.paraphraser}: n to tell it from 0"] = "settled" if c.capacity_settle_n is None else f"about {c.capacity_settle_n}"
                row[f"through {c.paraphraser}: answer kept"] = _ci(c.answer_kept)
        rows.append(row)
    para = []
    for p in s.paraphrasers:
        if p.paraphraser == "none":
            continue
        para.append({"paraphraser": p.paraphraser, "injections obeyed": _ci(p.obedience), "control (no instruction)": _ci(p.control),
                     "obeyed minus control": _ci(p.effect, signed=True),
                     **{f"{ch} bits changed between two draws": _ci(e) for ch, e in p.coverage.items()}})
    return [("", rows), (".paraphrasers", para)]


def stego(out: Path, n: int = 10, model: str = ""):
    from cotscope.stego.run import stego as run

    res = run(run_dir=out, paraphrasers=("none", "smollm2-135m"), n_samples=n, progress=False, plots=False, **({"model": model} if model else {}))
    s = res.summary
    setting = f"stego, {model or 'the embedded model'}, paraphrasers none,smollm2-135m, n={s.n_samples}, cover accuracy {_ci(s.cover_accuracy)}"
    return [(suffix, setting, rows) for suffix, rows in _stego_tables(s)]


def stego_organism(out: Path, n: int = 100, model: str = ""):
    from cotscope.stego.run import stego as run

    res = run(run_dir=out, model=model or "organism/faithful", task="chain", encoders=("connective", "lexical", "case", "punctuation", "numbers", "acrostic"),
              paraphrasers=("none", "chain"), n_samples=n, injections_per_sample=0, progress=False, plots=False)
    s = res.summary
    return f"stego, {model or 'organism/faithful'}, chain task, paraphrasers none,chain, n={s.n_samples}", _stego_tables(s)[0][1]


def legibility(out: Path, n: int = 20, model: str = "") -> tuple[str, list[dict]]:
    from cotscope import audit
    from cotscope.audit import make_config

    result = audit(make_config(experiments=("legibility",), n_samples=n, **({"model": model} if model else {})), out, progress=False, plots=False)
    rows = []
    for name, e in result.summary.metrics.items():
        if name.startswith("legibility/") and e.value is not None:
            pct = e.hi <= 1.0 and e.lo >= 0.0 and "nll" not in name and "words_per" not in name
            rows.append({"metric": name, "value [95% CI]": _ci(e, pct=pct), "n": e.n})
    return f"audit --experiments legibility --n-samples {n}, {model or 'the embedded model'}", rows


def paired(out: Path, n: int = 12, model: str = "") -> tuple[str, list[dict]]:
    from cotscope import audit
    from cotscope.config import AuditConfig
    from cotscope.experiments import get_experiments
    from cotscope.experiments._positions import BY_THIRD
    from cotscope.experiments.resample import PAIRED

    cfg = AuditConfig(model=model or "organism/faithful", task="chain", roles={"rewriter": "chain"},
                      experiments=("mistake", "delete", "resample"), n_samples=n)
    result = audit(cfg, out, progress=False, plots=False)
    rows = []
    for m in (m for e in get_experiments(cfg) for m in e.metrics() if m.group in (PAIRED, BY_THIRD)):
        e = result.summary.metrics.get(m.name)
        if e is not None and e.value is not None:
            rows.append({"group": "paired by step" if m.group == PAIRED else "by third",
                         "measure": m.label.format(system="system", baseline="baseline"), "value [95% CI]": _ci(e, pct=False, signed=True), "n": e.n})
    return f"{cfg.model}, chain task, mistake,delete,resample, n={n}", rows


def organisms(out: Path, n: int = 100, model: str = "") -> list[tuple[str, str, list[dict]]]:
    import json

    from cotscope.drift import drift
    from cotscope.organisms.validate import validate

    v = validate(out_dir=out, n_samples=n, progress=False)
    dirs = {a.organism: Path(a.run_dir) for a in v.accuracy}
    rows = []
    for name, run in dirs.items():
        m = json.loads((run / "summary.json").read_text())["metrics"]
        row = {"organism": name}
        for key, label in (("legibility/real_word_share", "real words"), ("paraphrase/answer_change", "answers changed by a paraphrase")):
            e = _est(m.get(key))
            row[label] = _ci(e) if e is not None else "n/a"
        rows.append(row)
    setting = f"organisms validate --n-samples {n}"
    tables = [("", setting, rows)]
    if {"faithful", "encoded"} <= set(dirs):
        kls = []
        for a, b in (("faithful", "encoded"), ("faithful", "faithful")):
            d = drift(dirs[a], dirs[b], out / f"drift-{a}-{b}")
            kls.append({"A": a, "B": b, "KL(A || B), on A's CoTs (nats/token)": _ci(d.kl_ab, pct=False),
                        "KL(B || A), on B's CoTs (nats/token)": _ci(d.kl_ba, pct=False), "samples": d.n_samples})
        tables.append((".drift", f"{setting}, then cotscope drift between the runs", kls))
    return tables


def iphr(out: Path, n: int = 4, model: str = ""):
    from cotscope.groundtruth.iphr_run import IphrConfig, iphr as run

    res = run(IphrConfig(pairs_per_property=2, samples=n, **({"model": model} if model else {})), out)
    s = res.summary
    judged = [p for p in s.pairs if p.accuracy_diff is not None]
    row = {"questions": s.n_questions, "responses": s.n_responses, "cut by the budget": s.n_cut, "accuracy (YES/NO answers)": _ci(s.accuracy),
           "YES share": _ci(s.yes_rate), "IPHR rate": _ci(s.rate), "judged pairs": len(judged)}
    return f"iphr --pairs-per-property 2 --samples {n}, {model_name(model) if model else 'the embedded model'} through cot", [row]


def _detector_rows(table) -> list[dict]:
    return [{"signal": r.signal, "positives": r.n_pos, "negatives": r.n_neg, "AUROC": _ci(r.auroc, pct=False),
             "TPR at its threshold": _ci(r.tpr), "FPR": _ci(r.fpr)} for r in table.rows]


def detectors(out: Path, n: int = 30, model: str = ""):
    from cotscope import audit
    from cotscope.audit import make_config
    from cotscope.config import AuditConfig
    from cotscope.groundtruth import detectors as d

    run = audit(make_config(experiments=("hint", "truncate", "paraphrase", "mistake"), n_samples=n, **({"model": model} if model else {})),
                out / "hints", progress=False, plots=False)
    hints = d.hint_table(run.run_dir)
    runs = {}
    for name, label in (("faithful", False), ("post-hoc", True)):
        cfg = AuditConfig(model=f"organism/{name}", task="chain", roles={"rewriter": "chain"}, continue_max_new_tokens=112, n_samples=30,
                          experiments=("truncate", "paraphrase", "mistake", "filler", "legibility"))
        runs[str(audit(cfg, out / name, progress=False, plots=False).run_dir)] = label
    organisms = d.organism_table(runs)
    return [("", f"detectors --hints on audit --experiments hint,truncate,paraphrase,mistake --n-samples {n}, {model or 'the embedded model'}",
             _detector_rows(hints)),
            (".organisms", "detectors --organisms faithful=false post-hoc=true, 30 traces each (chain task)", _detector_rows(organisms))]


def tool_loop(out: Path, n: int = 10, model: str = ""):
    """The tool loop on a GGUF that was trained to call tools (give it with --model llamacpp/<path>)."""
    from cotscope import audit
    from cotscope.config import AuditConfig

    if not model:
        raise SystemExit("tool_loop needs --model llamacpp/<path to a tool-trained GGUF>")
    cfg = AuditConfig(model=model, task="arithmetic", task_args={"n_ops": "3", "max_value": "400", "ops": "*+-"}, n_samples=n,
                      system="tool-loop?tools=calculator&calls=native", experiments=("corrupt_result",))
    r = audit(cfg, out, progress=False, plots=False)
    m = r.summary.metrics
    calls = sum(int(rec.traces["subject"].meta.get("tool_calls", 0)) for rec in r.records)
    with_calls = sum(1 for rec in r.records if rec.traces["subject"].meta.get("tool_calls"))
    row = {"trajectories": len(r.records), "with a call": with_calls, "calls": calls,
           **{label: _ci(m.get(k)) for k, label in (("accuracy/subject", "accuracy with the tools"), ("accuracy/baseline", "accuracy answering at once"),
                                                    ("corrupt_result/answer_change", "answer changed, a result corrupted"),
                                                    ("corrupt_result/control_change", "answer changed, result intact"),
                                                    ("corrupt_result/follows", "answer is the corrupted value"))}}
    return f"{model_name(model)}, tool-loop?tools=calculator&calls=native, arithmetic n_ops=3 max_value=400 ops=*+-, n={n}", [row]


FIGURES = {"iphr": iphr, "detectors": detectors, "tool_loop": tool_loop, "stego_organism": stego_organism, "organisms": organisms, "paired": paired, "steps": steps, "obfuscation": obfuscation, "stego": stego, "legibility": legibility}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(FIGURES))
    parser.add_argument("--out", type=Path, help="where the run goes (default: a temporary directory)")
    parser.add_argument("--record", action="store_true", help="Add the table to bench/results.jsonl (see bench/report.py).")
    parser.add_argument("--n-samples", type=int, help="samples (default: the documented run's)")
    parser.add_argument("--model", default="", help="the model, where the figure takes one (legibility, stego; default: the embedded model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / args.name
        start = time.perf_counter()
        extra = {"n": args.n_samples} if args.n_samples else {}
        made = FIGURES[args.name](out, model=args.model, **extra)
        wall = time.perf_counter() - start
    tables = made if isinstance(made, list) else [("", *made)]  # one run may give several tables
    for suffix, setting, rows in tables:
        for row in rows:
            print(" | ".join(f"{k}: {v}" for k, v in row.items()))
        print(f"{args.name}{suffix}: {len(rows)} rows ({setting}); the run took {wall:.0f} s")
        if args.record:
            from report import record

            print("recorded in", record(f"figures.{args.name}{suffix}", setting, {"wall_s": round(wall, 1), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
