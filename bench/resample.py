"""Benchmark: the cost of counterfactual resampling per trace, at N = 8, 16 and 32 rollouts.

Runs the `resample` experiment on a few traces (each rollout continues from the CoT cut before
or after a chunk, at the default T = 0.7) and prints, per N: wall time per trace, tokens the
rollouts generated, prompt tokens the backend ran, and the prompt tokens a backend without
prefix reuse would have run (every rollout's whole prompt), with the share that reuse saved.

    python bench/resample.py [--model organism/faithful] [--n-traces 4] [--rollouts 8,16,32] [--record]
"""

from __future__ import annotations

import argparse
import resource
import time

from cotscope import AuditConfig, GenerationParams, get_backend, get_system, get_task
from cotscope.experiments import Context
from cotscope.experiments.resample import Resample
from cotscope.systems.rewriter import make_rewriter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="organism/faithful")
    parser.add_argument("--task", default="chain")
    parser.add_argument("--n-traces", type=int, default=4)
    parser.add_argument("--rollouts", default="8,16,32")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()

    model = get_backend(args.model, cache=False)
    provider = getattr(model, "provider", model)
    task = get_task(args.task, {}, limit=args.n_traces)
    config = AuditConfig(model=args.model, task=args.task, n_samples=args.n_traces, max_new_tokens=args.max_new_tokens,
                         continue_max_new_tokens=args.max_new_tokens)
    system = get_system("cot", model, task.kind, GenerationParams(max_new_tokens=args.max_new_tokens))
    traces = system.run(task.samples)
    whole = [0]  # prompt tokens of every generation the provider was asked for
    generate_each = provider.generate_each

    def counted(prompts, params):
        outs = generate_each(prompts, params)
        whole[0] += sum(o.n_prompt_tokens for o in outs)
        return outs

    provider.generate_each = counted
    chunks = sum(len(t.steps) for t in traces)
    ctx = Context(config=config, task=task, subject=system, rewriter=make_rewriter("", model))
    print(f"{args.model}, {len(traces)} traces, {chunks} chunks in all; each N: rollouts from every chunk boundary")
    print(f"{'N':>4} {'s/trace':>9} {'rollout tokens':>15} {'prompt tokens run':>18} {'without reuse':>14} {'saved':>7}")
    for n in [int(x) for x in args.rollouts.split(",")]:
        ran0 = getattr(provider, "n_prefill_tokens", 0)
        whole0, gen0 = whole[0], model.usage.generated_tokens
        t0 = time.perf_counter()
        Resample({"rollouts": n}).run(ctx, task.samples, traces)
        wall = time.perf_counter() - t0
        ran = getattr(provider, "n_prefill_tokens", 0) - ran0
        asked = whole[0] - whole0
        saved = f"{100 * (1 - ran / asked):6.1f}%" if asked and ran else "    n/a"
        print(f"{n:>4} {wall / len(traces):>9.2f} {model.usage.generated_tokens - gen0:>15} {ran:>18} {asked:>14} {saved}")
        if args.record:
            from report import record

            record("resample", f"{args.model}, N={n}, {len(traces)} traces", {
                "wall_s": round(wall, 2), "s_per_trace": round(wall / len(traces), 2), "generated_tokens": model.usage.generated_tokens - gen0,
                "prompt_tokens_run": ran, "prompt_tokens_without_reuse": asked,
                "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
