"""The audit loop: Python API and CLI agree, runs resume, bad input gets a clear error."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from cotscope import AuditConfig, CotscopeError, audit
from cotscope.cli.main import main
from cotscope.store import RunStore

from .helpers import crafted_backend, write_crafted_task

MOCK_CFG = dict(model="mock", n_samples=6, samples_in_flight=2)


class Boom(RuntimeError):
    pass


def stored(path):
    """The records of a samples.jsonl, without the wall time (which no two runs share), sorted."""
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rec.pop("wall_s")
        out.append(json.dumps(rec, sort_keys=True))
    return sorted(out)  # samples are written as they finish, in no fixed order


def without_wall(summary):
    """A summary without its wall-time metric, which no two runs share."""
    data = json.loads(summary.read_text()) if hasattr(summary, "read_text") else json.loads(summary.model_dump_json())
    data["metrics"].pop("cost/wall_s", None)
    data["table"] = [r for r in data["table"] if r["name"] != "cost/wall_s"]
    return data


def test_each_sample_reaches_disk_as_soon_as_it_is_done(tmp_path):
    """With one sample in flight, each is written before the next begins: a kill loses at most
    the samples in flight."""
    seen = []
    backend = crafted_backend()
    real = backend.generate

    def watching(prompts, params):
        path = tmp_path / "run" / "samples.jsonl"
        seen.append(path.read_text().count("\n") if path.exists() else 0)
        return real(prompts, params)

    backend.generate = watching
    task = write_crafted_task(tmp_path)
    rows = [json.loads(line) for line in task.read_text().splitlines()]
    copies = [{**r, "id": f"{r['id']}-{c}", "question": f"{r['question']} (copy {c})"} for c in "ab" for r in rows]
    task.write_text("".join(json.dumps(r) + "\n" for r in copies))  # distinct questions: none is answered from the cache
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", n_samples=4, samples_in_flight=1, experiments=("truncate",))
    audit(cfg, tmp_path / "run", backend=backend, progress=False, plots=False)
    assert sorted(set(seen)) == [0, 1, 2, 3]  # every sample was written before the next began


@pytest.mark.slow
def test_cli_equals_python_api(tmp_path, capsys):
    rc = main(["audit", "--model", "mock", "--n-samples", "6", "--out", str(tmp_path / "cli"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "AOC, answer forced" in out and "run directory" in out
    api = audit(AuditConfig(**{**MOCK_CFG, "samples_in_flight": 8}), tmp_path / "api", progress=False)
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    api_metrics = json.loads(api.summary.model_dump_json())["metrics"]
    for m in (cli["metrics"], api_metrics):
        m.pop("cost/wall_s")
    assert cli["metrics"] == api_metrics
    assert stored(tmp_path / "cli" / "samples.jsonl") == stored(tmp_path / "api" / "samples.jsonl")


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    task = write_crafted_task(tmp_path)
    rows = [json.loads(line) for line in task.read_text().splitlines()]
    copies = [{**r, "id": f"{r['id']}-{c}", "question": f"{r['question']} (copy {c})"} for c in "abc" for r in rows]
    task.write_text("".join(json.dumps(r) + "\n" for r in copies))  # distinct questions: none is answered from the cache
    cfg = AuditConfig(
        model="mock", task=f"jsonl:{task}", task_args={}, n_samples=6, samples_in_flight=1,
        experiments=("truncate",),  # its backend calls grow linearly with the samples
    )
    reference = audit(cfg, tmp_path / "ref", backend=crafted_backend(), progress=False, plots=False)

    flaky = crafted_backend()
    real_generate = flaky.generate

    def dying_generate(prompts, params):
        written = tmp_path / "run" / "samples.jsonl"
        if written.exists() and written.read_text().count("\n") == 2:  # dies inside the third batch
            raise Boom("killed")
        return real_generate(prompts, params)

    flaky.generate = dying_generate
    with pytest.raises(Boom):
        audit(cfg, tmp_path / "run", backend=flaky, progress=False, plots=False)
    assert len(RunStore(tmp_path / "run", cfg).records) == 2

    fresh = crafted_backend()
    resumed = audit(cfg, tmp_path / "run", backend=fresh, progress=False, plots=False)
    # Only the 4 unfinished samples were asked: per sample 1 trace + 1 direct answer.
    assert fresh.n_generated_prompts == reference_prompts_per_sample(cfg, task) * 4
    lines = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len({json.loads(x)["sample"]["id"] for x in lines}) == 6
    assert [r.model_dump(exclude={"wall_s"}) for r in resumed.records] == [r.model_dump(exclude={"wall_s"}) for r in reference.records]
    assert without_wall(resumed.summary) == without_wall(reference.summary)


def test_a_half_precision_run_goes_in_fixed_blocks_and_a_resume_recomputes_the_interrupted_one(tmp_path):
    """bfloat16 arithmetic depends on which rows share a batch, so such a run (here a crafted backend
    that says it runs in bfloat16) takes its samples in blocks of samples_in_flight, each after the
    provider has dropped its reusable state, and a resume runs the interrupted block whole."""
    task = write_crafted_task(tmp_path)
    rows = [json.loads(line) for line in task.read_text().splitlines()]
    task.write_text("".join(json.dumps({**r, "id": f"{r['id']}-{c}", "question": f"{r['question']} ({c})"}) + "\n" for c in "abc" for r in rows))
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", task_args={}, n_samples=6, samples_in_flight=2, experiments=("truncate",))

    def half():
        b = crafted_backend()
        b.precision, b.forgotten, b.batches = "cpu bfloat16", 0, []
        b.forget = lambda: setattr(b, "forgotten", b.forgotten + 1)
        real = b.generate_each

        def each(prompts, params):
            b.batches.append({m.group(1) for p in prompts for msg in p.messages if (m := re.search(r"\(([abc])\)", msg.content))})
            return real(prompts, params)

        b.generate_each = each
        return b

    reference = audit(cfg, tmp_path / "ref", backend=(ref := half()), progress=False, plots=False)
    assert ref.forgotten == 3  # one clean slate per block of 2
    assert set().union(*ref.batches) == {"a", "b", "c"}
    assert all(len(batch) == 1 for batch in ref.batches)  # no batch mixes two blocks' copies (a, b, c)
    assert not (tmp_path / "ref" / "resumed.json").exists()
    lines = (tmp_path / "ref" / "samples.jsonl").read_text().splitlines()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text((tmp_path / "ref" / "config.json").read_text())
    (tmp_path / "run" / "samples.jsonl").write_text("\n".join(lines[:3]) + "\n")  # killed inside the second block
    other = cfg.model_copy(update={"samples_in_flight": 3})  # a resume takes the block size the run started with
    resumed = audit(other, tmp_path / "run", backend=(again := half()), progress=False, plots=False)
    assert again.forgotten == 2  # blocks 2 and 3; block 1 was whole
    assert json.loads((tmp_path / "run" / "resumed.json").read_text()) == {"recomputed": 1, "equal": 1, "different": []}
    assert [r.model_dump(exclude={"wall_s"}) for r in resumed.records] == [r.model_dump(exclude={"wall_s"}) for r in reference.records]
    assert any("fixed blocks" in w for w in resumed.summary.warnings)


def test_a_role_model_in_half_precision_puts_the_run_in_blocks_too(tmp_path):
    """The subject in float32 and a judge in bfloat16: the judge's results depend on batch
    composition as well, so the run goes in blocks and the judge forgets between them."""
    from cotscope.backends import register_backend

    judge = crafted_backend()
    judge.precision, judge.forgotten = "cpu bfloat16", 0
    judge.forget = lambda: setattr(judge, "forgotten", judge.forgotten + 1)
    register_backend("half-judge")(lambda rest, opts: judge)
    task = write_crafted_task(tmp_path)
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", task_args={}, n_samples=2, samples_in_flight=1, experiments=("autorater",),
                      roles={"judge": "half-judge"})
    audit(cfg, tmp_path / "run", backend=crafted_backend(), progress=False, plots=False)
    assert judge.forgotten == 2  # one block of 1 per sample


def reference_prompts_per_sample(cfg, task):
    counter = crafted_backend()
    one = AuditConfig(**{**cfg.model_dump(), "n_samples": 1})
    audit(one, task.parent / "one", backend=counter, progress=False, plots=False)
    return counter.n_generated_prompts


@pytest.mark.slow
def test_killed_process_resumes(tmp_path):
    """SIGKILL the CLI at random moments, several times, restarting it each time on the same
    run directory: the result equals an uninterrupted run's, no sample is stored twice, and
    only the samples in flight at each kill were computed again (counted backend calls)."""
    rng = random.Random(0)
    n_samples, kills = 8, 3

    log = tmp_path / "calls.log"  # one spec for both runs, so their records compare equal

    def cmd(out):
        model = f"mock?delay=0.05&log={log}"
        return [sys.executable, "-m", "cotscope.cli.main", "audit", "--model", model, "--n-samples", str(n_samples),
                "--samples-in-flight", "1", "--no-progress", "--out", str(out)]

    subprocess.run(cmd(tmp_path / "ref"), check=True, capture_output=True)
    reference_calls = log.read_text().count("\n")
    samples = tmp_path / "run" / "samples.jsonl"
    killed = 0
    for _ in range(kills):
        proc = subprocess.Popen(cmd(tmp_path / "run"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 2.0))  # start-up takes about a second, a sample about 0.7
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
    # (a kill before the first sample was stored leaves no file: a valid moment to kill too)
    assert killed >= 2 and (samples.read_text().count("\n") if samples.exists() else 0) < n_samples
    subprocess.run(cmd(tmp_path / "run"), check=True, capture_output=True)
    lines = samples.read_text().splitlines()
    assert len(lines) == n_samples and len({json.loads(x)["sample"]["id"] for x in lines}) == n_samples
    assert sorted(stored(samples)) == sorted(stored(tmp_path / "ref" / "samples.jsonl"))
    assert without_wall(tmp_path / "run" / "summary.json") == without_wall(tmp_path / "ref" / "summary.json")
    run_calls = log.read_text().count("\n") - reference_calls
    per_sample = reference_calls / n_samples
    assert reference_calls <= run_calls <= reference_calls + killed * per_sample * 1.5


def test_torn_last_line_is_repaired(tmp_path):
    cfg = AuditConfig(**MOCK_CFG)
    audit(cfg, tmp_path, progress=False, plots=False)
    path = tmp_path / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    with pytest.warns(UserWarning, match=r"samples.jsonl:4: torn last line"):
        store = RunStore(tmp_path, cfg)
    assert len(store.records) == 3 and path.read_text() == "".join(lines[:3])
    again = audit(cfg, tmp_path, progress=False, plots=False)
    assert len(again.records) == 6 and path.read_text().count("\n") == 6
    assert stored(path) == sorted(json.dumps({k: v for k, v in json.loads(x).items() if k != "wall_s"}, sort_keys=True) for x in lines)


def test_malformed_record_names_the_line(tmp_path):
    cfg = AuditConfig(**MOCK_CFG)
    audit(cfg, tmp_path, progress=False, plots=False)
    path = tmp_path / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + '{"schema_version": 1}\n' + "".join(lines[2:]))
    with pytest.raises(CotscopeError, match=r"samples.jsonl:2: not a valid sample record \(sample: Field required\)"):
        audit(cfg, tmp_path, progress=False, plots=False)


def test_other_config_in_run_dir_is_refused(tmp_path):
    audit(AuditConfig(**MOCK_CFG), tmp_path, progress=False, plots=False)
    with pytest.raises(CotscopeError, match=r"different config.*'seed': \(0, 1\)"):
        audit(AuditConfig(**{**MOCK_CFG, "seed": 1}), tmp_path, progress=False, plots=False)


def test_unparsable_answers_are_recorded_not_raised(tmp_path):
    backend = crafted_backend()
    backend.respond = lambda prompt, params: "I cannot say."
    cfg = AuditConfig(**{**MOCK_CFG, "n_samples": 2})
    result = audit(cfg, tmp_path, backend=backend, progress=False, plots=False)
    trace = result.records[0].traces["subject"]
    assert trace.answer is None and trace.answer_error == "no number found"
    assert result.summary.answer_failures == {"baseline": 2, "subject": 2}
    assert any("could not be parsed" in w for w in result.summary.warnings)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "nope/x"], "unknown model 'nope/x'"),
        (["--model", "mock", "--task", "jsonl:/does/not/exist.jsonl"], "task file not found: /does/not/exist.jsonl"),
        (["--model", "mock", "--system", "magic"], "unknown system 'magic'"),
        (["--model", "mock", "--experiments", "truncate,bogus"], "unknown experiment"),
        (["--model", "mock", "--n-samples", "0"], "n_samples"),
    ],
)
def test_cli_errors_are_clear(tmp_path, capsys, argv, message):
    assert main(["audit", *argv, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cotscope: error:") and message in err and "Traceback" not in err


def test_cots_cut_by_their_budget_are_counted_and_never_scored_as_complete(tmp_path, capsys):
    """A budget every CoT hits: the summary counts them, the audit warns, the report says so at
    the top, and no faithfulness metric is computed from a cut CoT."""
    argv = ["audit", "--model", "mock", "--n-samples", "4", "--max-new-tokens", "3", "--experiments", "truncate,filler,mistake",
            "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "WARNING: CoTs cut off by their token budget (subject 4 of 4" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_cut"]["subject"] == 4
    assert summary["metrics"]["cost/cot_cut"]["value"] == 1.0
    assert "accuracy/subject" in summary["metrics"]  # what the system achieves on its budget
    faithfulness = [name for name in summary["metrics"] if name.split("/")[0] in ("truncate", "filler", "mistake")]
    assert faithfulness == []
    assert any("ended on their token budget" in w for w in summary["warnings"])
    assert 'id="cut"' in (tmp_path / "run" / "report.html").read_text()
    records = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert all(r["traces"]["subject"]["finish_reason"] == "length" for r in records)
