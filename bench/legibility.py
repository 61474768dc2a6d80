"""Benchmark: the model-free legibility pass (wordfreq real-word share, lingua language share,
surface signals) over 1,000 CoTs. Target: under 2 seconds on 2 CPU cores, after the language
models are loaded (their one-time load is printed apart).

    python bench/legibility.py [--n 1000] [--record]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from cotscope.experiments.legibility import _detector, language_share, real_word_share, surface

TARGET_S = 2.0
STEPS = [
    "Ben starts with {a} stamps.", "A friend gives him {b} more, so he has {c}.", "Then he gives away {d}.",
    "That leaves {e} stamps.", "So the answer is {e}.", "b: so 7*7=9", "c: then -2", "...",
]


def cot(rng: random.Random) -> list[str]:
    a, b, d = rng.randint(1, 20), rng.randint(1, 20), rng.randint(0, 5)
    vals = dict(a=a, b=b, c=a + b, d=d, e=a + b - d)
    return [rng.choice(STEPS).format(**vals) for _ in range(rng.randint(3, 8))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    rng = random.Random(0)
    cots = [cot(rng) for _ in range(args.n)]
    t0 = time.perf_counter()
    _detector()
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for steps in cots:
        text = "\n".join(steps)
        real_word_share(text)
        language_share(text)
        surface(text, steps)
    wall = time.perf_counter() - t0
    print(f"CoTs                  {args.n} ({sum(len(c) for c in cots)} steps)")
    print(f"language models load  {load:.1f} s (once per process)")
    print(f"legibility pass       {wall:.2f} s = {1000 * wall / args.n:.2f} ms per CoT  target < {TARGET_S:.0f} s per 1,000")
    ok = wall * 1000 / args.n < TARGET_S
    print(f"target                {'met' if ok else 'MISSED'}")
    if args.record:
        from report import record

        print("recorded in", record("legibility", f"model-free pass, {args.n} CoTs", {"wall_s": round(wall, 2), "load_s": round(load, 1)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
