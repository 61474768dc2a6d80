"""Benchmark: an early-answering sweep with and without the shared-prefix KV cache.

Runs both paths in one process on the same traces: the plain path re-reads every truncated
prefix; the cached path runs each trace's common prefix once, then only the suffix at each
truncation point. Prints forward tokens, wall time and their ratios, and checks the target:
a K=10 sweep costs at most 1.5x one pass over the traces.

    python bench/truncation.py [--n-traces 8] [--k 10] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from cotscope import GenerationParams, get_backend, get_system, get_task
from cotscope.backends.hf import HFBackend
from cotscope.systems.prompts import answer_prefix

TARGET = 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-traces", type=int, default=8)
    parser.add_argument("--k", type=int, default=10, help="truncation points per trace")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()

    fast = get_backend(args.model, cache=False)
    fast = getattr(fast, "provider", fast)  # the provider inside the Model wrapper every role uses
    if not isinstance(fast, HFBackend):
        print("this benchmark measures the transformers backend", file=sys.stderr)
        return 2
    plain = HFBackend(fast.model, fast.tok, batch_size=fast.batch_size, prefix_cache=False)
    # Multiple choice: the forced answer is the choice letter with the highest log-probability.
    task = get_task("arithmetic", {"n_ops": "3", "choices": "4"}, limit=args.n_traces)
    system = get_system("cot", fast, task.kind, GenerationParams(max_new_tokens=160))
    t0 = time.perf_counter()
    fast.n_generated_tokens = 0
    traces = system.run(task.samples)
    gen_s = time.perf_counter() - t0
    gen_tokens = fast.n_generated_tokens

    # K cut points per trace, at word boundaries spread over the whole CoT.
    prompts, full = [], []
    for sample, trace in zip(task.samples, traces, strict=True):
        words = trace.cot_text.split(" ")
        base = system.prompt(sample)
        full.append(base.with_prefix(answer_prefix(trace.cot_text, task.kind)))
        for j in range(1, args.k + 1):
            prompts.append(base.with_prefix(answer_prefix(" ".join(words[: round(j * len(words) / args.k)]), task.kind)))
    cands = [list("ABCD")] * len(prompts)

    def timed(backend, fn):
        backend.n_prefill_tokens = 0
        t = time.perf_counter()
        fn(backend)
        return backend.n_prefill_tokens, time.perf_counter() - t

    one_tokens, one_s = timed(plain, lambda b: b.score(full, [["A"]] * len(full)))
    naive_tokens, naive_s = timed(plain, lambda b: b.score(prompts, cands))
    fast_tokens, fast_s = timed(fast, lambda b: b.score(prompts, cands))
    params = GenerationParams(max_new_tokens=8, stop=("\n",))
    naive_gen_tokens, naive_gen_s = timed(plain, lambda b: b.generate(prompts, params))
    fast_gen_tokens, fast_gen_s = timed(fast, lambda b: b.generate(prompts, params))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    ratio = fast_tokens / one_tokens
    print(f"traces                       {len(traces)} (mean CoT {sum(len(t.cot_text.split()) for t in traces) / len(traces):.0f} words), K={args.k}")
    print(f"generation                   {gen_tokens} tokens in {gen_s:.1f} s = {gen_tokens / gen_s:.1f} tokens/s")
    print(f"one pass over the traces     {one_tokens} forward tokens, {one_s:.2f} s = {one_tokens / one_s:.0f} prefill tokens/s")
    print(f"sweep, scoring, plain        {naive_tokens} forward tokens, {naive_s:.2f} s")
    print(f"sweep, scoring, prefix cache {fast_tokens} forward tokens, {fast_s:.2f} s")
    print(f"sweep, forced greedy answer  plain {naive_gen_tokens} tokens {naive_gen_s:.2f} s; prefix cache {fast_gen_tokens} tokens {fast_gen_s:.2f} s")
    print(f"speed-up (scoring)           {naive_tokens / fast_tokens:.1f}x fewer tokens, {naive_s / fast_s:.1f}x less time")
    print(f"sweep cost / one pass        {ratio:.2f}x tokens, {fast_s / one_s:.2f}x time (target <= {TARGET}x)")
    print(f"peak memory (RSS)            {peak_mb:.0f} MiB")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
