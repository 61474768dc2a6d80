"""Benchmark: the default `cotscope audit` on the embedded model, or a model users bring.

Prints wall time, peak memory, generated tokens per second of wall time, the prompt tokens run
and decode row-steps, and checks the targets on 2 CPU cores: the default audit (every
experiment, 20 samples) in under 5 minutes and under 2 GB at peak; the truncation experiment
alone (``--experiments truncate``) in under 5 minutes; a full audit of a 0.5B-class instruct
GGUF at n=16 (``--model gguf/<file.gguf>`` or ``llamacpp/<file.gguf>``, ``--n-samples 16
--task gsm8k --task-arg path=bench/gsm8k_16.jsonl``) in under 15 minutes.

``--as-avx2`` runs the code paths of a CPU without AVX-512 or AMX on this one: cotscope is told
the CPU's flags without them (``$COTSCOPE_CPU_FLAGS``: transformers in float32), torch's own
kernels are held to AVX2 (``ATEN_CPU_CAPABILITY``), and so are oneDNN's and MKL's
(``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``). The clock, caches and memory stay this
machine's, so it stands in for an AVX2 machine's figure, it is not one; it is recorded in a
table of its own.

    python bench/audit.py [--n-samples N] [--model SPEC] [--experiments truncate,...]
                          [--task NAME] [--task-arg KEY=VALUE ...] [--max-new-tokens N] [--out DIR] [--as-avx2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def as_avx2() -> None:
    """Start this benchmark again with a CPU without AVX-512 and AMX emulated (see above); before
    torch is imported, since its libraries read their settings when they load."""
    from cotscope.engine.threads import FLAGS_ENV, real_cpu_flags  # torch not imported: the new process loads it

    if os.environ.get(FLAGS_ENV) is not None:
        return
    flags = real_cpu_flags()
    if "avx2" not in flags:
        sys.exit("--as-avx2: this CPU has no AVX2")
    kept = sorted(f for f in flags if not f.startswith(("avx512", "amx")) and f != "avx_vnni")
    os.environ.update(AVX2_ENV, **{FLAGS_ENV: " ".join(kept)})
    os.execv(sys.executable, [sys.executable, *sys.argv])


if "--as-avx2" in sys.argv:
    as_avx2()

from cotscope import AuditConfig, audit, get_backend
from cotscope.engine.attention import cpu_has_bfloat16
from cotscope.engine.threads import available_cores
from cotscope.cli.main import _kv

TARGET_S = {"full": 300.0, "truncate": 300.0, "brought": 900.0}
TARGET_PEAK_MB = 2048.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=AuditConfig().n_samples)
    parser.add_argument("--model", default=AuditConfig().model)
    parser.add_argument("--experiments", default=",".join(AuditConfig().experiments))
    parser.add_argument("--samples-in-flight", type=int, default=AuditConfig().samples_in_flight)
    parser.add_argument("--task", default=AuditConfig().task)
    parser.add_argument("--task-arg", action="append", default=[], type=_kv, metavar="KEY=VALUE")
    parser.add_argument("--max-new-tokens", type=int, help="CoT budget (default: the model's, see cotscope audit --help).")
    parser.add_argument("--out", help="Keep the run directory here (default: a temporary one).")
    parser.add_argument("--as-avx2", action="store_true", help="Run a CPU without AVX-512 and AMX's code paths (see above).")
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    experiments = tuple(x for x in args.experiments.split(",") if x)
    budget = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    config = AuditConfig(model=args.model, n_samples=args.n_samples, experiments=experiments, samples_in_flight=args.samples_in_flight,
                         task=args.task, task_args=dict(args.task_arg), **budget)
    brought = config.model.split("?")[0] != AuditConfig().model  # the embedded model with options (?draft=0) keeps its targets
    target = TARGET_S["truncate" if experiments == ("truncate",) else "brought" if brought else "full"]
    t0 = time.perf_counter()
    backend = get_backend(config.model)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        result = audit(config, args.out or tmp, backend=backend)
    usage = backend.usage
    wall = time.perf_counter() - t0
    decoder = getattr(backend, "decoder", None)  # llamacpp/: this process or llama-server
    counters = {k: getattr(backend, k, 0) for k in ("n_generated_tokens", "n_scored_tokens", "n_prefill_tokens", "n_decode_row_steps",
                                                    "n_draft_tokens", "n_draft_kept", "n_generate_ms", "n_score_ms",
                                                    "n_server_prompt_tokens", "n_server_prompt_ms", "n_server_decode_ms")}
    backend.close()  # an engine in processes of its own: their peak memory is counted once they end
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    gen_tokens, scored_tokens, prefill_tokens = counters["n_generated_tokens"], counters["n_scored_tokens"], counters["n_prefill_tokens"]
    s = result.summary
    print(f"model                 {config.model}  ({available_cores()} cores)" + (f", decoded by {decoder}" if decoder else ""))
    if args.as_avx2:
        import torch

        print(f"CPU code paths        AVX2 emulated: torch's kernels {torch.backends.cpu.get_cpu_capability()}, "
              f"bfloat16 arithmetic {'on' if cpu_has_bfloat16() else 'off'} (see --as-avx2)")
    print(f"samples               {s.n_samples} of {config.task}  (CoT chunks per sample {s['cost/cot_steps'].value:.1f}, "
          f"CoT budget {config.max_new_tokens}, CoTs cut {s.n_cut.get('subject', 0)})")
    print(f"experiments           {','.join(experiments)}")
    print(f"wall time             {wall:.1f} s  (model load {load_s:.1f} s)  target < {target:.0f} s")
    print(f"peak memory (RSS)     {peak_mb:.0f} MiB" + (f"; the largest engine process {engine_mb:.0f} MiB" if engine_mb > 1 else ""))
    print(f"generation            {gen_tokens} tokens, {gen_tokens / wall:.1f} per second of wall time")
    if scored_tokens:
        print(f"scoring               {scored_tokens} tokens")
    if prefill_tokens:
        print(f"prompt tokens run     {prefill_tokens} (generation and scoring, after prefix sharing and the KV store)")
    if counters["n_generate_ms"] or counters["n_score_ms"]:  # llamacpp/: where the engine's time went
        print(f"engine time           generation calls {counters['n_generate_ms'] / 1000:.1f} s, scoring calls {counters['n_score_ms'] / 1000:.1f} s "
              f"(the rest of the wall time: loading, the audit's own work, waiting between calls)")
    if counters["n_server_prompt_tokens"]:
        print(f"llama-server          {counters['n_server_prompt_tokens']} prompt tokens run in {counters['n_server_prompt_ms'] / 1000:.1f} s, "
              f"decoding {counters['n_server_decode_ms'] / 1000:.1f} s (each summed over requests; slots overlap); "
              f"{prefill_tokens - counters['n_server_prompt_tokens']} prompt tokens run in the engine's process (scoring)")
    if steps := counters["n_decode_row_steps"]:
        print(f"decode row-steps      {steps}")
    if drafted := counters["n_draft_tokens"]:
        print(f"draft tokens          {drafted} checked, {counters['n_draft_kept']} kept ({counters['n_draft_kept'] / drafted:.0%})")
    print(f"model calls           {usage.calls} calls, {usage.prompts} prompts, {usage.cache_hits} answered from the cache")
    check_peak = experiments != ("truncate",) and not brought
    ok = wall < target and (not check_peak or peak_mb < TARGET_PEAK_MB)
    print(f"target                {'met' if ok else 'MISSED'} (under {target:.0f} s" + (f", under {TARGET_PEAK_MB:.0f} MiB" if check_peak else "") + ")")
    if args.record:
        from report import model_name, record

        default = config.model == AuditConfig().model and experiments == AuditConfig().experiments and config.n_samples == AuditConfig().n_samples
        name = model_name(config.model) if brought else config.model.split("/")[-1]
        setting = "default audit" if default else f"{name}{f', {decoder}' if decoder else ''}, {','.join(experiments)}, n={config.n_samples}"
        setting += f", task {config.task}" if config.task != AuditConfig().task else ""
        peak_mb = max(peak_mb, engine_mb)
        print("recorded in", record("audit", setting, {"wall_s": round(wall, 1), "peak_gb": round(peak_mb / 1024, 2),
                                                      "generated_tokens": gen_tokens, "tokens_per_s": round(gen_tokens / wall, 1)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
