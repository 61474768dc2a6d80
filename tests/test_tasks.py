import json

import pytest

from cotscope import CotscopeError, get_task
from cotscope.tasks.base import extract_answer, grade


def test_arithmetic_is_seeded_and_correct():
    a = get_task("arithmetic", {"n_ops": "3", "max_value": "30", "ops": "+-*"}, limit=50, seed=7)
    b = get_task("arithmetic", {"n_ops": "3", "max_value": "30", "ops": "+-*"}, limit=50, seed=7)
    c = get_task("arithmetic", {"n_ops": "3", "max_value": "30", "ops": "+-*"}, limit=50, seed=8)
    assert [s.question for s in a.samples] == [s.question for s in b.samples]
    assert [s.question for s in a.samples] != [s.question for s in c.samples]
    for s in a.samples:
        values = [int(v) for v in str(s.meta["values"]).split()]
        assert len(values) == 4 and values[-1] == int(s.answer) and min(values) >= 0
        assert str(values[0]) in s.question


def test_arithmetic_multiple_choice_has_gold_among_choices():
    task = get_task("arithmetic", {"choices": "4"}, limit=20)
    assert task.kind == "choice"
    for s in task.samples:
        assert len(s.choices) == 4 and len(set(s.choices)) == 4
        assert s.choices["ABCD".index(s.answer)] == s.meta["values"].split()[-1]


def test_bad_arithmetic_args():
    with pytest.raises(CotscopeError, match="ops"):
        get_task("arithmetic", {"ops": "/"})
    with pytest.raises(CotscopeError, match="task 'arithmetic': unknown option 'colour'; known: choices, max_value, n, n_ops, ops"):
        get_task("arithmetic", {"colour": "red"})
    with pytest.raises(CotscopeError, match="task 'chain': option n_ops='abc': expected an integer"):
        get_task("chain", {"n_ops": "abc"})


def test_unknown_task_names_the_known_ones():
    with pytest.raises(CotscopeError, match="unknown task 'nope'.*arithmetic"):
        get_task("nope")


def test_jsonl_task(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text(
        json.dumps({"question": "2+2?", "answer": 4}) + "\n\n"
        + json.dumps({"id": "x", "question": "Pick", "answer": "b", "choices": ["a", "b"]}) + "\n"
    )
    task = get_task(f"jsonl:{f}")
    assert [s.answer for s in task.samples] == ["4", "B"]
    assert task.samples[1].id == "x" and task.kind == "exact"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "q", "answer": 1', "t.jsonl:2: not valid JSON"),
        ('{"answer": 1}', r"t.jsonl:2: missing field\(s\) \['question'\]"),
        ('[1, 2]', "t.jsonl:2: want a JSON object"),
        ('{"question": "q", "answer": "Z", "choices": ["a", "b"]}', "t.jsonl:2: answer 'Z' is not"),
        ('{"question": "q", "answer": 1, "choices": "ab"}', "t.jsonl:2: 'choices' must be"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "t.jsonl"
    f.write_text('{"question": "ok", "answer": 1}\n' + line + "\n")
    with pytest.raises(CotscopeError, match=message):
        get_task(f"jsonl:{f}")


def test_missing_task_file(tmp_path):
    with pytest.raises(CotscopeError, match="task file not found"):
        get_task(f"jsonl:{tmp_path / 'none.jsonl'}")


@pytest.mark.parametrize(
    "text, kind, expected",
    [
        ("so 3 + 4 = 7.\nAnswer: 7", "numeric", "7"),
        ("Answer: $1,200.", "numeric", "1200"),
        ("we get 12 then 15", "numeric", "15"),
        ("The answer is (C).", "choice", "C"),
        ("Answer: B) because", "choice", "B"),
        ("Answer: Paris\nmore", "exact", "Paris"),
    ],
)
def test_extract_answer(text, kind, expected):
    assert extract_answer(text, kind, 4) == (expected, None)


def test_extract_answer_records_failure():
    assert extract_answer("no idea", "numeric") == (None, "no number found")
    assert extract_answer("hmm", "choice", 4) == (None, "no choice letter found")
    assert grade(None, "3", "numeric") is False
    assert grade("3.0", "3", "numeric") and not grade("4", "3", "numeric")
