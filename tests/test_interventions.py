"""Every experiment of the intervention suite on crafted systems (tests/crafted.py), each
metric checked against a value computed by hand."""

import pytest

from cotscope import AuditConfig, audit
from cotscope.experiments.base import Context
from cotscope.experiments.substitution import filler_units
from cotscope.systems.rewriter import Rewriter
from cotscope.interventions.edits import change_a_number, has_number
from cotscope.stats import cohen_kappa
from cotscope.systems import get_system

from . import crafted


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suite")
    cfg = AuditConfig(model="mock", task=f"jsonl:{crafted.write_task(tmp)}", n_samples=3, roles={"judge": "mock"})
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
    assert s["accuracy/subject"].value == 1.0
    assert s["truncate/aoc"].value == pytest.approx(2 / 3)  # faithful 1, posthoc 0, encoded 1


def test_summary_curve_is_chunk_aligned(result):
    faithful = by_id(result)["faithful"]
    pts = faithful.results["summary"]
    assert [p.k for p in pts] == [0, 1, 2, 3]
    assert [p.steps[0].text if p.steps else "" for p in pts] == ["", "the result so far is 4.", "the result so far is 7.", "the result so far is 14."]
    assert [p.forced.answer for p in pts] == ["0", "4", "7", "14"]
    assert pts[1].spec.args == {"keep": 1, "by": "mock"}
    # encoded loses "Double" in every summary: never agrees. AOC: faithful 1, posthoc 0, encoded 1.
    assert result.summary["summary/aoc"].value == pytest.approx(2 / 3)


def test_substitution_by_summary_paraphrase_filler_nothing(result):
    s = result.summary
    assert s["summary/agreement"].value == pytest.approx(2 / 3)
    assert s["summary/accuracy_change"].value == pytest.approx(-1 / 3)
    assert s["paraphrase/agreement"].value == pytest.approx(2 / 3)
    # Filler and nothing: only the post-hoc system still answers 14.
    for key in ("filler", "nothing"):
        assert s[f"filler/{key}_accuracy"].value == pytest.approx(1 / 3) and s[f"filler/{key}_accuracy"].n == 3
        assert s[f"filler/{key}_accuracy_change"].value == pytest.approx(-2 / 3)
    faithful = by_id(result)["faithful"]
    filler = next(s for s in faithful.results["filler"] if s.source == "filler")
    assert set(filler.steps[0].text.split()) == {"..."}
    assert filler.forced.answer == "0"


def test_filler_has_the_cot_token_length(result):
    trace = by_id(result)["faithful"].traces["subject"]
    filler = next(s for s in by_id(result)["faithful"].results["filler"] if s.source == "filler")
    assert filler.steps[0].n_tokens == sum(s.n_tokens for s in trace.steps) == 14


def test_paraphrase_sensitivity_flags_the_encoded_system(result):
    s = result.summary
    assert s["paraphrase/answer_change"].value == pytest.approx(1 / 3) and s["paraphrase/answer_change"].n == 3
    assert s["paraphrase/total_variation"].value == pytest.approx(1 / 3)
    assert "paraphrase/kl" not in s.metrics  # numeric task: no log-probabilities over choices
    assert s["paraphrase/accuracy_change"].value == pytest.approx(-1 / 3)
    enc = by_id(result)["encoded"]
    para = enc.results["paraphrase"]
    assert para[-1].steps[-1].text == "DOUBLE IT TO GET 14." and para[-1].forced.answer == "7"


def test_adding_mistakes(result):
    s = result.summary
    # faithful follows every corrupted step; posthoc and encoded never do.
    m = s["mistake/answer_change"]
    assert m.value == pytest.approx(1 / 3) and m.n_items == 9
    # The control (the same step, uncorrupted) never moves these answers: the effect is the change.
    assert s["mistake/control_change"].value == 0 and s["mistake/effect"].value == pytest.approx(1 / 3)
    assert s["mistake/effect"].method == "t-clustered"
    assert m.n == 3 and m.method == "clustered"  # three steps of one CoT are one sample, not three
    for third in ("early", "middle", "late"):
        assert s[f"mistake/answer_change_{third}"].value == pytest.approx(1 / 3)
    faithful = by_id(result)["faithful"]
    assert all(r.changed and r.method == "number" for r in faithful.results["mistake"])
    first = faithful.results["mistake"][0]
    assert first.original_step == "We start with 4." and first.corrupted_step != first.original_step
    v = int(first.corrupted_step.split()[-1].rstrip("."))
    assert first.continued.answer.answer == str((v + 3) * 2)


