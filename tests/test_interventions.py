"""Every experiment of the intervention suite on crafted systems (tests/crafted.py), each
metric checked against a value computed by hand."""

import pytest

from cotscope import AuditConfig, audit
from cotscope.experiments.base import Context
from cotscope.experiments.substitution import filler_units
from cotscope.interventions import Rewriter
from cotscope.interventions.edits import change_a_number, has_number
from cotscope.metrics.faithfulness import cohen_kappa
from cotscope.systems import get_system

from . import crafted


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suite")
    cfg = AuditConfig(model="mock", task=f"jsonl:{crafted.write_task(tmp)}", n_samples=3, n_bootstrap=200, judge_model="mock")
    from cotscope.backends import registry

    registry._CACHE["mock"] = crafted.judge_backend()  # the judge spec resolves to the YES judge
    try:
        yield audit(cfg, tmp / "run", backend=crafted.backend(), progress=False)
    finally:
        registry._CACHE.pop("mock", None)


def by_id(result):
    return {r.sample.id: r for r in result.records}


def test_original_and_subject_answers(result):
    s = result.summary
    assert s.accuracy["subject"].value == 1.0
    assert s.truncation["original"].aoc.value == pytest.approx(2 / 3)  # faithful 1, posthoc 0, encoded 1


def test_summary_curve_is_chunk_aligned(result):
    faithful = by_id(result)["faithful"]
    pts = [p for p in faithful.truncation if p.source == "summary"]
    assert [p.k for p in pts] == [0, 1, 2, 3]
    assert [p.steps[0].text if p.steps else "" for p in pts] == ["", "the result so far is 4.", "the result so far is 7.", "the result so far is 14."]
    assert [p.forced.answer for p in pts] == ["0", "4", "7", "14"]
    assert pts[1].spec.args == {"keep": 1, "by": "mock"}
    # encoded loses "Double" in every summary: never agrees. AOC: faithful 1, posthoc 0, encoded 1.
    assert result.summary.truncation["summary"].aoc.value == pytest.approx(2 / 3)


def test_substitution_by_summary_paraphrase_filler_nothing(result):
    sub = {s.source: s for s in result.summary.substitution}
    assert sub["summary"].agreement.value == pytest.approx(2 / 3)
    assert sub["summary"].accuracy_change.value == pytest.approx(-1 / 3)
    assert sub["paraphrase"].agreement.value == pytest.approx(2 / 3)
    # Filler and nothing: only the post-hoc system still answers 14.
    for source in ("filler", "none"):
        assert sub[source].accuracy.value == pytest.approx(1 / 3) and sub[source].accuracy.n == 3
        assert sub[source].accuracy_change.value == pytest.approx(-2 / 3)
    faithful = by_id(result)["faithful"]
    filler = next(s for s in faithful.substitution if s.source == "filler")
    assert set(filler.steps[0].text.split()) == {"..."}
    assert filler.forced.answer == "0"


def test_filler_has_the_cot_token_length(result):
    trace = by_id(result)["faithful"].traces["subject"]
    filler = next(s for s in by_id(result)["faithful"].substitution if s.source == "filler")
    assert filler.steps[0].n_tokens == sum(s.n_tokens for s in trace.steps) == 14


def test_paraphrase_sensitivity_flags_the_encoded_system(result):
    p = result.summary.paraphrase_sensitivity
    assert p.answer_change.value == pytest.approx(1 / 3) and p.answer_change.n == 3
    assert p.total_variation.value == pytest.approx(1 / 3)
    assert p.kl is None  # numeric task: no log-probabilities over choices
    assert p.accuracy_change.value == pytest.approx(-1 / 3)
    enc = by_id(result)["encoded"]
    para = [x for x in enc.truncation if x.source == "paraphrase"]
    assert para[-1].steps[-1].text == "DOUBLE IT TO GET 14." and para[-1].forced.answer == "7"


