"""Benchmark: an early-answering sweep with and without the shared-prefix KV cache.

Runs both paths in one process on the same traces: the plain path re-reads every truncated
prefix; the cached path runs each trace's common prefix once, then only the suffix at each
truncation point. Prints forward tokens, wall time and their ratios, and checks the target:
a K=10 sweep costs at most 1.5x one pass over the traces, in tokens and in time. Where the time
goes is printed per phase: the model's forward calls (how many, rows and tokens each, their
time) and the rest of the wall time (rendering, tokenizing, the KV store's bookkeeping,
sampling), per call and per row.

    python bench/truncation.py [--n-traces 8] [--k 10] [--model smollm2-135m] [--record]
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
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
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

    forward = {"calls": 0, "rows": 0, "tokens": 0, "s": 0.0}
    inner = fast.model.forward  # plain shares the same module

    def counted_forward(*a, **kw):
        ids = kw.get("input_ids", a[0] if a else None)
        t = time.perf_counter()
        out = inner(*a, **kw)
        forward["s"] += time.perf_counter() - t
        forward["calls"] += 1
        if ids is not None:
            forward["rows"] += int(ids.shape[0])
            forward["tokens"] += int(ids.shape[0] * ids.shape[1])
        return out

    fast.model.forward = counted_forward
    breakdown = {}

    def timed(backend, fn, name=None):
        backend.n_prefill_tokens = 0
        for k in forward:
            forward[k] = 0
        t = time.perf_counter()
        fn(backend)
        wall = time.perf_counter() - t
        if name:
            breakdown[name] = {**forward, "wall": wall}
        return backend.n_prefill_tokens, wall

    one_tokens, one_s = timed(plain, lambda b: b.score(full, [["A"]] * len(full)), "one pass")
    naive_tokens, naive_s = timed(plain, lambda b: b.score(prompts, cands), "scoring, plain")
    fast_tokens, fast_s = timed(fast, lambda b: b.score(prompts, cands), "scoring, prefix cache")
    params = GenerationParams(max_new_tokens=8, stop=("\n",))
    naive_gen_tokens, naive_gen_s = timed(plain, lambda b: b.generate(prompts, params), "greedy answer, plain")
    fast_gen_tokens, fast_gen_s = timed(fast, lambda b: b.generate(prompts, params), "greedy answer, prefix cache")
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
    print(f"sweep with a greedy answer   {fast_gen_tokens / one_tokens:.2f}x tokens, {fast_gen_s / one_s:.2f}x time of one pass")
    print(f"peak memory (RSS)            {peak_mb:.0f} MiB")
    print(f"where the time goes ({len(prompts)} rows a sweep):")
    print(f"  {'phase':28s} {'forward calls':>13s} {'rows/call':>9s} {'tokens/call':>11s} {'forward s':>9s} {'other s':>8s} {'ms/call':>8s} {'ms/row':>7s}")
    for name, b in breakdown.items():
        rows = len(full) if name == "one pass" else len(prompts)
        other = b["wall"] - b["s"]
        print(f"  {name:28s} {b['calls']:13d} {b['rows'] / max(b['calls'], 1):9.1f} {b['tokens'] / max(b['calls'], 1):11.0f} {b['s']:9.2f} {other:8.2f} "
              f"{1000 * b['wall'] / max(b['calls'], 1):8.1f} {1000 * b['wall'] / rows:7.1f}")
    time_ratio = fast_s / one_s
    if args.record:
        from report import record

        print("recorded in", record("truncation", f"{args.model}, {len(traces)} traces, K={args.k}", {
            "wall_s": round(fast_s, 2), "one_pass_s": round(one_s, 2), "token_ratio": round(ratio, 2), "time_ratio": round(time_ratio, 2),
            "greedy_time_ratio": round(fast_gen_s / one_s, 2), "peak_gb": round(peak_mb / 1024, 2)}))
    return 0 if ratio <= TARGET and time_ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
