"""Benchmark: the same audit (the default task, the early-answering sweep, n samples) through
three providers of the embedded SmolLM2 GGUF, one after the other, each alone:

- transformers (``smollm2-135m``: the GGUF de-quantized, to bfloat16 on a CPU with native
  bfloat16 arithmetic, else float32),
- in-process llama.cpp (``llamacpp/<path.gguf>``),
- llama-cpp-python's OpenAI-compatible server (``openai/smollm2@<url>?cache_prompt=true``).

Every provider gets the embedded model's CoT budget (160 tokens), given on the command line:
the server's spec does not name the model's file, and the default budget of any other model
is 512. Prints wall time, generated tokens per second and peak memory (the audit process; for
the server, the audit process plus the server's own peak).

    python bench/providers.py [--n 8]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cotscope.backends.hf import smollm2_path
from cotscope.config import SHORT_COT_BUDGET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(model: str, n: int, cotscope: str) -> tuple[float, int, float, float]:
    """Wall seconds, generated tokens, accuracy and the audit process's peak memory (GB)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "peak-kb %M", cotscope, "audit", "--model", model, "--experiments", "truncate",
                               "--n-samples", str(n), "--max-new-tokens", str(SHORT_COT_BUDGET), "--out", tmp, "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        peak = int(proc.stderr.strip().splitlines()[-1].split()[-1]) / 2**20
        usage = json.loads((Path(tmp) / "usage.json").read_text())
        tokens = sum(u.get("generated_tokens", u.get("n_generated_tokens", 0)) for u in usage.values())
        accuracy = json.loads((Path(tmp) / "summary.json").read_text())["metrics"]["accuracy/subject"]["value"]
    return wall, tokens, accuracy, peak


def rss_gb(pid: int) -> float:
    """Peak resident memory of a running process (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--record", action="store_true", help="Add each provider's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    cotscope = str(Path(sys.executable).parent / "cotscope")
    path = smollm2_path()
    rows = []
    for name, model in (("transformers", "smollm2-135m"), ("llama.cpp in-process", f"llamacpp/{path}")):
        rows.append((name, *run(model, args.n, cotscope)))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cotscope.backends.llamacpp_server", "--model", path, "--model_alias", "smollm2", "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--verbose", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        wall, tokens, acc, peak = run(f"openai/smollm2@{url}?cache_prompt=true", args.n, cotscope)
        rows.append(("llama.cpp server (OpenAI API)", wall, tokens, acc, peak + rss_gb(server.pid)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"the same audit (truncate, n={args.n}) of the embedded SmolLM2-135M Q4_1 GGUF, 2 cores:")
    print(f"{'provider':<32}{'wall s':>8}{'gen tok':>9}{'tok/s':>8}{'accuracy':>10}{'peak GB':>9}")
    for name, wall, tokens, acc, peak in rows:
        print(f"{name:<32}{wall:>8.1f}{tokens:>9}{tokens / wall:>8.1f}{acc:>10.2f}{peak:>9.2f}")
        if args.record:
            from report import record

            record("providers", f"{name}, truncate n={args.n}", {"wall_s": round(wall, 1), "peak_gb": round(peak, 2),
                                                                 "generated_tokens": tokens, "tokens_per_s": round(tokens / wall, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
