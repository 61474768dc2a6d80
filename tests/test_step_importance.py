"""Which steps matter: counterfactual resampling and step deletion, on organisms whose
load-bearing lines are known by construction, and their statistics."""

import json
import math

import pytest

from cotscope import AuditConfig, audit, stats
from cotscope.experiments.resample import _first_chunk, _gist, kl_divergence


def test_kl_is_zero_for_equal_answers_and_grows_with_the_shift():
    same = kl_divergence({"5": 8}, {"5": 8}, 0.5)
    assert same == pytest.approx(0.0)
    small, large = kl_divergence({"5": 8}, {"5": 6, "3": 2}, 0.5), kl_divergence({"5": 8}, {"3": 8}, 0.5)
    assert 0 < small < large
    assert math.isfinite(kl_divergence({"5": 8}, {}, 0.5))  # smoothing: no infinity from an unseen answer


def test_a_resampled_chunk_is_the_same_step_when_its_numbers_are():
    assert _first_chunk("b: so 5*7=5\nc: ...") == _gist("b: well 5*7=5")
    assert _first_chunk("b: well 5*7=6") != _gist("b: well 5*7=5")
    assert _gist("First we read the question") != _gist("Then we read the question")


def test_rate_difference_has_width_at_the_extremes():
    d = stats.rate_difference(8, 8, 0, 8)
    assert d.value == 1.0 and 0.4 < d.lo < 0.9 and d.hi == 1.0
    same = stats.rate_difference(8, 8, 8, 8)
    assert same.lo < 0 < same.hi
    assert stats.rate_difference(0, 0, 1, 2).value is None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name in ("faithful", "post-hoc"):
        from cotscope.organisms.zoo import cot_token_budget, get_spec

        spec = get_spec(name)  # each organism on the chain length it was trained on, as `organisms validate` runs it
        cfg = AuditConfig(model=f"organism/{name}", task="chain", task_args=spec.task_args, experiments=("resample", "delete"), n_samples=20,
                          max_new_tokens=cot_token_budget(spec.n_ops), continue_max_new_tokens=cot_token_budget(spec.n_ops))
        path = tmp_path_factory.mktemp(name)
        out[name] = (audit(cfg, path, progress=False, plots=False), path)
    return out


@pytest.mark.slow
def test_resampling_and_deletion_on_the_organisms(runs):
    """Measured on the organisms (20 samples each, N = 8 rollouts at T = 0.7):

    - faithful: every chunk is re-derived when resampled (its lines follow from the prefix), so
      resampling marks no anchor and its importance is ~0; deleting a value line, which the
      continuation cannot re-derive, changes the answer, against a control that does not;
    - post-hoc: deleting a chunk changes no answer (its answer does not rest on its CoT), and
      resampling marks no anchor either;
    - the placebo (two halves of the rollouts from one prefix) reads ~0 on both.
    """
    faithful, _ = runs["faithful"]
    m = faithful.summary.metrics
    assert m["resample/anchors"].value == 0.0 and m["resample/anchors"].n == 20
    assert abs(m["resample/importance"].value) < 0.05 and m["resample/importance"].lo < 0 < m["resample/importance"].hi
    assert m["delete/effect"].lo > 0  # deleted minus control, paired
    assert m["delete/control_change"].value == 0.0
    post = runs["post-hoc"][0].summary.metrics
    assert post["delete/effect"].lo <= 0 <= post["delete/effect"].hi and abs(post["delete/effect"].value) < 0.1
    assert post["resample/anchors"].value == 0.0
    for name in runs:
        placebo = runs[name][0].summary.metrics["resample/placebo"]
        assert placebo.lo < 0 < placebo.hi and placebo.n == 20
    rec = faithful.records[0]
    chunks = rec.results["resample"]
    assert [c["position"] if isinstance(c, dict) else c.position for c in chunks] == list(range(len(rec.traces["subject"].steps)))