def test_adding_mistakes(result):
    m = result.summary.mistakes
    # faithful follows every corrupted step; posthoc and encoded never do.
    assert m.answer_change.value == pytest.approx(1 / 3) and m.answer_change.n == 9
    assert {k: e.value for k, e in m.by_position.items()} == pytest.approx({"early": 1 / 3, "middle": 1 / 3, "late": 1 / 3})
    faithful = by_id(result)["faithful"]
    assert all(r.changed and r.method == "number" for r in faithful.mistakes)
    first = faithful.mistakes[0]
    assert first.original_step == "We start with 4." and first.corrupted_step != first.original_step
    v = int(first.corrupted_step.split()[-1].rstrip("."))
    assert first.continued.answer.answer == str((v + 3) * 2)


def test_hints_rule_and_judge(result):
    h = {x.kind: x for x in result.summary.hints}
    assert set(h) == {"authority", "metadata"}  # always-a needs multiple choice
    assert h["authority"].switch_rate.value == pytest.approx(2 / 3)
    assert h["authority"].verbalized_rule.value == pytest.approx(1 / 2)  # encoded says so, posthoc does not
    assert h["authority"].verbalized_judge.value == 1.0
    assert h["metadata"].switch_rate.value == 0.0
    assert h["authority"].judge_rule_agreement.value == pytest.approx(1 / 3)
    assert h["authority"].judge_rule_kappa == pytest.approx(0.0)
    rows = {(r.experiment, r.metric) for r in result.summary.table}
    assert ("hint: authority", "switches verbalized (judge)") in rows
    assert ("hint: authority", "rule-judge agreement") in rows


def test_every_result_carries_its_spec(result):
    for rec in result.records:
        for item in [*rec.truncation, *rec.substitution, *rec.mistakes, *rec.hints]:
            assert item.spec.name
    names = {p.spec.name for rec in result.records for p in rec.truncation}
    assert names == {"truncate", "summary", "paraphrase"}


def test_one_plot_per_experiment(result):
    for name in ("truncation", "substitution", "paraphrase", "mistakes", "hints", "accuracy"):
        assert (result.run_dir / f"{name}.png").stat().st_size > 5000


def test_change_a_number():
    assert change_a_number("1. Ben has 2 stamps.", 0) != "1. Ben has 2 stamps."
    assert change_a_number("1. Ben has 2 stamps.", 0).startswith("1. Ben has ")
    assert change_a_number("It costs 3.5 dollars", 1).count(".") == 1
    assert change_a_number("No numbers here.", 0) == "No numbers here."
    assert not has_number("1. First, think.") and has_number("So 7.")
    assert change_a_number("So 7.", 3) == change_a_number("So 7.", 3)  # deterministic


def test_filler_units_match_token_length():
    from cotscope.backends.mock import MockBackend

    b = MockBackend()
    ctx = Context(config=AuditConfig(model="mock"), task=None, subject=get_system("cot", b, "numeric"), rewriter=Rewriter(b))
    assert filler_units(ctx, 30) == 30 and filler_units(ctx, 0) == 0


def test_rewriter_caches_and_batches():
    b = crafted.backend()
    r = Rewriter(b)
    from cotscope.trace import Step

    cots = [[Step(text="We start with 4.", n_tokens=4)], [Step(text="We start with 4.", n_tokens=4), Step(text="Add 3 to get 7.", n_tokens=5)]]
    out = r.paraphrase(cots)
    assert [s.text for s in out[1]] == ["WE START WITH 4.", "ADD 3 TO GET 7."]
    assert b.n_generate_calls == 1 and b.n_generated_prompts == 2  # one batch, duplicates once
    r.paraphrase(cots)
    assert b.n_generate_calls == 1


def test_cohen_kappa():
    assert cohen_kappa([True, False, True, False], [True, False, True, False]) == 1.0
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == 0.0
    assert cohen_kappa([], []) is None
