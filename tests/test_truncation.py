"""The truncation experiment on crafted systems whose metric values are computed by hand."""

import pytest

from cotscope import AuditConfig, audit

from .helpers import crafted_backend, write_crafted_task


@pytest.fixture
def result(tmp_path):
    task = write_crafted_task(tmp_path)
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", task_args={}, n_samples=2, experiments=("truncate",))
    return audit(cfg, tmp_path / "run", backend=crafted_backend(), progress=False)


def test_traces_are_chunked_and_answered(result):
    faithful = result.records[0]
    assert [s.text for s in faithful.traces["subject"].steps] == ["We start with 4.", "Add 3 to get 7.", "Double it to get 14."]
    assert faithful.traces["subject"].answer == "14" and faithful.correct == {"subject": True, "baseline": False}


def test_forced_answers_follow_the_cot_by_hand(result):
    faithful, posthoc = result.records
    assert [p.forced.answer for p in faithful.results["truncate"]] == ["0", "4", "7", "14"]
    assert [p.forced_agrees for p in faithful.results["truncate"]] == [False, False, False, True]
    assert [p.forced.answer for p in posthoc.results["truncate"]] == ["14"] * 4
    assert [p.fraction for p in faithful.results["truncate"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [p.n_tokens_given for p in faithful.results["truncate"]] == [0, 4, 9, 14]


def test_continuations_spend_the_remaining_tokens(result):
    faithful = result.records[0]
    assert [p.continued.n_tokens for p in faithful.results["truncate"][:-1]] == [14, 10, 5]
    assert faithful.results["truncate"][-1].continued is None
    assert all(p.continued_agrees for p in faithful.results["truncate"][:-1])


def test_summary_values_by_hand(result):
    s = result.summary
    t = s.experiments["truncate"]
    # AOC: faithful 1 (agrees only at 100%), post-hoc 0 (always agrees): mean 0.5.
    assert s["truncate/aoc"].value == pytest.approx(0.5) and s["truncate/aoc"].n == 2
    assert s["truncate/aoc_continued"].value == pytest.approx(0.0)
    assert s["accuracy/subject"].value == 1.0 and s["accuracy/baseline"].value == 0.5
    assert s["accuracy/cot_gain"].value == pytest.approx(0.5)
    curve = {round(p.x, 2): p.values for p in t.curve}
    assert curve[0.0]["agreement"].value == pytest.approx(0.5)
    assert curve[0.5]["agreement"].value == pytest.approx(0.5)  # faithful has 1/3 < 0.5 < 2/3
    # The forced answer after the whole CoT is asked again: measured, even when every sample agrees.
    assert curve[1.0]["agreement"].value == 1.0 and curve[1.0]["agreement"].method == "clopper-pearson" and curve[1.0]["agreement"].lo < 1
    # Nothing is continued after the whole CoT: fixed by definition.
    assert curve[1.0]["continued_agreement"].method == "exact" and curve[1.0]["further_tokens"].method == "exact"
    assert curve[0.0]["agreement"].method == "clopper-pearson" and curve[0.0]["agreement"].hi - curve[0.0]["agreement"].lo > 0.5
    assert curve[0.0]["further_tokens"].value == pytest.approx(14)
    assert curve[0.4]["further_tokens"].value == pytest.approx(10)
    assert curve[1.0]["further_tokens"].value == 0
    assert [p.values["agreement"].n for p in t.by_k] == [2, 2, 2, 2]
    assert any("rests on 1 correct" in w for w in s.warnings)


def test_outputs_written(result):
    assert {p.stem for p in result.run_dir.glob("*.png")} == {"accuracy", "truncate"}  # only the experiments asked for run
    for name in ("config.json", "samples.jsonl", "summary.json", "truncate.png", "accuracy.png"):
        assert (result.run_dir / name).stat().st_size > 0


def test_a_rewrite_that_is_none_is_counted_and_left_out():
    from cotscope.experiments._curves import invalid_rewrite

    cot = ["First, 2 + 3 = 5.", "So the answer is 5."]
    assert invalid_rewrite(cot, [], "mock") == "empty"
    assert invalid_rewrite(cot, ["  "], "mock") == "empty"
    assert invalid_rewrite(cot, ["First, 2 + 3 = 5.  So the answer", "is 5."], "mock") == "a copy"
    assert invalid_rewrite(cot, ["FIRST, 2 + 3 = 5.", "SO THE ANSWER IS 5."], "mock") is None  # a change of case is a change of surface
    assert invalid_rewrite(cot, ["Adding 2 and 3 gives 5, the answer."], "mock") is None
    assert invalid_rewrite(["..."], ["..."], "chain") is None  # rule-based: nothing to rewrite comes back as it is


def test_copies_from_a_model_rewriter_are_excluded_and_warned(tmp_path):
    """A rewriter that echoes every step: the paraphrase experiment counts each as a copy and
    leaves it out instead of reporting zero paraphrase sensitivity."""
    from cotscope import audit
    from cotscope.backends.mock import MockBackend

    def echo(prompt, params):
        text = prompt.messages[-1].content
        if "Sentence:" in text:
            return text.split("Sentence:")[-1].strip()
        if prompt.prefix.rstrip().endswith(":"):
            return "5"
        return "2 plus 3 is 5.\nAnswer: 5" if "step by step" in text else "Answer: 5"

    r = audit(model="mock", backend=MockBackend(respond=echo), n_samples=3, experiments=("paraphrase",), baseline="",
              run_dir=tmp_path / "a", progress=False, plots=False)
    assert r.summary.experiments["paraphrase"].n_invalid == {"a copy": 3}
    change = r.summary.metrics.get("paraphrase/answer_change")
    assert change is None or change.n == 0  # never a 0% [..] made of copies
    assert any("were a copy of the CoT" in w for w in r.summary.warnings)


@pytest.mark.slow
def test_points_spread_the_curve_over_the_cot_and_bound_its_cost(tmp_path):
    from cotscope.experiments import experiment_class
    from cotscope.trace import Step, Trace

    truncate = experiment_class("truncate")({"points": 4})
    steps = [Step(text=f"step {i}.", n_tokens=2) for i in range(10)]
    trace = lambda n: Trace(system="cot", steps=steps[:n], final_text="", raw_text="", answer="1")  # noqa: E731
    assert truncate.cuts(trace(10)) == [0, 3, 7, 10]
    assert truncate.cuts(trace(2)) == [0, 1, 2]  # fewer chunks than points: every chunk

    task = write_crafted_task(tmp_path)
    every = AuditConfig(model="mock", task=f"jsonl:{task}", n_samples=2, experiments=("truncate", "summary"))
    two = every.model_copy(update={"experiment_options": {"truncate": {"points": 2}, "summary": {"points": 2}}})
    backend_every, backend_two = crafted_backend(), crafted_backend()
    r_every = audit(every, tmp_path / "every", backend=backend_every, progress=False)
    r_two = audit(two, tmp_path / "two", backend=backend_two, progress=False)
    faithful = r_two.records[0].results["truncate"]
    assert [(p.k, p.n, p.fraction) for p in faithful] == [(0, 3, 0.0), (3, 3, 1.0)]
    assert faithful[0].continued.n_tokens == 14 and faithful[-1].continued is None
    # the two points are the ends of the every-chunk curve: same answers there
    full = r_every.records[0].results["truncate"]
    assert [p.forced.answer for p in faithful] == [full[0].forced.answer, full[-1].forced.answer]
    assert r_two.summary["truncate/aoc"].n == r_every.summary["truncate/aoc"].n == 2
    assert [c.x for c in r_two.summary.experiments["truncate"].by_k] == [0, 3]
    assert backend_two.n_generated_prompts < backend_every.n_generated_prompts


def test_one_point_is_refused_before_any_work(tmp_path, capsys):
    from cotscope.cli.main import main

    assert main(["audit", "--model", "mock", "--option", "truncate.points=1", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "points must be 0 (every chunk) or at least 2" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
