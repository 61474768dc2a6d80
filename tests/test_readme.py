"""Every Python block of the README and of docs/ runs as written. A block whose first line reads
``# <file>.py   <command>`` is saved under that name in an empty folder and the command is run
there with the installed `cotscope`; its metrics must reach summary.json and report.html. Other
blocks run as scripts (those that need the embedded model are integration tests)."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
HEADER = re.compile(r"^# (\S+\.py)\s{2,}(cotscope .+)$")


def python_blocks() -> list[str]:
    return [b for page in PAGES for b in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]


def test_the_readme_is_for_users():
    """At most 400 lines, and its first screen gives what the audit answers and the two set-up commands."""
    text = README.read_text()
    assert len(text.splitlines()) <= 400
    first = "\n".join(text.splitlines()[:40])
    assert "pip install -e '.[hf]'" in first and "&& cotscope audit" in first and "python -m pytest" in first
    for page in re.findall(r"\(docs/([\w.-]+\.md)\)", text):
        assert (ROOT / "docs" / page).is_file(), page


def plugin_blocks():
    return [b for b in python_blocks() if HEADER.match(b.splitlines()[0])]


def script_blocks():
    """The other blocks; those that load the embedded model are integration tests."""
    return [
        pytest.param(b, marks=[pytest.mark.integration, pytest.mark.slow] if "smollm2" in b else [], id=b.strip().splitlines()[-1][:40])
        for b in python_blocks()
        if not HEADER.match(b.splitlines()[0])
    ]


def cotscope_command() -> str:
    return str(Path(sys.executable).parent / "cotscope")


def test_readme_has_an_example_of_each_kind_of_plug_in():
    kinds = {name: False for name in ("Experiment", "Metric(", "System", "Backend", "Task(")}
    for block in plugin_blocks():
        for k in kinds:
            kinds[k] |= k in block
    assert all(kinds.values()), kinds
    experiment = next(b for b in plugin_blocks() if "(Experiment)" in b)
    assert len(experiment.strip().splitlines()) < 50


def plugin_params():
    """Every plug-in example; the experiment one in the fast tier, the others in the slow one."""
    return [
        pytest.param(b, id=HEADER.match(b.splitlines()[0]).group(1), marks=[] if "(Experiment)" in b else [pytest.mark.slow])
        for b in plugin_blocks()
    ]


@pytest.mark.parametrize("block", plugin_params())
def test_plug_in_example_runs_verbatim_from_an_empty_folder(block, tmp_path):
    filename, command = HEADER.match(block.splitlines()[0]).groups()
    (tmp_path / filename).write_text(block)
    argv = shlex.split(command)
    argv[0] = cotscope_command()
    proc = subprocess.run([*argv, "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p.parent for p in (tmp_path / "runs").glob("*/summary.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    report = (run_dir / "report.html").read_text()
    for name in re.findall(r'Metric\(\s*"([^"]+)"', block):
        assert name in summary["metrics"], name
        assert f'data-name="{name}"' in report
    for name in re.findall(r'^\s+name = "([^"]+)"', block, re.M):  # an experiment: its section in every sample
        assert f'data-experiment="{name}"' in report


@pytest.mark.parametrize("block", script_blocks())
def test_python_block_runs(block, tmp_path):
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
