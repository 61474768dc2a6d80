"""The OpenAI-compatible backend against a local server that fails: bounded retries with
backoff, a clear error after the limit, finished samples kept."""

import pytest

from cotscope import AuditConfig, CotscopeError, GenerationParams, Prompt, audit, get_backend

from .faultserver import FaultServer

pytest.importorskip("openai")
PARAMS = GenerationParams(max_new_tokens=8)


def backend(url, **opts):
    query = "&".join(f"{k}={v}" for k, v in {"max_retries": 3, "timeout": 10, "concurrency": 1, **opts}.items())
    return get_backend(f"openai/m@{url}?{query}", cache=False)


def test_retries_through_500_429_and_a_dropped_connection():
    with FaultServer() as srv:
        srv.script.extend(["500", "429", "drop"])
        out = backend(srv.url).generate([Prompt.chat("q")], PARAMS)
        assert "42" in out[0].text and srv.requests == 4


@pytest.mark.slow
def test_gives_up_after_the_retry_limit():
    with FaultServer() as srv:
        srv.default = "500"
        with pytest.raises(CotscopeError, match=r"refused a completion: HTTP 500 \(after 2 retries\)"):
            backend(srv.url, max_retries=2).generate([Prompt.chat("q")], PARAMS)
        assert srv.requests == 3


def test_a_stalled_server_times_out_clearly():
    with FaultServer() as srv:
        srv.default, srv.stall_s = "stall", 3
        with pytest.raises(CotscopeError, match=r"did not answer a completion in time \(1\.0 s, 0 retries\)"):
            backend(srv.url, max_retries=0, timeout=1).generate([Prompt.chat("q")], PARAMS)


@pytest.mark.slow
def test_finished_samples_survive_a_dying_server(tmp_path):
    with FaultServer() as srv:
        cfg = AuditConfig(model=f"openai/m@{srv.url}?max_retries=1&timeout=5", n_samples=4, samples_in_flight=1,
                          experiments=("truncate", "filler"))
        fresh = lambda: get_backend(cfg.model, cache=False)  # noqa: E731 - a model with an empty cache
        audit(cfg.model_copy(update={"n_samples": 2}), tmp_path / "probe2", backend=fresh(), progress=False, plots=False)
        two = srv.requests
        audit(cfg, tmp_path / "probe4", backend=fresh(), progress=False, plots=False)
        four = srv.requests - two
        srv.script.extend(["ok"] * two)  # two samples go through, then the server dies
        srv.default = "drop"
        with pytest.raises(CotscopeError, match="cannot reach the server"):
            audit(cfg, tmp_path / "run", backend=fresh(), progress=False, plots=False)
        assert (tmp_path / "run" / "samples.jsonl").read_text().count("\n") == 2
        srv.default, before = "ok", srv.requests
        result = audit(cfg, tmp_path / "run", backend=fresh(), progress=False, plots=False)
        assert len(result.records) == 4 and srv.requests - before == four - two  # only the 2 missing samples
