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
