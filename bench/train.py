"""Benchmark: GRPO steps per second and peak memory of `cotscope train` on an organism and on
SmolLM2-135M (2 CPU cores), audits off, run alone. No target: the figures go in the README.

    python bench/train.py [--steps 5] [--models organism/mixed,smollm2-135m] [--record]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = {
    "organism/mixed": ["--task", "chain", "--task-arg", "n_ops=3", "--max-completion-length", "72", "--num-generations", "8", "--prompts-per-step", "4"],
    "smollm2-135m": ["--max-completion-length", "128", "--num-generations", "4", "--prompts-per-step", "2"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--models", default="organism/mixed,smollm2-135m")
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    cotscope = str(Path(sys.executable).parent / "cotscope")
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [cotscope, "train", "--model", model, *ARGS.get(model, []), "--rewards", "correct,format", "--steps", str(args.steps),
                   "--audit-every", "0", "--out", tmp, "--no-progress"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
            log = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines()]
            step_times = [float(e["step_time"]) for e in log if "step_time" in e][1:]  # the first step warms up
            per_step = sum(step_times) / len(step_times) if step_times else float("nan")
            print(f"{model}: {args.steps} steps, {per_step:.2f} s/step after the first ({1 / per_step:.2f} steps/s), "
                  f"{wall:.0f} s wall with loading, peak memory {peak_gb:.2f} GB (largest child so far)")
            if args.record:
                from report import record

                record("train", f"{model}, GRPO, {args.steps} steps", {"wall_s": round(wall, 1), "s_per_step": round(per_step, 2),
                                                                      "peak_gb": round(peak_gb, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
