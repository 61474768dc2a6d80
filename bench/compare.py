"""Benchmark: direct, cot and shoggoth-face side by side on the embedded model.

Prints wall time per system and in all, peak memory, and checks the target: the comparison
finishes in under 10 minutes on 2 CPU cores.

    python bench/compare.py [--n-samples N] [--experiments truncate,...] [--model SPEC] [--record]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

from cotscope import AuditConfig, compare, get_backend
from cotscope.compare import render_comparison

TARGET_S = 600.0
SYSTEMS = ("cot", "shoggoth-face", "direct")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--experiments", default="truncate")
    parser.add_argument("--model", default=AuditConfig().model)
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    config = AuditConfig(model=args.model, n_samples=args.n_samples, experiments=tuple(args.experiments.split(",")))
    t0 = time.perf_counter()
    backend = get_backend(config.model)
    with tempfile.TemporaryDirectory() as out:
        comparison = compare(SYSTEMS, config, out, backend=backend, progress=False)
    wall = time.perf_counter() - t0
    print(render_comparison(comparison))
    print()
    for col in comparison.columns:
        w = col.values["cost/wall_s"]
        print(f"{col.system:<15} {w.value * w.n:.1f} s for {w.n} questions")
    print(f"wall time             {wall:.1f} s  target < {TARGET_S:.0f} s  ({args.n_samples} samples, experiments {args.experiments})")
    print(f"peak memory (RSS)     {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    ok = wall < TARGET_S
    print(f"target                {'met' if ok else 'MISSED'}")
    if args.record:
        from report import record

        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print("recorded in", record("compare", f"{config.model.split('/')[-1]}, {args.experiments}, n={args.n_samples}",
                                    {"wall_s": round(wall, 1), "peak_gb": round(peak_gb, 2)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
