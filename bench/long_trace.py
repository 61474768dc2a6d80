"""Benchmark: what a long thinking trace costs. The long-trace organism (``organism/long-think``,
hundreds of lines of thinking on the cycle task) through the ``think`` system, every default
experiment, the chain rewriter; prints the prompt tokens the model ran (after prefix sharing and
the KV store) against the tokens of the traces themselves (prompt and thinking), and checks the
target: at most 3x, so that an audit costs about one pass per trace plus short suffixes.

    python bench/long_trace.py [--n-samples N] [--n-ops N] [--experiments truncate,...] [--kv-store MIB] [--path fallback] [--record]

``--path fallback`` runs the same network through the path a model with sliding-window layers
takes (`backends.hf.WindowedHFBackend`: transformers' own ``generate``, no prefix store, no
decode stream), so the two paths are compared on one model: what windowed KV in the engine would
save on such a model is what this run costs beyond the engine's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from cotscope import AuditConfig, audit, get_backend
from cotscope.experiments import DEFAULT_EXPERIMENTS
from cotscope.organisms.zoo import cot_token_budget, get_spec

TARGET_RATIO = 3.0


def fallback(spec: str):
    """The organism's network through `WindowedHFBackend`, inside the organism's own template edge."""
    from cotscope.backends import Model
    from cotscope.backends.hf import WindowedHFBackend

    model = get_backend(spec)
    edge = getattr(model, "provider", model)
    net = edge.inner
    edge.inner = WindowedHFBackend(net.model, net.tok, batch_size=net.batch_size)
    return Model(edge)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--n-ops", type=int, default=get_spec("long").n_ops, help="Lines of thinking per trace (the cycle task's n_ops).")
    parser.add_argument("--model", default="organism/long-think")
    parser.add_argument("--experiments", default=",".join(DEFAULT_EXPERIMENTS))
    parser.add_argument("--kv-store", type=int, help="MiB of KV the backend keeps between calls (its kv_store option; default the backend's).")
    parser.add_argument("--path", choices=("engine", "fallback"), default="engine",
                        help="engine: the transformers engine; fallback: the path of models with sliding-window layers.")
    parser.add_argument("--out", help="Keep the run directory here (default: a temporary one).")
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    experiments = tuple(x for x in args.experiments.split(",") if x)
    model = args.model + (f"?kv_store={args.kv_store}" if args.kv_store is not None else "")
    config = AuditConfig(model=model, system="think" if args.model.endswith("-think") else "cot", task="cycle",
                         task_args={"n_ops": str(args.n_ops)}, n_samples=args.n_samples, experiments=experiments,
                         max_new_tokens=cot_token_budget(args.n_ops, get_spec("long").line_tokens), roles={"rewriter": "chain"})
    t0 = time.perf_counter()
    backend = get_backend(config.model) if args.path == "engine" else fallback(config.model)
    with tempfile.TemporaryDirectory() as tmp:
        result = audit(config, args.out or tmp, backend=backend, progress=False)
    wall = time.perf_counter() - t0
    traces = [r.traces["subject"] for r in result.records]
    trace_tokens = sum(t.n_prompt_tokens + t.n_generated_tokens for t in traces)
    thinking = sum(t.n_generated_tokens for t in traces)
    run = getattr(backend, "n_prefill_tokens", 0)
    ratio = run / trace_tokens if trace_tokens else float("nan")
    lines = [len(t.steps) for t in traces]
    print(f"model                 {config.model} ({config.system}), cycle task, {args.n_ops} operations")
    print(f"traces                {len(traces)}: {min(lines, default=0)}-{max(lines, default=0)} lines of thinking, "
          f"{thinking} tokens generated; cut by their budget: {sum(t.finish_reason == 'length' for t in traces)}")
    print(f"experiments           {','.join(experiments)}")
    print(f"wall time             {wall:.1f} s; generated {getattr(backend, 'n_generated_tokens', 0)} tokens in all")
    print(f"trace tokens          {trace_tokens} (each trace's prompt and thinking)")
    print(f"prompt tokens run     {run} (generation and scoring, after prefix sharing and the KV store)")
    print(f"ratio                 {ratio:.2f}x the traces' own tokens; target at most {TARGET_RATIO:.0f}x: "
          f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}")
    if args.record:
        from report import record

        store = f", kv_store={args.kv_store} MiB" if args.kv_store is not None else ""
        path = ", fallback path (no prefix store, no decode stream)" if args.path == "fallback" else ""
        setting = f"long-trace organism, {args.n_ops} lines, {','.join(experiments)}, n={args.n_samples}{store}{path}"
        print("recorded in", record("long_trace", setting, {"wall_s": round(wall, 1), "trace_tokens": trace_tokens,
                                                           "prompt_tokens_run": run, "ratio": round(ratio, 2)}))
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
