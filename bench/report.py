"""The performance tables of docs/performance.md, made from the benchmarks' recorded runs.

A benchmark run with ``--record`` appends one line to ``bench/results.jsonl``: the benchmark,
its setting, the machine class it ran on, the commit, the date and its figures. This script
rewrites the part of docs/performance.md between its two markers: one table per machine class,
the latest run of each benchmark and setting. History stays in git.

    python bench/report.py [--results bench/results.jsonl] [--out docs/performance.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
DOC = HERE.parent / "docs" / "performance.md"
START, END = "<!-- bench tables: made by python bench/report.py -->", "<!-- end of bench tables -->"
COLUMNS = (("wall_s", "wall s", "{:.1f}"), ("peak_gb", "peak GB", "{:.2f}"), ("generated_tokens", "tokens generated", "{:,}"),
           ("tokens_per_s", "tokens/s", "{:.1f}"), ("ratio", "prompt tokens run / trace tokens", "{:.2f}x"))


def machine_class() -> str:
    """What the figures depend on: cores, and what the CPU (or GPU) computes natively."""
    from cotscope.engine.attention import cpu_has_bfloat16
    from cotscope.engine.threads import available_cores

    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    flags = "bfloat16 arithmetic (AVX-512 BF16 or AMX): transformers in bfloat16" if cpu_has_bfloat16() else "AVX2, no bfloat16 arithmetic: transformers in float32"
    return f"{available_cores()} cores, {platform.machine()}, {flags}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--", "../src"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def record(bench: str, setting: str, figures: dict, path: Path | None = None) -> Path:
    """Append one run's figures (`figures`: wall_s, peak_gb, generated_tokens, ...) to the results."""
    path = Path(path or os.environ.get("COTSCOPE_BENCH_RESULTS", RESULTS))
    row = {"bench": bench, "setting": setting, "machine": machine_class(), "commit": commit(),
           "date": datetime.date.today().isoformat(), **figures}
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    return path


def load(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{i}: not a JSON line ({exc})") from exc
        if not isinstance(row, dict) or not {"bench", "setting", "machine"} <= set(row):
            raise SystemExit(f"{path}:{i}: a result needs bench, setting and machine")
        rows.append(row)
    return rows


def tables(rows: list[dict]) -> str:
    """One markdown table per machine class: the latest run of each (benchmark, setting)."""
    latest: dict[str, dict[tuple[str, str], dict]] = {}
    for row in rows:  # later lines win
        latest.setdefault(row["machine"], {})[(row["bench"], row["setting"])] = row
    if not latest:
        return "No benchmark has been recorded yet (`python bench/audit.py --record`).\n"
    out = []
    for machine in sorted(latest):
        out.append(f"**{machine}**\n")
        out.append("| benchmark | setting | " + " | ".join(h for _, h, _ in COLUMNS) + " | commit, date |")
        out.append("|---|---|" + "---|" * len(COLUMNS) + "---|")
        for (bench, setting), row in sorted(latest[machine].items()):
            cells = [fmt.format(row[k]) if isinstance(row.get(k), (int, float)) else "" for k, _, fmt in COLUMNS]
            out.append(f"| {bench} | {setting} | " + " | ".join(cells) + f" | {row.get('commit', '')}, {row.get('date', '')} |")
        out.append("")
    return "\n".join(out)


def render(doc: str, rows: list[dict]) -> str:
    if START not in doc or END not in doc:
        raise SystemExit(f"the document has no bench markers ({START} ... {END})")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{tables(rows)}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC, help="the document whose tables are remade")
    parser.add_argument("--out", type=Path, help="write here instead of over --doc")
    args = parser.parse_args()
    rows = load(args.results)
    text = render(args.doc.read_text(), rows)
    (args.out or args.doc).write_text(text)
    print(f"{len(rows)} recorded runs, {len({r['machine'] for r in rows})} machine classes -> {args.out or args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
