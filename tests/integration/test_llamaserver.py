"""``llamacpp/`` decoding through a llama-server (`cotscope.backends.llamaserver`).

Most tests run a stand-in (`tests/fake_llama_server.py`: the server's protocol over
llama-cpp-python's ``Llama``; plumbing, not llama.cpp's server): the rows' budgets, stop words
and end tokens come back as the in-process decoder gives them, and a server that dies is a
named error the audit survives. The last test runs the real ``llama-server`` where one is
installed ($COTSCOPE_LLAMA_SERVER or PATH) and is skipped elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from cotscope import AuditConfig, CotscopeError, audit
from cotscope._errors import EngineDied
from cotscope.backends import GenerationParams, Prompt, get_backend
from cotscope.store import RunStore

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.integration

FAKE = Path(__file__).resolve().parents[1] / "fake_llama_server.py"
QUESTIONS = ["What is 17 times 23? Think step by step.", "Name a colour.", "Write a haiku about rain.",
             "If Tom has 3 apples and buys 5 more, how many does he have?"]


def fake_program(tmp_path: Path) -> str:
    """An executable that runs the stand-in server with this interpreter."""
    exe = tmp_path / "fake-llama-server"
    exe.write_text(f"#!/bin/sh\nexec env PYTHONPATH={Path(__file__).resolve().parents[2]}:$PYTHONPATH {sys.executable} {FAKE} \"$@\"\n")
    exe.chmod(0o755)
    return str(exe)


def _provider(spec):
    b = get_backend(spec, cache=False)
    return b.provider if hasattr(b, "provider") else b


def test_rows_through_a_server_come_back_as_the_in_process_decoder_gives_them(path, tmp_path):
    """Plumbing (the stand-in decodes as `Llama` does): a stop word, an end token and a budget
    each end a row as in this process: the same text, finish reason, stop flag and counts."""
    served = _provider(f"llamacpp/{path}?n_ctx=1024&isolate=0&server={fake_program(tmp_path)}")
    here = _provider(f"llamacpp/{path}?n_ctx=1024&isolate=0&server=off")
    try:
        assert served.server is not None and here.server is None
        prompts = [Prompt.chat(q) for q in QUESTIONS]
        params = [GenerationParams(max_new_tokens=n, stop=s) for n, s in ((40, ("\n",)), (24, ()), (6, ()), (60, ("apples", "5")))]
        a, b = served.generate_each(prompts, params), here.generate_each(prompts, params)
        assert a == b
        assert [(c.finish_reason, c.stop_hit, c.n_generated_tokens) for c in a] == [(c.finish_reason, c.stop_hit, c.n_generated_tokens) for c in b]
        assert {c.finish_reason for c in a} == {"stop", "length"}  # both kinds of ending were exercised
        assert served.n_generated_tokens == here.n_generated_tokens > 0
    finally:
        served.close()
        here.close()


def test_an_audit_through_a_server_equals_one_decoded_in_process(path, tmp_path):
    """Plumbing: an audit's merged calls go to the server from the engine's own process; the
    records equal an in-process audit's."""
    spec = f"llamacpp/{path}?n_ctx=2048"
    served = get_backend(f"{spec}&server={fake_program(tmp_path)}", cache=False)
    here = get_backend(f"{spec}&server=off", cache=False)
    cfg = dict(n_samples=2, experiments=("truncate", "mistake"), progress=False, plots=False)
    try:
        a = audit(model=f"{spec}&server={fake_program(tmp_path)}", run_dir=tmp_path / "a", backend=served, **cfg)
        b = audit(model=f"{spec}&server=off", run_dir=tmp_path / "b", backend=here, **cfg)
    finally:
        served.close()
        here.close()

    def records(run, server):  # the model's spec names the server: everything else is compared
        return [json.loads(r.model_dump_json(exclude={"wall_s"}).replace(json.dumps(f"{spec}&server={server}")[1:-1], "SPEC")) for r in run.records]

    assert records(a, fake_program(tmp_path)) == records(b, "off")
    # the summary says the server decoded, and that a rerun through it is not exact; not without it
    assert [w for w in a.summary.warnings if "llama-server" in w] == [
        "the model was decoded by llama-server (8 slots, repacked weights): which rows share a step depends on the server's "
        "timing, so a rerun's greedy text can differ after a near tie; ?server=off decodes one row at a time, exactly."]
    assert not [w for w in b.summary.warnings if "llama-server" in w]


def test_a_server_that_dies_on_its_repacked_weights_starts_again_without_them(path, tmp_path, monkeypatch):
    """Positive control: the stand-in crashes at start unless told --no-repack (as the native
    build's AMX kernel did); the backend says so and decodes. With extra_bufts=1 there is no
    second try: the crash is a named error."""
    monkeypatch.setenv("FAKE_LLAMA_SERVER_AMX", "1")
    spec = f"llamacpp/{path}?n_ctx=1024&isolate=0&server={fake_program(tmp_path)}"
    served = _provider(spec)
    try:
        assert served.decoder == "llama-server (8 slots, plain weights: repacked ones crashed it on this CPU)"
        assert served.generate([Prompt.chat("Name a colour.")], GenerationParams(max_new_tokens=4))[0].n_generated_tokens > 0
    finally:
        served.close()
    with pytest.raises(EngineDied, match=r"llama-server did not start \(killed by SIGSEGV\)"):
        _provider(spec + "&extra_bufts=1")
    monkeypatch.delenv("FAKE_LLAMA_SERVER_AMX")
    served = _provider(spec)
    assert served.decoder == "llama-server (8 slots, repacked weights)"  # the control: no crash, no second try
    served.close()


