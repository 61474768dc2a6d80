"""A provider in its own process: calls and errors cross intact, and a native crash in it is a
named error that the audit survives with every finished sample kept, then resumes from."""

from __future__ import annotations

import json

import pytest

from cotscope import AuditConfig, CotscopeError, audit
from cotscope._errors import EngineDied
from cotscope.backends._isolated import IsolatedBackend
from cotscope.backends.base import GenerationParams, Prompt
from cotscope.store import RunStore

from .helpers import crafted_backend, write_crafted_task

GREEDY = GenerationParams(max_new_tokens=64)


def test_an_isolated_provider_answers_as_the_same_provider_in_process():
    here = crafted_backend()
    there = IsolatedBackend("crafted", "tests.helpers:crafted_backend")
    try:
        prompts = [Prompt.chat("faithful: what is (4 + 3) * 2?"), Prompt.chat("posthoc: what is (4 + 3) * 2?")]
        assert there.generate(prompts, GREEDY) == here.generate(prompts, GREEDY)
        assert there.score(prompts, [["14", "7"], ["3"]]) == here.score(prompts, [["14", "7"], ["3"]])
        assert there.count_tokens("one two three") == here.count_tokens("one two three")
        assert not hasattr(there, "open_stream")  # only what the provider has is forwarded
        with pytest.raises(AttributeError):
            there.no_such_method()
    finally:
        there.close()
    assert not there.alive


def test_an_error_raised_in_the_engine_process_is_raised_here_unchanged(tmp_path):
    there = IsolatedBackend("crafted", "tests.helpers:crafted_backend")
    try:
        with pytest.raises(TypeError):  # raised by the provider in the engine's process
            there.generate_each([Prompt.chat("x")], None)
        assert there.alive  # an exception is not a crash: the engine answers the next call
        assert there.count_tokens("a b") == crafted_backend().count_tokens("a b")
    finally:
        there.close()


def test_a_factory_that_fails_to_load_is_its_own_error():
    with pytest.raises(CotscopeError, match="no such file"):
        IsolatedBackend("llamacpp/x", "cotscope.backends.llamacpp:_load_isolated", ("/nonexistent/model.gguf", {}))


def test_a_crash_in_the_engine_process_is_named_and_the_audit_resumes_with_nothing_lost(tmp_path):
    """Positive control: the engine process dies of SIGSEGV inside the third sample. The audit
    raises EngineDied naming the engine, the call and the signal; the two finished samples are
    on disk; a resumed run computes only the rest and equals an uninterrupted run."""
    task = write_crafted_task(tmp_path)
    rows = [json.loads(line) for line in task.read_text().splitlines()]
    copies = [{**r, "id": f"{r['id']}-{c}", "question": f"{r['question']} (copy {c})"} for c in "abc" for r in rows]
    task.write_text("".join(json.dumps(r) + "\n" for r in copies))
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", task_args={}, n_samples=6, samples_in_flight=1, experiments=("truncate",))
    reference = audit(cfg, tmp_path / "ref", backend=crafted_backend(), progress=False, plots=False)

    dying = IsolatedBackend("crafted (dying)", "tests.helpers:dying_crafted_backend", (str(tmp_path / "run" / "samples.jsonl"), 2), engine="the test engine")
    with pytest.raises(EngineDied, match=r"crafted \(dying\): the test engine's process died while running generate_each \(killed by SIGSEGV\)") as err:
        audit(cfg, tmp_path / "run", backend=dying, progress=False, plots=False)
    assert "run the same command again to resume" in str(err.value)
    assert len(RunStore(tmp_path / "run", cfg).records) == 2
    with pytest.raises(EngineDied, match="not running"):  # and it stays dead: no call hangs on it
        dying.count_tokens("x")
    dying.close()

    fresh = crafted_backend()
    resumed = audit(cfg, tmp_path / "run", backend=fresh, progress=False, plots=False)
    assert len({r.sample.id for r in resumed.records}) == 6
    assert [r.model_dump(exclude={"wall_s"}) for r in resumed.records] == [r.model_dump(exclude={"wall_s"}) for r in reference.records]


def test_without_isolation_the_same_backend_runs_in_process():
    """The control of the crash test: the same dying factory, never triggered, answers like the
    plain provider (the crash above comes from the kill, not from the wrapping)."""
    there = IsolatedBackend("crafted", "tests.helpers:dying_crafted_backend", ("/nonexistent/samples.jsonl", 0))
    try:
        p = [Prompt.chat("faithful: what is (4 + 3) * 2?")]
        assert there.generate(p, GREEDY) == crafted_backend().generate(p, GREEDY)
    finally:
        there.close()


def test_llamacpp_repacked_buffers_are_off_by_default_exactly_on_cpus_with_amx(monkeypatch):
    """CPU feature: amx_tile (llama.cpp's AMX kernel crashed there; see test_llamacpp.py)."""
    from cotscope.backends import llamacpp
    from cotscope.engine import threads as _threads

    for flags, on in ((frozenset({"avx2", "fma"}), True), (frozenset({"avx512f", "avx512_bf16"}), True),
                      (frozenset({"avx512f", "amx_tile", "amx_int8"}), False), (frozenset(), True)):
        monkeypatch.setattr(_threads, "real_cpu_flags", lambda flags=flags: flags)
        assert llamacpp.default_extra_bufts() is on
    # what the CPU has decides, not $COTSCOPE_CPU_FLAGS (bench/audit.py --as-avx2): the crash is the real CPU's
    monkeypatch.setattr(_threads, "real_cpu_flags", lambda: frozenset({"avx512f", "amx_tile"}))
    monkeypatch.setenv("COTSCOPE_CPU_FLAGS", "avx2 fma")
    _threads.cpu_flags.cache_clear()
    assert "amx_tile" not in _threads.cpu_flags() and llamacpp.default_extra_bufts() is False
    _threads.cpu_flags.cache_clear()


def test_the_cli_names_a_dead_engine_and_prints_the_command_that_resumes(monkeypatch, capsys):
    from cotscope import _errors
    from cotscope.cli import main as cli

    def dies(args):
        raise _errors.EngineDied("llamacpp/m.gguf: llama.cpp's process died while running generate_each (killed by SIGSEGV)")

    monkeypatch.setattr(cli, "_run", dies)
    argv = ["audit", "--model", "llamacpp/m.gguf", "--out", "runs/my run"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "killed by SIGSEGV" in err and "to resume: cotscope audit --model llamacpp/m.gguf --out 'runs/my run'" in err
