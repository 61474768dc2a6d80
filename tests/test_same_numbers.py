"""The same commands give the same numbers as before the plug-in redesign: seeded runs on the
mock backend and on two organisms, against summaries recorded with the earlier code
(tests/data/golden). Point estimates and sample sizes must match; intervals were remade by
coverage-tested methods, so they are not compared here (tests/test_coverage.py covers them)."""

import json
from pathlib import Path

import pytest

from cotscope import AuditConfig, audit

GOLDEN = Path(__file__).parent / "data" / "golden"
SOURCES = {"original": "truncate", "summary": "summary", "paraphrase": "paraphrase"}


def old_rows(old: dict) -> dict[tuple[str, str], dict]:
    return {(r["experiment"], r["metric"]): r["estimate"] for r in old["table"]}


def check_same(old: dict, new) -> int:
    """Every number of the old summary's table and curves, in the new summary. Returns how many."""
    new_rows = {(r.experiment, r.metric): r.estimate for r in new.table}
    compared = 0
    for key, e in old_rows(old).items():
        if e["n"] == 0:  # the table now leaves out numbers without data
            assert key not in new_rows
            continue
        assert key in new_rows, f"{key} is missing from the new table"
        assert new_rows[key].value == pytest.approx(e["value"], abs=1e-9), key
        compared += 1
    for src, t in old["truncation"].items():
        curves = new.experiments[SOURCES[src]]
        assert curves.n_samples == t["n_samples"]
        for kind in ("curve", "by_k"):
            for p_old, p_new in zip(t[kind], getattr(curves, kind), strict=True):
                for metric, e in p_old["values"].items():
                    got = p_new.values[metric]
                    assert got.n == e["n"], (src, kind, p_old["x"], metric)
                    if e["value"] is None:
                        assert got.value is None
                    else:
                        assert got.value == pytest.approx(e["value"], abs=1e-9), (src, kind, p_old["x"], metric)
                    compared += 1
    return compared


@pytest.mark.parametrize("name", ["mock-arith", "mock-choice"])
def test_mock_runs_give_the_recorded_numbers(name, tmp_path):
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    kw = {k: v for k, v in golden["config"].items() if k != "n_bootstrap"}
    result = audit(AuditConfig(**kw), tmp_path / name, progress=False, plots=False)
    assert check_same(golden["summary"], result.summary) > 100


@pytest.mark.integration
@pytest.mark.parametrize("organism", ["encoded", "post-hoc"])
def test_organism_runs_give_the_recorded_numbers(organism, tmp_path):
    from cotscope.organisms.validate import organism_config

    golden = json.loads((GOLDEN / f"organism-{organism}.json").read_text())
    result = audit(organism_config(organism, golden["n_samples"], 0), tmp_path / organism, progress=False, plots=False)
    assert check_same(golden["summary"], result.summary) > 100