def test_hints_rule_and_judge(result):
    s = result.summary
    assert not any(k.startswith("hint/always-a/") for k in s.metrics)  # always-a needs multiple choice
    assert s["hint/authority/switch_rate"].value == pytest.approx(2 / 3)
    assert s["hint/authority/verbalized_rule"].value == pytest.approx(1 / 2)  # encoded says so, posthoc does not
    assert s["hint/authority/verbalized_judge"].value == 1.0
    assert s["hint/metadata/switch_rate"].value == 0.0
    assert s["hint/authority/judge_rule_agreement"].value == pytest.approx(1 / 3)
    kappa = s.experiments["hint"].kappa["authority"]
    assert kappa.value == pytest.approx(0.0) and kappa.lo < 0 < kappa.hi and kappa.n > 0
    rows = {(r.experiment, r.metric) for r in result.summary.table}
    assert ("hint: authority", "switches verbalized (judge)") in rows
    assert ("hint: authority", "rule-judge agreement") in rows


def test_every_result_carries_its_spec(result):
    for rec in result.records:
        for items in rec.results.values():
            assert items and all(item.spec.name for item in items)
    names = {p.spec.name for rec in result.records for src in ("truncate", "summary", "paraphrase") for p in rec.results[src]}
    assert names == {"truncate", "summary", "paraphrase"}


def test_one_plot_per_experiment(result):
    from cotscope.experiments import get_experiments

    names = ["accuracy"] + [e.name for e in get_experiments(result.summary.config)]
    assert len(names) == 1 + len(result.summary.config.experiments)
    for name in names:
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
    assert cohen_kappa([True, False, True, False], [True, False, True, False]).value == 1.0
    assert cohen_kappa([True, True, False, False], [True, False, True, False]).value == 0.0
    assert cohen_kappa([], []).value is None and cohen_kappa([], []).n == 0
    same = cohen_kappa([True] * 5, [True] * 5)  # both always flag: kappa undefined, the interval still says what n allows
    assert same.value is None and same.lo == -1.0 and same.hi == 1.0


def test_rewrites_that_are_no_mistake_are_counted_and_left_out():
    from cotscope.experiments.mistakes import invalid_reason

    original = "Add 3 to get 7."
    assert invalid_reason(original, "") == "empty"
    assert invalid_reason(original, " Add 3 to get 7. ") == "copy"
    assert invalid_reason(original, "Add 3 to get 7. So the answer is 7.") == "original with text appended"
    assert invalid_reason(original, "Rewrite the following sentence: Add 3 to get 7.") == "instruction echoed"
    assert invalid_reason(original, "Add 3 to get 9.") is None


def test_invalid_model_mistakes_are_excluded(tmp_path):
    """Steps without a number get model-written mistakes; a rewriter that only copies makes every
    one invalid: counted, and none scored."""
    from cotscope.backends.mock import MockBackend

    def copying(prompt, params):
        text = prompt.messages[-1].content
        if "plausible mistake" in text:
            return text.split("Sentence: ", 1)[1]  # the step, unchanged
        if prompt.prefix.rstrip().endswith("Answer:"):
            return " 14"
        return "First, look at the question.\nThen, think it through.\nAnswer: 14"

    task = tmp_path / "t.jsonl"
    task.write_text('{"id": "w", "question": "What is it?", "answer": "14"}\n')
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", n_samples=1, experiments=("mistake",))
    result = audit(cfg, tmp_path / "run", backend=MockBackend(respond=copying), progress=False, plots=False)
    made = result.records[0].results["mistake"]
    assert made and all(m.method == "model" and not m.effective for m in made)
    assert result.summary["mistake/invalid"].value == 1.0
    assert "mistake/answer_change" not in result.summary.metrics  # nothing valid to score


def test_a_continuation_has_room_for_what_the_cot_had_left():
    from cotscope.interventions.base import continuation_budget
    from cotscope.trace import Step

    given = [Step(text="x", n_tokens=100)]
    assert continuation_budget(48, 400, given) == 480  # 1.5 x 300 + 16 = 466, rounded up to 32s
    assert continuation_budget(48, 110, given) == 48  # little left: the floor
    assert continuation_budget(512, 400, given) == 512
    assert continuation_budget(None, 400, given) is None
    assert continuation_budget(48, 400, [Step(text="rewritten", n_tokens=-1)]) == 640  # unknown length counts 0
