"""The OpenAI-compatible backend against a real llama-cpp-python server on 127.0.0.1 (started as
cotscope.backends.llamacpp_server, which loads the GGUF as llamacpp/ does)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cotscope import AuditConfig, CotscopeError, GenerationParams, Prompt, audit, get_backend

pytestmark = pytest.mark.integration
pytest.importorskip("llama_cpp.server")
pytest.importorskip("openai")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from cotscope.backends.hf import smollm2_path

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cotscope.backends.llamacpp_server", "--model", smollm2_path(), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                assert json.loads(r.read())["data"][0]["id"] == "smollm2"
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("llama-cpp-python server did not start")
            time.sleep(0.5)
    yield {"url": url, "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)


def test_generate_score_and_count(server):
    b = get_backend(f"openai/smollm2@{server['url']}", cache=False)
    params = GenerationParams(max_new_tokens=16, stop=("\n",))
    prompts = [Prompt.chat("What is the capital of France?", prefix="The capital of France is"), Prompt.chat("Say hi.")]
    outs = b.generate(prompts, params)
    assert "Paris" in outs[0].text and outs[0].n_generated_tokens > 0 and outs[0].n_prompt_tokens > 10
    assert b.generate(prompts[:1], params)[0].text == outs[0].text  # greedy is repeatable
    [scores] = b.score(prompts[:1], [[" Paris", " banana", " Paris is a city"]])
    assert scores[0] > scores[1] and scores[2] < scores[0]
    assert b.count_tokens("hello world") == 2


@pytest.mark.slow
def test_audit_through_the_server(server, tmp_path):
    cfg = AuditConfig(model=f"openai/smollm2@{server['url']}", n_samples=2, continue_max_new_tokens=10,
                      experiments=("truncate", "filler"))
    result = audit(cfg, tmp_path, progress=False, plots=False)
    cut = sum(r.traces["subject"].cut for r in result.records)
    assert result.summary.n_samples == 2 and result.summary.n_cut["subject"] == cut
    assert cut < 2 and "truncate" in result.summary.experiments  # the server reports finish_reason: a complete CoT is measured
    assert all(
        rec.results["truncate"][-1].forced_agrees
        for rec in result.records
        if rec.traces["subject"].answer
    )


def test_dead_server_gives_a_clear_error(tmp_path):
    b = get_backend(f"openai/smollm2@http://127.0.0.1:{_free_port()}/v1?max_retries=0&timeout=5", cache=False)
    with pytest.raises(CotscopeError, match=r"cannot reach the server at http://127\.0\.0\.1:\d+/v1"):
        b.generate([Prompt.chat("hi")], GenerationParams(max_new_tokens=4))


def _inspect_eval(server, tmp_path, *task_args: str):
    """`inspect eval cotscope/early_answering --limit 2` through Inspect's openai-api provider
    pointed at the server, with `-T` arguments; the log it wrote."""
    pytest.importorskip("inspect_ai")
    from inspect_ai.log import read_eval_log

    from tests.helpers import tiktoken_cache

    cache = tmp_path / "tiktoken"
    cache.mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tiktoken_cache(cache)), "LLAMACPP_API_KEY": "none", "LLAMACPP_BASE_URL": server["url"]}
    inspect = str(Path(sys.executable).parent / "inspect")
    cmd = [inspect, "eval", "cotscope/early_answering", "--model", "openai-api/llamacpp/smollm2", "--limit", "2", "--log-dir", str(tmp_path / "logs")]
    for arg in ("n_samples=2", *task_args):
        cmd += ["-T", arg]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (log,) = list((tmp_path / "logs").glob("*.eval"))
    return read_eval_log(str(log))


@pytest.mark.slow
def test_inspect_eval_through_the_server(server, tmp_path):
    """`inspect eval cotscope/early_answering` with Inspect's openai-api provider pointed at the
    llama.cpp server: the CoT prefixes go as a last assistant message, which it continues."""
    ev = _inspect_eval(server, tmp_path, "max_new_tokens=96", "continue_max_new_tokens=32")
    assert ev.status == "success" and len(ev.samples) == 2
    for s in ev.samples:
        trace = s.metadata["cotscope"]["traces"]["subject"]
        assert trace["steps"] and trace["n_generated_tokens"] > 0  # the server's usage counts came through
    metrics = ev.results.scores[0].metrics
    assert metrics["aoc_n"].value + sum(s.metadata["cotscope"]["traces"]["subject"]["finish_reason"] == "length" for s in ev.samples) == 2


@pytest.mark.slow
def test_inspect_eval_of_a_choice_task_reads_letter_logprobs(server, tmp_path):
    """A multiple-choice task through Inspect: the forced answer is the letter with the highest
    next-token log-probability, which the server returns through Inspect's logprobs."""
    ev = _inspect_eval(server, tmp_path, "task_args=choices=4", "max_new_tokens=64", "continue_max_new_tokens=16")
    assert ev.status == "success"
    for s in ev.samples:
        trace = s.metadata["cotscope"]["traces"]["subject"]
        assert trace["answer"] in "ABCD" and set(trace["answer_logprobs"]) == set("ABCD")
        assert max(trace["answer_logprobs"].values()) == trace["answer_logprobs"][trace["answer"]]
