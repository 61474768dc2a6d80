"""Property-based tests: malformed input gets an error that names the problem, never an
unhandled exception."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cotscope import CotscopeError, get_task
from cotscope.records import SampleRecord
from cotscope.tasks.base import extract_answer, grade, normalize_number
from cotscope.trace import join_steps, split_steps

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
lines = st.one_of(
    st.text(max_size=80),
    json_values.map(json.dumps),
    st.fixed_dictionaries({"question": json_values, "answer": json_values}, optional={"choices": json_values, "id": json_values}).map(json.dumps),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.lists(lines, min_size=1, max_size=5))
def test_jsonl_loader_names_file_and_line_or_loads(tmp_path, content):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(c.replace("\n", " ") for c in content) + "\n", encoding="utf-8")
    try:
        task = get_task(f"jsonl:{path}")
    except CotscopeError as exc:
        msg = str(exc)
        assert f"{path}:" in msg or "has no samples" in msg
        return
    for s in task.samples:
        assert s.question.strip()
        if s.choices:
            assert s.answer in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(s.choices)]


@settings(max_examples=300)
@given(text=st.text(max_size=200), kind=st.sampled_from(["numeric", "choice", "exact"]), n=st.integers(2, 8))
def test_answer_parser_never_raises(text, kind, n):
    answer, error = extract_answer(text, kind, n)
    assert (answer is None) != (error is None)
    if kind == "choice" and answer is not None:
        assert answer in "ABCDEFGH"[:n]
    if kind == "numeric" and answer is not None:
        assert normalize_number(answer) == answer
    grade(answer, "3", kind)


@settings(max_examples=200)
@given(text=st.text(max_size=300))
def test_chunking_keeps_every_word(text):
    steps = split_steps(text)
    assert all(s.strip() == s and s for s in steps)
    assert join_steps(steps).split() == text.split()


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=json_values)
def test_a_junk_record_line_is_named_by_file_and_line(tmp_path, obj):
    """Any JSON value that is not a record makes the run directory fail to load with an error
    naming the file and the line; none is silently dropped."""
    from cotscope import AuditConfig
    from cotscope.store import RunStore

    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").unlink(missing_ok=True)
    (run / "samples.jsonl").write_text(json.dumps(obj) + "\n")
    try:
        RunStore(run, AuditConfig(model="mock"), create=False)
    except CotscopeError as exc:
        assert f"{run / 'samples.jsonl'}:1: not a valid sample record" in str(exc)
    else:
        raise AssertionError(f"{obj!r} loaded as a sample record")
