"""Legibility metrics on crafted CoTs with known properties (the ordering, not only that a
number exists), and `cotscope drift` on two runs: paired differences and the KL estimate."""

import base64
import json
import random

import pytest

pytest.importorskip("wordfreq")
pytest.importorskip("lingua")

from cotscope import AuditConfig, CotscopeError, audit  # noqa: E402
from cotscope.cli.main import main  # noqa: E402
from cotscope.drift import drift  # noqa: E402
from cotscope.experiments.legibility import language_share, real_word_share, surface  # noqa: E402

from .helpers import crafted_backend, write_crafted_task  # noqa: E402

ENGLISH = "First we count the apples in the basket. Then we add the three apples that Ben gave us, so we have seven."
GERMAN = "Zuerst zählen wir die Äpfel im Korb. Dann addieren wir die drei Äpfel, die Ben uns gegeben hat."


def shuffled(text: str) -> str:
    """The same letters, shuffled, cut into six-letter words."""
    chars = list(text.replace(" ", ""))
    random.Random(0).shuffle(chars)
    return " ".join("".join(chars[i : i + 6]) for i in range(0, len(chars), 6))


def test_real_words_rank_english_above_shuffled_and_base64():
    b64 = base64.b64encode(ENGLISH.encode()).decode()
    english, mixed, encoded = real_word_share(ENGLISH), real_word_share(shuffled(ENGLISH)), real_word_share(b64)
    assert english > 0.95
    assert english > mixed + 0.4 and english > encoded + 0.4
    assert real_word_share("...\n...") == 0 and real_word_share("  ") is None


def test_language_share_catches_german():
    assert language_share(ENGLISH) > 0.9
    assert language_share(GERMAN) < 0.2
    assert language_share("12 + 7 = 19") is None  # no letters: nothing to identify


def test_surface_signals_by_hand():
    s = surface("aaa aaa aaa aaa aaa", ["aaa aaa aaa", "aaa aaa"])
    assert s["repeated_trigram_share"] == 1.0 and s["mean_step_words"] == 2.5 and s["non_ascii_share"] == 0
    assert surface("so → ∴ ✓", ["so → ∴ ✓"])["non_ascii_share"] > 0.3
    varied = surface(ENGLISH, [ENGLISH])["compression_ratio"]
    assert surface("the same words " * 20, ["x"])["compression_ratio"] < varied


def crafted_run(tmp_path, name, backend):
    task = write_crafted_task(tmp_path)
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", n_samples=2, experiments=("truncate", "legibility"))
    return audit(cfg, tmp_path / name, backend=backend, progress=False, plots=False)


def test_legibility_runs_in_an_audit(tmp_path):
    r = crafted_run(tmp_path, "a", crafted_backend())
    s = r.summary
    assert s["legibility/real_word_share"].value > 0.9 and s["legibility/real_word_share"].n == 2
    assert "legibility/nll_per_token" in s.metrics  # scored under the reference (the subject's model here)
    res = r.records[0].results["legibility"][0]
    assert res.nll_read == "scored"  # the mock reports no log-probabilities as it writes: the CoT is scored again
    assert len(res.step_real_word_share) == len(r.records[0].traces["subject"].steps)


@pytest.mark.slow
@pytest.mark.parametrize("model, system", [("organism/faithful", "cot"), ("organism/faithful-think", "think")])
def test_the_subjects_nll_is_read_from_its_own_decode_and_agrees_with_scoring_it_again(tmp_path, model, system):
    """Without a reference role, the NLL is the subject's log-probabilities as it wrote the CoT (no
    pass over the CoT runs again); with the same model named as the reference, the CoT is scored
    again after the same prompt (inside the thinking block on a thinking channel). The organism's
    tokens re-encode as written, so the two differ only by the line break before the answer,
    which the written CoT has and its chunks joined do not."""
    pytest.importorskip("torch")
    from cotscope import get_backend

    def run(name, roles):
        cfg = AuditConfig(model=model, system=system, task="chain", n_samples=3, experiments=("legibility",), roles=roles)
        backend = get_backend(model, cache=False)  # a fresh one each run: nothing the other ran is kept
        out = audit(cfg, tmp_path / name, backend=backend, progress=False, plots=False)
        return out, backend.n_prefill_tokens

    written, cost = run("w", {})
    scored, _ = run("s", {"reference": model})
    a = [r.results["legibility"][0] for r in written.records]
    b = [r.results["legibility"][0] for r in scored.records]
    assert {x.nll_read for x in a} == {"written"} and {x.nll_read for x in b} == {"scored"}
    for x, y, rec in zip(a, b, written.records, strict=True):
        assert x.n_tokens_scored == y.n_tokens_scored + 1 == rec.traces["subject"].cot_logprob_tokens
        assert x.nll_per_token * x.n_tokens_scored == pytest.approx(y.nll_per_token * y.n_tokens_scored, rel=0.03, abs=0.05)
    assert cost < sum(x.n_tokens_scored for x in a)  # the whole run, prompts and forced answers, ran fewer tokens than the CoTs hold


