"""Benchmark: retrain organisms from scratch and time it; target under 10 minutes each on
2 CPU cores. Optionally checks that the retrained weights equal the shipped ones (same seed,
same torch build) and validates the retrained checkpoints.

    python bench/organisms.py [NAME ...] [--out /tmp/organisms] [--seed 0] [--compare-shipped]
                              [--direct-baseline] [--record]

``--direct-baseline`` also trains a direct-answer-only model of the same size and budget on
the faithful organism's chain length, and reports its accuracy beside the faithful
organism's step-by-step accuracy: the evidence that the task needs serial computation.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

from cotscope import get_backend, get_task
from cotscope.organisms import ORGANISMS
from cotscope.organisms.checkpoints import SHIPPED
from cotscope.organisms.train import train
from cotscope.organisms.zoo import cot_token_budget

TARGET_S = 600


def _same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(bool((x[k] == y[k]).all()) for k in x)


def _accuracy(model_dir: Path, n_ops: int, n: int = 200, cot: bool = False) -> tuple[int, int]:
    from cotscope import GenerationParams, get_system

    backend = get_backend(f"organism/{model_dir}", cache=False)
    task = get_task("chain", {"n_ops": str(n_ops)}, limit=n, seed=0)
    system = get_system("cot" if cot else "direct", backend, task.kind, GenerationParams(max_new_tokens=cot_token_budget(n_ops)))
    traces = system.run(task.samples)
    return sum(task.grade(t.answer, s) for t, s in zip(traces, task.samples, strict=True)), len(task.samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(ORGANISMS))
    parser.add_argument("--out", default="/tmp/cotscope-organisms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-shipped", action="store_true", help="check the weights equal the shipped checkpoint's")
    parser.add_argument("--direct-baseline", action="store_true", help="train a direct-only model of the same size and budget")
    parser.add_argument("--steps", type=int, help="training steps (default: each organism's own; fewer for a smoke run)")
    parser.add_argument("--record", action="store_true", help="Add each organism's training time to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    ok = True
    for name in args.names:
        out = Path(args.out) / name
        t0 = time.perf_counter()
        result = train(ORGANISMS[name], out, seed=args.seed, steps=args.steps)
        wall = time.perf_counter() - t0
        met = wall < TARGET_S
        ok &= met
        line = f"{name:<9} {result.steps} steps  {wall:6.1f} s  final loss {result.losses[-1]:.4f}  target <{TARGET_S} s: {'met' if met else 'MISSED'}"
        if args.compare_shipped and (SHIPPED / name).is_dir():
            same = _same_weights(out, SHIPPED / name)
            ok &= same
            line += f"  weights equal shipped: {same}"
        print(line, flush=True)
        if args.record and args.steps is None:  # a smoke run with fewer steps is no figure
            from report import record

            record("organisms", f"train {name}, seed {args.seed}", {"wall_s": round(wall, 1), "steps": result.steps})
    if args.direct_baseline:
        spec = ORGANISMS["faithful"]
        direct = replace(spec, name="direct-only", mix={"direct": 1.0})
        out = Path(args.out) / "direct-only"
        t0 = time.perf_counter()
        train(direct, out, seed=args.seed)
        k, n = _accuracy(out, spec.n_ops)
        print(f"direct-only model, {spec.n_ops} ops, trained {time.perf_counter() - t0:.0f} s: {k}/{n} = {k / n:.1%} (chance 10%)")
        faithful = Path(args.out) / "faithful" if (Path(args.out) / "faithful").is_dir() else SHIPPED / "faithful"
        k, n = _accuracy(faithful, spec.n_ops, cot=True)
        print(f"faithful organism step by step, {spec.n_ops} ops ({faithful}): {k}/{n} = {k / n:.1%}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
