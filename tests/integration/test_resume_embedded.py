"""On the embedded model, a run killed with SIGKILL at a random moment and resumed gives the
summary of an uninterrupted one: `cotscope audit` (greedy) and `cotscope stego` (whose
paraphraser samples: each row draws from a seed of its own prompt, not from a stream over
whatever shares its batch)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest.importorskip("transformers")

COTSCOPE = str(Path(sys.executable).parent / "cotscope")


def _kill_at_random(argv, out, lines_file, at_least, seed):
    """Start the command, wait until `lines_file` holds `at_least` records plus a random few
    seconds (none without a seed), SIGKILL it (with its children), and return how many records it had written."""
    proc = subprocess.Popen([COTSCOPE, *argv, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 900
    path = out / lines_file
    while not (path.exists() and len(path.read_bytes().splitlines()) >= at_least):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 3.0) if seed is not None else 0.0)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(path.read_bytes().splitlines())


def _without_wall(summary: dict) -> dict:
    summary["metrics"].pop("cost/wall_s", None)
    summary["table"] = [r for r in summary["table"] if r["name"] != "cost/wall_s"]
    return summary


def _exact_model() -> str:
    """The embedded model in float32, where greedy text does not depend on which rows share a batch
    (bfloat16, the default on CPUs with avx512_bf16/amx_bf16, is checked by the test below)."""
    from cotscope.backends._load import default_dtype

    return "smollm2-135m" if default_dtype("cpu") == "float32" else "smollm2-135m?dtype=float32"


def test_a_killed_audit_resumes_to_the_summary_of_an_uninterrupted_one(tmp_path):
    argv = ["audit", "--model", _exact_model(), "--n-samples", "6", "--samples-in-flight", "2",
            "--experiments", "truncate,paraphrase,mistake", "--no-progress"]
    assert subprocess.run([COTSCOPE, *argv, "--out", str(tmp_path / "whole")], capture_output=True).returncode == 0
    written = _kill_at_random(argv, tmp_path / "cut", "samples.jsonl", 2, seed=1)
    assert written < 6, "the run finished before the kill"
    assert subprocess.run([COTSCOPE, *argv, "--out", str(tmp_path / "cut")], capture_output=True).returncode == 0
    whole, cut = (_without_wall(json.loads((tmp_path / d / "summary.json").read_text())) for d in ("whole", "cut"))
    assert cut == whole


def test_a_killed_bfloat16_audit_resumes_to_the_records_of_an_uninterrupted_one(tmp_path):
    """bfloat16 forced on any CPU (torch runs it, natively with avx512_bf16 or AMX, emulated
    elsewhere). Its greedy text depends on which rows share a batch: before samples ran in fixed
    blocks, a resumed run differed from an uninterrupted one on every sample computed after the
    resume (3 of 8 equal, a 2-core Xeon with AMX). Killed inside its second block of two, the
    resumed run computes that block whole and every record equals the uninterrupted run's."""
    argv = ["audit", "--model", "smollm2-135m?dtype=bfloat16", "--n-samples", "6", "--samples-in-flight", "2",
            "--experiments", "truncate,paraphrase,mistake", "--no-progress"]
    assert subprocess.run([COTSCOPE, *argv, "--out", str(tmp_path / "whole")], capture_output=True).returncode == 0
    written = _kill_at_random(argv, tmp_path / "cut", "samples.jsonl", 3, seed=None)
    assert written == 3, "the kill came after the second block had ended"
    assert subprocess.run([COTSCOPE, *argv, "--out", str(tmp_path / "cut")], capture_output=True).returncode == 0

    def records(d):
        rows = [json.loads(line) for line in (tmp_path / d / "samples.jsonl").read_text().splitlines()]
        return {r["sample"]["id"]: {k: v for k, v in r.items() if k != "wall_s"} for r in rows}

    assert records("cut") == records("whole")
    assert json.loads((tmp_path / "cut" / "resumed.json").read_text()) == {"recomputed": 1, "equal": 1, "different": []}
    whole, cut = (_without_wall(json.loads((tmp_path / d / "summary.json").read_text())) for d in ("whole", "cut"))
    assert cut == whole


def test_a_killed_stego_run_resumes_to_the_summary_of_an_uninterrupted_one(tmp_path):
    argv = ["stego", "--model", "smollm2-135m", "--encoders", "case,lexical", "--paraphrasers", "none,smollm2-135m",
            "--n-samples", "4", "--injections-per-sample", "1", "--coverage-draws", "1", "--no-progress"]
    assert subprocess.run([COTSCOPE, *argv, "--out", str(tmp_path / "whole")], capture_output=True).returncode == 0
    _kill_at_random(argv, tmp_path / "cut", "records.jsonl", 6, seed=2)
    assert subprocess.run([COTSCOPE, *argv, "--out", str(tmp_path / "cut")], capture_output=True).returncode == 0
    whole, cut = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("whole", "cut"))
    assert cut == whole