def test_a_server_that_names_no_program_is_a_named_error_before_loading(path):
    from cotscope.backends import check_backend

    with pytest.raises(CotscopeError, match="server=/nonexistent/llama-server: no such program"):
        check_backend(f"llamacpp/{path}?server=/nonexistent/llama-server")


def test_no_server_on_path_decodes_in_process(path, monkeypatch):
    from cotscope.backends.llamaserver import ENV, find_server

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(ENV, raising=False)
    assert find_server("auto") is None and find_server("off") is None
    monkeypatch.setenv(ENV, "off")
    assert find_server("auto") is None


def test_a_server_that_dies_mid_audit_is_named_and_the_audit_resumes_with_nothing_lost(path, tmp_path, monkeypatch):
    """Positive control: the stand-in kills itself with SIGSEGV half way through the audit's
    completions. The audit raises EngineDied naming llama-server and the signal; the samples
    that finished are on disk; the same command with a working server resumes and equals an
    uninterrupted run."""
    config = AuditConfig(model=f"llamacpp/{path}?n_ctx=2048&server={fake_program(tmp_path)}", n_samples=3, samples_in_flight=1,
                         experiments=("truncate",))
    count = tmp_path / "served"
    monkeypatch.setenv("FAKE_LLAMA_SERVER_COUNT", str(count))
    reference = audit(config, tmp_path / "ref", backend=get_backend(config.model, cache=False), progress=False, plots=False)
    total = len(count.read_text().splitlines())
    monkeypatch.setenv("FAKE_LLAMA_SERVER_DIE_AFTER", str(total * 2 // 3))
    with pytest.raises(EngineDied, match=r"llama-server died while decoding \(killed by SIGSEGV") as err:
        audit(config, tmp_path / "run", backend=get_backend(config.model, cache=False), progress=False, plots=False)
    assert "run the same command again to resume" in str(err.value)
    assert 0 < len(RunStore(tmp_path / "run", config).records) < 3
    monkeypatch.delenv("FAKE_LLAMA_SERVER_DIE_AFTER")
    resumed = audit(config, tmp_path / "run", backend=get_backend(config.model, cache=False), progress=False, plots=False)
    assert [r.model_dump(exclude={"wall_s"}) for r in resumed.records] == [r.model_dump(exclude={"wall_s"}) for r in reference.records]


def _same_until_a_near_tie(here, prompt, a: str, b: str, tie_nats: float = 0.5) -> None:
    """Two greedy texts of one prompt are the same, or part where the in-process model gives
    the two next tokens (an end token where one text ended) within `tie_nats` of each other."""
    from cotscope.backends.base import common_prefix

    if a == b:
        return
    ta, tb = (here.llm.tokenize(t.encode(), add_bos=False, special=False) for t in (a, b))
    i = common_prefix(ta, tb)
    eos = here.llm.token_eos()
    x, y = (t[i] if i < len(t) else eos for t in (ta, tb))
    lp = here._logprobs_after(here.encode(here.render(prompt)) + ta[:i])
    assert abs(lp[x] - lp[y]) < tie_nats, f"token {i}: {abs(lp[x] - lp[y]):.2f} nats apart, not a near tie ({a!r} / {b!r})"


def _real_server() -> str | None:
    named = os.environ.get("COTSCOPE_LLAMA_SERVER", "")
    return shutil.which(named) if named and named != "off" else shutil.which("llama-server")


@pytest.mark.skipif(_real_server() is None, reason="no llama-server installed ($COTSCOPE_LLAMA_SERVER or PATH)")
def test_llama_server_gives_the_in_process_greedy_text_until_a_near_tie(path):
    """llama.cpp's own server, 8 slots decoding side by side, against the in-process decoder on
    the embedded GGUF. CPU feature: the server's kernels are those of its build (its AMX kernel
    is kept out by --no-repack on CPUs with amx_tile, as in process). Rows batched together may
    round differently, so texts agree until a near tie (measured here: see docs/performance.md)."""
    served = _provider(f"llamacpp/{path}?n_ctx=4096&isolate=0&server={_real_server()}")
    here = _provider(f"llamacpp/{path}?n_ctx=4096&isolate=0&server=off")
    try:
        prompts = [Prompt.chat(q) for q in QUESTIONS] * 2
        params = GenerationParams(max_new_tokens=48)
        a, b = served.generate(prompts, params), here.generate(prompts, params)
        for p, x, y in zip(prompts, a, b):
            _same_until_a_near_tie(here, p, x.text, y.text)
        for p, x, y in zip(prompts, a[:4], a[4:]):  # one prompt asked twice in one batch
            _same_until_a_near_tie(here, p, x.text, y.text)
    finally:
        served.close()
        here.close()