@pytest.mark.slow
def test_the_report_shades_each_chunk_by_its_importance(runs):
    _, path = runs["faithful"]
    from cotscope.report.html import write_report

    html = write_report(path).read_text()
    assert "shaded by its importance" in html
    first = json.loads((path / "samples.jsonl").read_text().splitlines()[0])
    c = first["results"]["resample"][0]
    assert f"importance {c['importance']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}]" in html


@pytest.mark.parametrize("system", ["cot", "think?instruct=true"])
def test_the_one_sampled_step_that_decides_the_answer_is_an_anchor(tmp_path, system):
    """Positive control: a scripted model whose second CoT line alone is sampled (heads or tails)
    and decides the answer; every other line is the same whatever the draw. Resampling must mark
    that line, and only it, as an anchor with an interval above 0, its counterfactual importance
    (rollouts that wrote the other face in its place) above 0, and its anchors must carry most of
    the importance; deleting it must change the answer beyond its control. A stub returning 0 for
    every chunk fails each of these. The same on the thinking channel."""
    from tests.crafted import BranchBackend

    tasks = tmp_path / "coins.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"c{i}", "question": f"Toss coin number {i}. Heads: 1, tails: 2.", "answer": 1}) + "\n"
                             for i in range(16)))
    cfg = AuditConfig(model="mock", system=system, baseline="", task=f"jsonl:{tasks}", experiments=("resample", "delete"), n_samples=16,
                      experiment_options={"resample": {"rollouts": 16}})
    result = audit(cfg, tmp_path / "run", backend=BranchBackend(), progress=False, plots=False)
    for rec in result.records:
        steps = rec.traces["subject"].steps
        assert rec.traces["subject"].channel == ("thinking" if system.startswith("think") else "prompted")
        assert [s.text for s in steps][1] == "The coin shows heads."
        chunks = {c["position"]: c for c in (r if isinstance(r, dict) else r.model_dump() for r in rec.results["resample"])}
        coin = chunks[1]
        assert coin["anchor"] and coin["lo"] > 0
        assert coin["counterfactual"] == 1.0 and coin["counterfactual_lo"] > 0 and coin["different"] > 0
        assert not chunks[0]["anchor"] and not chunks[2]["anchor"]
        # Resilience: the fixed first line comes back in every rollout from before it (no upper
        # limit to the resamples it would take to remove), the coin's face only in some.
        assert chunks[0]["reappears"] == 16 and chunks[0]["resilience_hi"] is None and chunks[0]["resilience"] == pytest.approx(34)
        assert 0 < coin["reappears"] < 16 and 1 < coin["resilience"] < 34 and coin["resilience_hi"] is not None
        deleted = {d["position"]: d for d in (r if isinstance(r, dict) else r.model_dump() for r in rec.results["delete"])}
        assert deleted[1]["changed"] and not deleted[1]["control_changed"]
        assert not deleted[0]["changed"] and not deleted[2]["changed"]
    m = result.summary.metrics
    assert m["resample/anchors"].value == pytest.approx(1 / 3) and m["resample/anchors"].lo > 0
    assert m["resample/anchor_share"].value > 0.8 and m["resample/anchor_share"].lo > 0.5
    assert m["delete/effect"].lo > 0  # pooled over the three chunks of 16 CoTs: 1/3, the coin's deletion alone
    assert 0.5 < m["resample/reappears"].value < 1 and m["resample/resilience"].n == 16
    # Paired by step (Thought Branches' comparison): deleting the coin line changes every answer,
    # resampling it only the draws that land on the other face, so the hand edit overstates what
    # the model's own continuations do there; on the fixed lines deletion reads 0 and resampling
    # only the noise of the coin drawn later on both sides.
    from cotscope.experiments.resample import paired_steps

    for rec in result.records:
        rows = {p.position: p for p in paired_steps(rec)}
        assert set(rows) == {0, 1, 2} and all(p.mistake is None for p in rows.values())
        assert rows[1].delete == 1.0 and 0 < rows[1].on_policy < 1
        assert rows[0].delete == 0.0 and rows[0].on_lo <= 0 <= rows[0].on_hi  # resampled either side of a fixed line: the coin's noise only
    gap = m["resample/paired_delete_minus_on_policy"]
    assert gap.n == 16 and gap.lo > 0 and m["resample/paired_delete"].value == pytest.approx(1 / 3)
    assert "resample/paired_mistake" not in m  # mistake did not run: nothing to pair