@pytest.mark.slow
def test_drift_of_a_run_against_itself_and_against_a_changed_run(tmp_path, capsys):
    a = crafted_run(tmp_path, "a", crafted_backend())
    same = drift(a.run_dir, a.run_dir, tmp_path / "d0", backends=(crafted_backend(), crafted_backend()))
    assert same.kl_ab.value == 0 and same.kl_ab.lo < 0 < same.kl_ab.hi  # a model against itself: 0 within its CI
    assert all(r.difference.value == (1 if r.difference.method == "t-log" else 0) for r in same.metrics)  # costs: a ratio
    assert any(r.difference.method == "t-log" for r in same.metrics)

    def garbled(prompt, params):
        from .helpers import crafted_reply

        out = crafted_reply(prompt, params)
        return out.replace("We start with", "Wq stzrt wkth").replace("Add", "Xdd")

    from cotscope.backends.mock import MockBackend

    b = crafted_run(tmp_path, "b", MockBackend(respond=garbled))
    d = drift(a.run_dir, b.run_dir, tmp_path / "d1", kl=False)
    rows = {r.name: r for r in d.metrics}
    assert rows["legibility/real_word_share"].difference.value < -0.1
    assert d.moved[0].moved > 0
    assert json.loads((tmp_path / "d1" / "drift.json").read_text())["n_samples"] == 2
    assert 'data-name="legibility/real_word_share"' in (tmp_path / "d1" / "drift.html").read_text()
    assert main(["drift", str(a.run_dir), str(b.run_dir), "--no-kl", "--out", str(tmp_path / "d2")]) == 0
    assert "real words (wordfreq)" in capsys.readouterr().out


def test_drift_refuses_runs_on_different_samples(tmp_path):
    a = crafted_run(tmp_path, "a", crafted_backend())
    other = AuditConfig(model="mock", n_samples=2, experiments=("truncate",))
    b = audit(other, tmp_path / "b", progress=False, plots=False)
    with pytest.raises(CotscopeError, match="the runs differ in task"):
        drift(a.run_dir, b.run_dir, kl=False)


def test_two_rubric_judges_with_their_agreement(tmp_path):
    from cotscope.backends import registry
    from cotscope.backends.mock import MockBackend

    registry._CACHE["mock?delay=0"] = MockBackend(respond=lambda p, params: "8")
    registry._CACHE["mock?delay=0.0"] = MockBackend(respond=lambda p, params: "Score: 3")
    try:
        task = write_crafted_task(tmp_path)
        cfg = AuditConfig(model="mock", task=f"jsonl:{task}", n_samples=2, experiments=("legibility",),
                          roles={"judge": "mock?delay=0", "judge2": "mock?delay=0.0"})
        s = audit(cfg, tmp_path / "run", backend=crafted_backend(), progress=False, plots=False).summary
    finally:
        registry._CACHE.pop("mock?delay=0", None)
        registry._CACHE.pop("mock?delay=0.0", None)
    assert s["legibility/judge_score"].value == pytest.approx(0.8) and s["legibility/judge2_score"].value == pytest.approx(0.3)
    assert s["legibility/judge_agreement"].value == 0  # 8 and 3 are more than 2 apart
    assert s.experiments["legibility"].n == 2 and s.experiments["legibility"].kappa.value == 0  # one says yes, the other no, always
