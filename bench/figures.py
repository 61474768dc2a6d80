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
               encoder and paraphraser on the embedded model (docs/stego.md)
  legibility   `cotscope audit --experiments legibility --n-samples 20` on the embedded model
               (docs/legibility.md)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _ci(e, pct: bool = True, signed: bool = False) -> str:
    if e is None or e.value is None:
        return "n/a"
    k = 100 if pct else 1
    sign = "+" if signed else ""
    if pct:
        return f"{e.value * k:{sign}.1f}% [{e.lo * k:{sign}.1f}, {e.hi * k:{sign}.1f}]"
    return f"{e.value:{sign}.3f} [{e.lo:{sign}.3f}, {e.hi:{sign}.3f}]"


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
        for k, label in names:
            if k in arm.change:
                rows.append({"arm": arm.arm, "audit": "change, paired", label: _ci(arm.change[k], signed=True)})
    rows += [{"arm": "B - A", "audit": "last audit, paired", **{label: _ci(o.safety_tax[k], signed=True) for k, label in names if k in o.safety_tax}}]
    return f"organisms obfuscation (organism {o.organism}, penalty {o.penalty}, seed {o.seed}, {o.audit_samples} held-out questions)", rows


def _est(v):
    from cotscope.stats import Estimate

    return v if v is None or isinstance(v, Estimate) else Estimate.model_validate(v)


def stego(out: Path, n: int = 10, model: str = "") -> tuple[str, list[dict]]:
    from cotscope.stego.run import stego as run

    res = run(run_dir=out, paraphrasers=("none", "smollm2-135m"), n_samples=n, progress=False, plots=False, **({"model": model} if model else {}))
    s = res.summary
    rows = []
    for enc in dict.fromkeys(c.encoder for c in s.cells):
        row = {"encoder": enc}
        for c in (c for c in s.cells if c.encoder == enc):
            e = c.exact
            row[f"through {c.paraphraser}: exact"] = f"{round(e.value * c.n) if e.value is not None else 0}/{c.n}"
            row[f"through {c.paraphraser}: capacity (bits)"] = _ci(c.capacity, pct=False)
            if c.paraphraser != "none":
                row["n to tell it from 0"] = "settled" if c.capacity_settle_n is None else f"about {c.capacity_settle_n}"
                row["answer kept"] = _ci(c.answer_kept)
        rows.append(row)
    return f"stego, embedded model, paraphrasers none,smollm2-135m, n={s.n_samples}", rows


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


FIGURES = {"steps": steps, "obfuscation": obfuscation, "stego": stego, "legibility": legibility}


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
        setting, rows = FIGURES[args.name](out, model=args.model, **extra)
        wall = time.perf_counter() - start
    for row in rows:
        print(" | ".join(f"{k}: {v}" for k, v in row.items()))
    print(f"{args.name}: {len(rows)} rows in {wall:.0f} s")
    if args.record:
        from report import record

        print("recorded in", record(f"figures.{args.name}", setting, {"wall_s": round(wall, 1), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
