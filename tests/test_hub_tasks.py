"""The hub loaders, run on small local files in each data set's own format."""

import json

import pytest

from cotscope import CotscopeError, get_task

pytest.importorskip("datasets")

ROWS = {
    "gsm8k": [
        {"question": "Ann has 3 pens and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"question": "A costs $1,000 twice. Total?", "answer": "2 * 1000 = 2000\n#### 2,000"},
    ],
    "arc-challenge": [
        {"id": "Mercury_1", "question": "Which is a gas?", "choices": {"text": ["ice", "steam", "rock"], "label": ["A", "B", "C"]}, "answerKey": "B"},
        {"id": "NYSED_2", "question": "Pick two.", "choices": {"text": ["one", "two"], "label": ["1", "2"]}, "answerKey": "2"},
    ],
    "aqua-rat": [
        {"question": "2x = 8, x?", "options": ["A)2", "B)4", "C)6", "D)8", "E)10"], "rationale": "x = 4", "correct": "B"},
    ],
    "mmlu": [
        {"question": "2 + 2 = ?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1},
    ],
}
EXPECTED = {
    "gsm8k": [("7", None), ("2000", None)],
    "arc-challenge": [("B", ["ice", "steam", "rock"]), ("B", ["one", "two"])],
    "aqua-rat": [("B", ["2", "4", "6", "8", "10"])],
    "mmlu": [("B", ["3", "4", "5", "6"])],
}


@pytest.mark.parametrize("name", sorted(ROWS))
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_hub_loader_on_local_file(tmp_path, name, fmt):
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS[name]))
    else:
        import datasets

        datasets.Dataset.from_list(ROWS[name]).to_parquet(str(path))
    task = get_task(name, {"path": str(path)})
    assert [(s.answer, s.choices) for s in task.samples] == EXPECTED[name]
    assert task.kind == ("numeric" if name == "gsm8k" else "choice")


def test_hub_loader_names_a_bad_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(CotscopeError, match=r"gsm8k: row 0 .* not in gsm8k format"):
        get_task("gsm8k", {"path": str(path)})


def test_hub_loader_missing_local_file(tmp_path):
    with pytest.raises(CotscopeError, match="data file not found"):
        get_task("mmlu", {"path": str(tmp_path / "nope.parquet")})
