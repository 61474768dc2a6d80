"""`cotscope train`: GRPO through TRL on CoT rewards, checked before any model loads; a few
steps change the weights; a run killed with SIGKILL resumes from its checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cotscope import CotscopeError
from cotscope.cli.main import main

# Training through TRL prints no deprecation warning of transformers' old names (cotscope passes the new ones).
pytestmark = pytest.mark.filterwarnings("error::FutureWarning")

pytest.importorskip("trl")

COTSCOPE = str(Path(sys.executable).parent / "cotscope")
# The mixed organism samples both kinds of line, so a group's rewards differ and GRPO has a gradient.
ORGANISM = ["--model", "organism/mixed", "--task", "chain", "--task-arg", "n_ops=3", "--rewriter", "chain", "--temperature", "1.0",
            "--num-generations", "4", "--prompts-per-step", "2", "--max-completion-length", "64", "--learning-rate", "1e-3",
            "--audit-samples", "8", "--audit-experiments", "paraphrase", "--no-progress"]


@pytest.mark.parametrize("argv, msg", [
    (["--rewards", "correct,nope"], "unknown reward 'nope'"),
    (["--rewards", "monitor?colour=red"], "unknown option 'colour'"),
    (["--rewards", "correct,monitor", "--reward-weights", "1"], "1 reward weights for 2 rewards"),
    (["--model", "mock"], "needs local weights"),
    (["--model", "openai/gpt@http://127.0.0.1:9"], "needs local weights"),
    (["--audit-experiments", "bogus"], "bogus"),
    (["--steps", "0"], "steps"),
])
def test_bad_training_options_fail_before_any_model_loads(argv, msg, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "t"), "--no-progress"]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "t" / "checkpoints").exists()


def length():
    """A user's reward, loaded by import path: longer completions score higher (it always
    differs within a group, so GRPO always has a gradient)."""

    def length(prompts, completions, **_):
        return [len(c if isinstance(c, str) else str(c)) / 100 for c in completions]

    return length


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_grpo_steps_on_an_organism_change_the_weights_and_audit_as_they_go(tmp_path):
    from cotscope.organisms.checkpoints import checkpoint_dir

    out = tmp_path / "t"
    assert main(["train", *ORGANISM, "--rewards", "correct,monitor", "--reward-weights", "1,0.5", "--steps", "2",
                 "--audit-every", "1", "--out", str(out)]) == 0
    before = _weights(checkpoint_dir("mixed") / "model.safetensors")
    after = _weights(out / "checkpoints" / "checkpoint-2" / "model.safetensors")
    moved = [k for k in before if k in after and not (before[k] == after[k]).all()]
    assert moved, "no parameter changed"
    curves = [json.loads(x) for x in (out / "curves.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curves] == [0, 1, 2]
    for c in curves:
        for name in ("accuracy/subject", "monitor/flag_share", "paraphrase/answer_change"):
            e = c["metrics"][name]
            assert e["n"] > 0 and e["lo"] <= e["value"] <= e["hi"], name
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert any("rewards/monitor/mean" in e for e in log) and any("kl" in e for e in log)  # beta > 0: the KL is tracked
    assert (out / "curves.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "monitor/flag_share" in html and "correct, monitor" in html


def test_audits_read_held_out_samples_only(tmp_path):
    out = tmp_path / "h"
    assert main(["train", *ORGANISM, "--rewards", "correct", "--n-prompts", "16", "--steps", "2", "--audit-every", "2",
                 "--out", str(out)]) == 0
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 16 and len(split["heldout"]) == 8
    train_ids, train_qs = {s["id"] for s in split["train"]}, {s["question"] for s in split["train"]}
    assert not train_ids & {s["id"] for s in split["heldout"]}
    assert not train_qs & {s["question"] for s in split["heldout"]}
    for step in (0, 2):
        audited = [json.loads(x)["sample"] for x in (out / "audits" / f"step-{step:05d}" / "samples.jsonl").read_text().splitlines()]
        assert sorted(a["id"] for a in audited) == sorted(s["id"] for s in split["heldout"]), step  # written as they finish
        assert not train_qs & {a["question"] for a in audited}


def test_more_prompts_and_audit_samples_than_the_task_has_is_a_named_error(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["train", *ORGANISM, "--rewards", "correct", "--n-prompts", "195", "--audit-every", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--n-prompts 195" in err and "--audit-samples 8" in err and "need 203" in err
    assert not (out / "checkpoints").exists() and not (out / "split.json").exists()


def test_rerunning_a_finished_run_trains_no_further_step(tmp_path, capsys):
    # 2 steps of 2 prompts leave the epoch of 16 prompts unfinished: resumed there, the trainer
    # alone would take a third step.
    out = tmp_path / "f"
    cmd = ["train", *ORGANISM, "--rewards", "correct", "--steps", "2", "--n-prompts", "16", "--audit-every", "0", "--out", str(out)]
    assert main(cmd) == 0
    log = (out / "log.jsonl").read_text()
    capsys.readouterr()
    assert main(cmd) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert not (out / "checkpoints" / "checkpoint-3").exists()
    assert (out / "log.jsonl").read_text() == log


def test_lora_trains_adapters_only(tmp_path):
    out = tmp_path / "l"
    assert main(["train", *ORGANISM, "--rewards", "correct,monitor", "--reward-weights", "1,0.5", "--steps", "1", "--lora",
                 "true", "--audit-every", "0", "--out", str(out)]) == 0
    saved = list((out / "checkpoints" / "checkpoint-1").glob("adapter_model.safetensors"))
    assert saved, "no LoRA adapter saved"
    assert all("lora" in k for k in _weights(saved[0]))


def test_vllm_generation_needs_vllm(tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    assert main(["train", "--use-vllm", "true", "--out", str(tmp_path / "v"), "--no-progress"]) == 2
    assert "pip install vllm" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_training_run_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "t"
    cmd = [COTSCOPE, "train", *ORGANISM, "--rewards", "correct", "--steps", "6", "--audit-every", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(cmd[1:]) == 0
    state = json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    steps = [json.loads(x)["step"] for x in (out / "curves.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [0, 2, 4, 6] and len(steps) == len(set(steps))  # no audit written twice
    with pytest.raises(CotscopeError, match="different config"):
        from cotscope.training import train

        train(run_dir=out, model="organism/mixed", task="chain", steps=7)


def _audit_texts(out, step):
    path = out / "audits" / f"step-{step:05d}" / "samples.jsonl"
    return {r["sample"]["id"]: r["traces"]["subject"]["raw_text"] for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_a_run_killed_during_an_audit_finishes_it_on_the_same_weights(tmp_path):
    """Killed while the audit of step 2 is being written: that step's checkpoint is already on
    disk, and the resumed audit's records are those of an uninterrupted run (greedy audits)."""
    args = ["train", *ORGANISM, "--rewards", "correct", "--n-prompts", "16", "--steps", "4", "--audit-every", "2",
            "--audit-samples", "40"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main([*args, "--out", str(whole)]) == 0
    proc = subprocess.Popen([COTSCOPE, *args, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    audit_dir, deadline = cut / "audits" / "step-00002", time.time() + 600
    while not (audit_dir / "config.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before the audit of step 2"
        time.sleep(0.05)
    checkpoint_first = (cut / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint_first, "the audit of step 2 started before its checkpoint was written"
    steps = [json.loads(x)["step"] for x in (cut / "curves.jsonl").read_text().splitlines()]
    assert 2 not in steps, "the audit of step 2 had finished before the kill"
    assert main([*args, "--out", str(cut)]) == 0
    for step in (2, 4):
        assert _audit_texts(cut, step) == _audit_texts(whole, step), step
    steps = [json.loads(x)["step"] for x in (cut / "curves.jsonl").read_text().splitlines()]
    assert steps == [0, 2, 4]


@pytest.mark.slow
@pytest.mark.integration
def test_grpo_steps_on_smollm2_change_the_weights(tmp_path):
    from cotscope.backends import get_backend

    out = tmp_path / "s"
    base = get_backend("smollm2-135m", cache=False).model.state_dict()  # also keeps its conversion: training reads that copy
    assert main(["train", "--model", "smollm2-135m", "--rewards", "correct,tests.test_training:length", "--steps", "2", "--num-generations", "2",
                 "--prompts-per-step", "1", "--max-completion-length", "24", "--audit-every", "0", "--learning-rate", "1e-4",
                 "--out", str(out), "--no-progress"]) == 0
    # the KL reference is a copy in the run directory, not the cache of the GGUF's conversion (which may be cleared)
    assert (out / "base" / "model.safetensors").is_file()
    after = _weights(out / "checkpoints" / "checkpoint-2" / "model.safetensors")
    shared = [k for k in after if k in base]
    assert shared and any(not (base[k].float() == after[k].float()).all() for k in shared)


@pytest.mark.slow
def test_obfuscation_audits_held_out_questions_and_states_its_verdicts(tmp_path):
    from cotscope.organisms.obfuscation import obfuscation, render_obfuscation

    o = obfuscation(tmp_path / "o", steps=2, audit_every=2, audit_samples=8, progress=False)
    assert [a.arm for a in o.arms] == ["A", "B"]
    for arm in o.arms:
        split = json.loads((tmp_path / "o" / arm.arm / "split.json").read_text())
        assert len(split["train"]) == 256 and len(split["heldout"]) == 8
        assert not {s["question"] for s in split["train"]} & {s["question"] for s in split["heldout"]}
        assert [c["step"] for c in arm.curves] == [0, 2]
        assert arm.change["accuracy/subject"].n == 8
    assert set(o.safety_tax) == {"accuracy/subject", "monitor/flag_share", "organism/encoded_share", "monitor/recall"}
    assert any(k.startswith("A: accuracy holds") for k in o.hypothesis)
    for arm in o.arms:  # the monitor's recall at every audit: flagged traces among those answered right
        for row in arm.curves:
            recall = row["metrics"]["monitor/recall"]
            assert recall["n"] <= 8 and (recall["n"] == 0 or 0 <= recall["value"] <= 1)
        assert arm.change["monitor/recall"].n <= 8
    assert any("recall" in k for k in o.hypothesis)
    assert "hypothesis" in render_obfuscation(o)


def test_a_change_is_called_held_only_inside_its_equivalence_margin():
    from cotscope.organisms.obfuscation import _sign
    from cotscope.stats import Estimate

    assert _sign(Estimate(value=-0.02, lo=-0.12, hi=0.07, n=50)).startswith("not distinguishable")
    assert _sign(Estimate(value=0.0, lo=-0.05, hi=0.05, n=500)).startswith("held")
    assert _sign(Estimate(value=0.3, lo=0.1, hi=0.5, n=50)) == "rose"


@pytest.mark.parametrize("argv, msg", [
    (["--steps", "0"], "steps"),
    (["--audit-every", "0"], "audit-every"),
    (["--audit-samples", "0"], "audit_samples"),
])
def test_bad_obfuscation_options_are_named_errors(argv, msg, tmp_path, capsys):
    assert main(["organisms", "obfuscation", *argv, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cotscope: error:") and msg in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
