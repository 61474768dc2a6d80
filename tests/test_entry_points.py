"""A pip-installed package of plug-ins: its entry points add an experiment and a system that
`cotscope list` shows and `cotscope audit` runs, named without an import path."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "cotscope-extras-for-test"
version = "0.0.1"

[project.entry-points."cotscope.experiments"]
reverse = "cotscope_extras:Reverse"

[project.entry-points."cotscope.systems"]
socratic = "cotscope_extras:Socratic"

[tool.setuptools]
py-modules = ["cotscope_extras"]
"""

MODULE = '''
from pydantic import BaseModel

from cotscope import Experiment, Metric, Prompt, System, same_answer
from cotscope.systems.prompts import answer_format, format_question


class Reversed(BaseModel):
    agrees: bool


class Reverse(Experiment):
    name = "reverse"
    title = "The CoT with its steps in reverse order"
    Result = Reversed

    def run(self, ctx, samples, traces):
        answers = ctx.subject.answer_from(samples, [t.steps[::-1] for t in traces])
        return [[Reversed(agrees=same_answer(a.answer, t.answer))] for a, t in zip(answers, traces)]

    def metrics(self):
        return [Metric("reverse/agreement", "same answer, steps reversed", "reversal",
                       lambda rec: [float(r.agrees) for r in self.results(rec)])]


class Socratic(System):
    def prompt(self, sample):
        return Prompt.chat(f"{format_question(sample)}\\n\\nReason step by step. Then answer in the form "
                           f"{answer_format(self.kind, sample)}.")
'''


def _cli(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "cotscope.cli.main", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_an_installed_plug_in_package_adds_an_experiment_and_a_system(tmp_path):
    pkg, site, work = tmp_path / "pkg", tmp_path / "site", tmp_path / "work"
    pkg.mkdir(), work.mkdir()
    (pkg / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (pkg / "cotscope_extras.py").write_text(MODULE)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(pkg)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    before = _cli(["list"], os.environ.copy(), work)
    assert "reverse" not in before.stdout and "socratic" not in before.stdout
    listed = _cli(["list"], env, work)
    assert listed.returncode == 0, listed.stderr
    lines = dict(line.split(":", 1) for line in listed.stdout.splitlines() if ":" in line)
    assert "reverse" in [x.strip() for x in lines["experiments"].split(",")]
    assert "socratic" in [x.strip() for x in lines["systems"].split(",")]
    run = _cli(["audit", "--model", "mock", "--system", "socratic", "--n-samples", "4", "--experiments", "truncate,reverse",
                "--out", str(tmp_path / "run"), "--no-progress"], env, work)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["reverse/agreement"]["n"] == 4
    assert "socratic" in json.dumps(summary["config"])
