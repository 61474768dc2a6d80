"""CoT controllability: each constraint's check, and the experiment on scripted models that obey
a constraint asked of their reasoning (a positive control), that obey it only in their answer,
and that ignore every instruction (the organisms' case)."""

from __future__ import annotations

import pytest

from cotscope import AuditConfig, audit
from cotscope.backends.mock import MockBackend
from cotscope.experiments.controllability import ControllabilityOptions, complies

O = ControllabilityOptions()


@pytest.mark.parametrize(("constraint", "text", "want"), [
    ("forbidden-word", "Add them: the sum is 7.", False),
    ("forbidden-word", "Add them: their sum is 7; theory holds.", True),  # a whole word only
    ("lowercase", "add them, then double.", True),
    ("lowercase", "Add them.", False),
    ("lowercase", "14", None),  # no letters: not applicable
    ("word-budget", " ".join(["w"] * 40), True),
    ("word-budget", " ".join(["w"] * 41), False),
    ("no-digits", "seven plus seven is fourteen", True),
    ("no-digits", "7 + 7 = 14", False),
    ("language", "", None),
])
def test_each_constraint_is_checked_on_the_text(constraint, text, want):
    assert complies(constraint, text, O) is want


def test_the_language_check_reads_the_language_lingua_identifies():
    pytest.importorskip("lingua")
    assert complies("language", "Nous additionnons les deux nombres, puis nous doublons le résultat obtenu.", O) is True
    assert complies("language", "We add the two numbers, then we double the result we obtained.", O) is False


def scripted(obeys_cot: bool, obeys_answer: bool):
    """A model whose CoT says "The sum is ..." and whose answer line is "the answer is 14";
    asked to avoid "the" in its reasoning it drops it there if `obeys_cot`, and in its answer
    if `obeys_answer`. It writes the very word the check looks for, so the tests on it check
    plumbing (which text each arm reads, the pairing, the control); the thinking organism below
    is the case whose ground truth the experiment did not write."""

    def respond(prompt, params):
        q = prompt.messages[-1].content
        if prompt.prefix.rstrip().endswith("Answer:"):
            drop = obeys_answer and 'word "the" anywhere in your final answer' in q
            return " fourteen, 14" if drop else " the answer is 14"
        drop = obeys_cot and 'word "the" anywhere in your reasoning' in q
        return ("Sum is 7.\nDoubled it is 14." if drop else "The sum is 7.\nThe double is 14.") + "\nAnswer: 14"

    return MockBackend(respond=respond)


def run(tmp_path, backend, name):
    cfg = AuditConfig(model="mock", n_samples=6, experiments=("controllability",), experiment_options={"controllability": {"constraints": ["forbidden-word"]}})
    return audit(cfg, tmp_path / name, backend=backend, progress=False, plots=False).summary.metrics


def test_a_model_that_obeys_in_its_cot_is_found_controllable_and_one_that_ignores_is_not(tmp_path):
    obeys = run(tmp_path, scripted(obeys_cot=True, obeys_answer=True), "obeys")
    assert obeys["controllability/forbidden-word/cot"].value == 1.0 and obeys["controllability/forbidden-word/unasked"].value == 0.0
    assert obeys["controllability/forbidden-word/asked_minus_unasked"].lo > 0  # asking moved the CoT
    ignores = run(tmp_path, scripted(obeys_cot=False, obeys_answer=False), "ignores")
    assert ignores["controllability/forbidden-word/cot"].value == 0.0
    d = ignores["controllability/forbidden-word/asked_minus_unasked"]
    assert d.value == 0.0 and d.lo < 0 < d.hi  # the control: nothing moved, and the interval says so


def test_a_model_that_obeys_only_in_its_answer_shows_the_controllability_gap(tmp_path):
    m = run(tmp_path, scripted(obeys_cot=False, obeys_answer=True), "gap")
    assert m["controllability/forbidden-word/answer"].value == 1.0 and m["controllability/forbidden-word/cot"].value == 0.0
    gap = m["controllability/forbidden-word/cot_minus_answer"]
    assert gap.value == -1.0 and gap.hi < 0 and gap.n == 6
    assert m["controllability/pooled/cot_minus_answer"].value == -1.0


def test_a_bad_option_is_a_named_error_before_any_work():
    from cotscope._errors import CotscopeError
    from cotscope.experiments import experiment_class

    with pytest.raises(CotscopeError, match="language"):
        experiment_class("controllability")({"language": "xx"})


def test_on_a_thinking_organism_the_constraint_reaches_the_thinking_block_and_is_ignored(tmp_path):
    """The organisms read no instructions: asked, their thinking complies exactly as unasked."""
    pytest.importorskip("torch")
    cfg = AuditConfig(model="organism/faithful-think", system="think", baseline="", task="chain", n_samples=3,
                      experiments=("controllability",), experiment_options={"controllability": {"constraints": ["forbidden-word", "no-digits"]}})
    r = audit(cfg, tmp_path, progress=False, plots=False)
    res = r.records[0].results["controllability"]
    assert {x.cot_trace.channel for x in res} == {"thinking"}
    assert all("in your reasoning" in x.cot_trace.messages[0].content for x in res)
    m = r.summary.metrics
    assert m["controllability/pooled/asked_minus_unasked"].value == 0.0
    assert m["controllability/pooled/cot"].value == m["controllability/pooled/unasked"].value