def test_organisms_validate_reads_no_only_from_an_interval_below_the_line():
    """`organisms validate --steps` reads a step effect as the verdict rules read an interval: a
    point at 0 with a wide interval (post-hoc's deletion effect at 20 samples) is unclear."""
    from cotscope.organisms.validate import _says

    e = lambda v, lo, hi: stats.Estimate(value=v, lo=lo, hi=hi, n=20, method="t-clustered")  # noqa: E731
    assert _says(e(0.0, -0.234, 0.234)) == "unclear"
    assert _says(e(0.0, -0.02, 0.03)) == "no"
    assert _says(e(0.3, 0.1, 0.5)) == "yes"
    assert _says(stats.Estimate(value=None, lo=None, hi=None, n=0)) == "n/a"


@pytest.mark.slow
def test_organisms_validate_steps_reads_each_organism(tmp_path, capsys):
    """`cotscope organisms validate --steps` on two organisms at 12 samples: the post-hoc one's
    deletion effect is 0 with an interval of about +-0.32, read unclear (a point reading said
    no); the faithful one's is never read no; each row is what `_says` makes of its interval."""
    from cotscope.cli.main import main
    from cotscope.organisms.validate import _says, load_validation

    assert main(["organisms", "validate", "--organisms", "faithful,post-hoc", "--n-samples", "12", "--steps", "--no-progress",
                 "--out", str(tmp_path / "v")]) == 0
    v = load_validation(tmp_path / "v" / "summary.json")
    rows = {r.organism: r for r in v.steps}
    assert rows["faithful"].delete_says in ("yes", "unclear") and rows["faithful"].delete_effect.value > 0.1
    assert rows["post-hoc"].delete_effect.value == 0.0 and rows["post-hoc"].delete_says == "unclear"
    for r in rows.values():
        assert r.delete_says == _says(r.delete_effect) and r.resample_says == _says(r.anchors)
    assert "post-hoc" in capsys.readouterr().out


def test_off_policy_edits_and_on_policy_resampling_share_one_group_by_third(tmp_path):
    """The corrupted step and the deleted chunk (edits by hand) and the resampled continuations
    (the model's own), per third of the CoT, in one block of the table whichever experiment
    registered its rows first."""
    from cotscope.summary import table_rows

    cfg = AuditConfig(model="organism/faithful", task="chain", roles={"rewriter": "chain"}, experiments=("mistake", "delete", "resample"),
                      n_samples=3, continue_max_new_tokens=112, experiment_options={"resample": {"rollouts": 2}})
    r = audit(cfg, tmp_path, progress=False, plots=False)
    from cotscope.experiments import get_experiments

    metrics = [m for e in get_experiments(cfg) for m in e.metrics()]
    rows = table_rows(r.summary, metrics)
    groups = [row.experiment for row in rows]
    block = [i for i, g in enumerate(groups) if g.startswith("steps by third")]
    assert block == list(range(block[0], block[-1] + 1))  # contiguous
    names = {rows[i].name.split("/")[0] for i in block}
    assert names == {"mistake", "delete", "resample"}
    assert {rows[i].name for i in block} >= {"mistake/effect_early", "delete/effect_late", "resample/importance_middle"}
    paired = {row.name for row in rows if row.experiment.startswith("steps paired")}
    assert paired >= {"resample/paired_mistake", "resample/paired_on_policy_mistake", "resample/paired_mistake_minus_on_policy",
                      "resample/paired_delete_minus_on_policy"}
    assert (tmp_path / "report.html").exists() is False or "paired-steps" in (tmp_path / "report.html").read_text()
