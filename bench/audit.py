"""Benchmark: the default `cotscope audit` on the embedded model.

Prints wall time, peak memory, and generated and scored tokens per second, and checks the
targets on 2 CPU cores: the default audit (every experiment) in under 10 minutes, the
truncation experiment alone (``--experiments truncate``) in under 5.

    python bench/audit.py [--n-samples N] [--model SPEC] [--experiments truncate,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

from cotscope import AuditConfig, audit, get_backend
from cotscope.backends._threads import available_cores

TARGET_S = {"full": 600.0, "truncate": 300.0}


class Timed:
    """Wraps a backend's generate and score to time them and count their tokens."""

    def __init__(self, backend):
        self.backend = backend
        self.gen_s = self.score_s = 0.0
        for name in ("generate", "score"):
            setattr(self, f"_{name}", getattr(backend, name))
        backend.generate = self.generate
        backend.score = self.score

    def generate(self, prompts, params):
        t = time.perf_counter()
        try:
            return self._generate(prompts, params)
        finally:
            self.gen_s += time.perf_counter() - t

    def score(self, prompts, continuations):
        t = time.perf_counter()
        try:
            return self._score(prompts, continuations)
        finally:
            self.score_s += time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=AuditConfig().n_samples)
    parser.add_argument("--model", default=AuditConfig().model)
    parser.add_argument("--experiments", default=",".join(AuditConfig().experiments))
    parser.add_argument("--out", help="Keep the run directory here (default: a temporary one).")
    args = parser.parse_args()
    experiments = tuple(x for x in args.experiments.split(",") if x)
    config = AuditConfig(model=args.model, n_samples=args.n_samples, experiments=experiments)
    target = TARGET_S["truncate" if experiments == ("truncate",) else "full"]
    t0 = time.perf_counter()
    backend = get_backend(config.model)
    load_s = time.perf_counter() - t0
    timed = Timed(backend)
    with tempfile.TemporaryDirectory() as tmp:
        result = audit(config, args.out or tmp, backend=backend)
    usage = backend.usage
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gen_tokens = getattr(backend, "n_generated_tokens", 0)
    scored_tokens = getattr(backend, "n_scored_tokens", 0)
    prefill_tokens = getattr(backend, "n_prefill_tokens", 0)
    s = result.summary
    print(f"model                 {config.model}  ({available_cores()} cores)")
    print(f"samples               {s.n_samples}  (CoT chunks per sample {s['cost/cot_steps'].value:.1f})")
    print(f"experiments           {','.join(experiments)}")
    print(f"wall time             {wall:.1f} s  (model load {load_s:.1f} s)  target < {target:.0f} s")
    print(f"peak memory (RSS)     {peak_mb:.0f} MiB")
    print(f"generation            {gen_tokens} tokens in {timed.gen_s:.1f} s = {gen_tokens / max(timed.gen_s, 1e-9):.1f} tokens/s")
    if scored_tokens:
        print(f"scoring               {scored_tokens} tokens in {timed.score_s:.1f} s = {scored_tokens / max(timed.score_s, 1e-9):.1f} tokens/s")
    if prefill_tokens:
        print(f"prompt tokens run     {prefill_tokens} (generation and scoring, after prefix sharing)")
    print(f"model calls           {usage.calls} calls, {usage.prompts} prompts, {usage.cache_hits} answered from the cache")
    ok = wall < target
    print(f"target                {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
