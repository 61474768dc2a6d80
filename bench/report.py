"""The measured figures of the docs, made from the benchmarks' recorded runs.

A benchmark run with ``--record`` appends one line to ``bench/results.jsonl``: the benchmark,
its setting, the machine class it ran on, the commit, the date and its figures (and, for a
benchmark that measures an experiment's outcome, its table as ``rows``). This script rewrites:

- the part of docs/performance.md between its two markers: one table per machine class, the
  latest run of each benchmark and setting;
- every region ``<!-- results: BENCH -->`` ... ``<!-- end of results -->`` in README.md and
  docs/*.md: that benchmark's latest run of each setting on each machine class (with
  ``history`` after the name: every run, oldest first), as one table of its figures, or each
  run's own table where it recorded ``rows``.

History stays in git.

    python bench/report.py [--results bench/results.jsonl] [--out docs/performance.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
DOC = HERE.parent / "docs" / "performance.md"
START, END = "<!-- bench tables: made by python bench/report.py -->", "<!-- end of bench tables -->"
REGION = re.compile(r"(<!-- results: (?P<bench>[\w.-]+)(?P<history> history)? -->\n)(?P<body>.*?)(<!-- end of results -->)", re.S)
META = ("bench", "setting", "machine", "commit", "date", "rows")
LABELS = {"wall_s": "wall s", "peak_gb": "peak GB", "generated_tokens": "tokens generated", "tokens_per_s": "tokens/s",
          "ratio": "prompt tokens run / trace tokens", "trace_tokens": "trace tokens", "prompt_tokens_run": "prompt tokens run",
          "prompt_tokens_without_reuse": "without prefix reuse", "s_per_trace": "s per trace", "load_s": "load s"}
COLUMNS = (("wall_s", "wall s", "{:.1f}"), ("peak_gb", "peak GB", "{:.2f}"), ("generated_tokens", "tokens generated", "{:,}"),
           ("tokens_per_s", "tokens/s", "{:.1f}"), ("ratio", "prompt tokens run / trace tokens", "{:.2f}x"))


def machine_class() -> str:
    """What the figures depend on: cores, and what the CPU (or GPU) computes natively."""
    from cotscope.engine.attention import cpu_has_bfloat16
    from cotscope.engine.threads import FLAGS_ENV, available_cores, real_cpu_flags

    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    flags = "bfloat16 arithmetic (AVX-512 BF16 or AMX): transformers in bfloat16" if cpu_has_bfloat16() else "AVX2, no bfloat16 arithmetic: transformers in float32"
    if os.environ.get(FLAGS_ENV) is not None:  # bench/audit.py --as-avx2: a lesser CPU's code paths on this one
        real = "AMX" if "amx_tile" in real_cpu_flags() else "AVX-512" if "avx512f" in real_cpu_flags() else "these"
        flags = f"AVX2 code paths emulated on a CPU with {real} (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS): transformers in float32"
    return f"{available_cores()} cores, {platform.machine()}, {flags}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--", "../src"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def model_name(spec: str) -> str:
    """A GGUF's own name (its general.name) where the spec is a file, else the spec."""
    path = spec.split("/", 1)[1] if spec.startswith(("llamacpp/", "gguf/")) else ""
    try:
        import gguf

        field = gguf.GGUFReader(path).fields.get("general.name") if path else None
        return f"{bytes(field.parts[field.data[0]]).decode()} ({spec.split('/', 1)[0]})" if field else spec
    except (ImportError, OSError, ValueError):
        return spec


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
    for row in rows:  # later lines win; an experiment's recorded table (bench/figures.py) goes to its own doc
        if not row.get("rows"):
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


def _cell(key: str, v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        text = "" if v is None else str(v).replace("|", "\\|")
        return text if len(text) <= 80 else text[:79] + "…"  # a monitor's whole pattern is in the record
    if key == "ratio":
        return f"{v:.2f}x"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def region(bench: str, rows: list[dict], history: bool = False) -> str:
    """One bench's recorded runs as markdown (see the module docstring)."""
    runs = [r for r in rows if r["bench"] == bench]
    if not history:
        latest: dict[tuple[str, str], dict] = {}
        for r in runs:  # later lines win
            latest[(r["machine"], r["setting"])] = r
        runs = [latest[k] for k in sorted(latest)]
    if not runs:
        how = f"python bench/figures.py {bench.split('.')[1]}" if bench.startswith("figures.") else f"python bench/{bench}.py"
        return f"No run of `{bench}` has been recorded yet (`{how} --record`).\n"
    out = []
    if any(r.get("rows") for r in runs):
        for r in runs:
            table = r.get("rows") or []
            out.append(f"*{r['setting']}* ({r['machine']}; {r.get('commit', '')}, {r.get('date', '')})\n")
            if table:
                keys = list(dict.fromkeys(k for row in table for k in row))
                out += _table(keys, [[_cell(k, row.get(k)) for k in keys] for row in table]) + [""]
        return "\n".join(out)
    keys = list(dict.fromkeys(k for r in runs for k in r if k not in META))
    body = [[r["setting"]] + [_cell(k, r.get(k)) for k in keys] + [r["machine"], f"{r.get('commit', '')}, {r.get('date', '')}"] for r in runs]
    return "\n".join(_table(["setting"] + [LABELS.get(k, k.replace("_", " ")) for k in keys] + ["machine", "commit, date"], body)) + "\n"


def render_regions(doc: str, rows: list[dict]) -> str:
    """`doc` with every results region remade from `rows`."""
    return REGION.sub(lambda m: m.group(1) + region(m.group("bench"), rows, bool(m.group("history"))) + m.group(5), doc)


def docs_with_regions() -> list[Path]:
    root = HERE.parent
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file() and REGION.search(p.read_text())]


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
    text = render_regions(render(args.doc.read_text(), rows), rows)
    (args.out or args.doc).write_text(text)
    print(f"{len(rows)} recorded runs, {len({r['machine'] for r in rows})} machine classes -> {args.out or args.doc}")
    if args.out is None:
        for path in docs_with_regions():
            if path != args.doc:
                path.write_text(render_regions(path.read_text(), rows))
                print(f"  results regions -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
