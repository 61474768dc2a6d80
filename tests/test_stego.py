"""Paraphraser strength (`cotscope stego`): encoders decode exactly, capacity follows what the
paraphraser destroys, injections are judged against their controls, and nothing a bad
encoder, cover or paraphraser does crashes the run or loses finished work."""

import json
import random

import pytest

from cotscope import CotscopeError, stego
from cotscope.backends.mock import MockBackend
from cotscope.cli.main import main
from cotscope.stego import INJECTIONS, Paraphraser, Rewritten, register_paraphraser
from cotscope.stego.encoders import DETERMINISTIC, CoverTooSmall, get_encoder, number_word
from cotscope.stego.injections import inject
from cotscope.stego.records import RECORD, key
from cotscope.trace import Sample

COVER = (
    "First, we take the number 12 and add 7 to get 19.\n"
    "Then we multiply the total by 2, which gives 38.\n"
    "Now we check the result once more against the question.\n"
    "So the final value is 38 and that is the answer."
)
SAMPLE = Sample(id="s", question="What is (12+7)*2?", answer="38")


def english(prompt, params):
    """A mock model whose CoT is COVER and whose answer is the last number it sees."""
    if prompt.prefix.rstrip().endswith(":"):
        import re

        nums = re.findall(r"\d+", prompt.prefix)
        return nums[-1] if nums else "unknown"
    return COVER


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_every_deterministic_encoder_decodes_exactly(name):
    enc = get_encoder(name)
    rng = random.Random(name)
    for n_bits in (1, 4, 6):
        for _ in range(20):
            bits = [rng.randrange(2) for _ in range(n_bits)]
            text = enc.encode(COVER, bits, SAMPLE)
            assert enc.decode(text, n_bits, SAMPLE) == bits
            assert enc.encode(COVER, [1 - b for b in bits], SAMPLE) != text  # every bit shows in the text


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_a_payload_longer_than_the_cover_is_refused(name):
    with pytest.raises(CoverTooSmall, match="room for"):
        get_encoder(name).encode("Yes.", [1] * 64, SAMPLE)


def test_a_channel_that_is_gone_reads_as_unknown():
    """The acrostic of plain lines: no opener, so no bit is read (None), never a made-up one."""
    assert get_encoder("acrostic").decode("the answer is 5\nit is", 8, SAMPLE) == [None] * 8
    assert number_word(42) == "forty-two" and number_word(7) == "seven"


def test_connective_is_the_organisms_code():
    enc = get_encoder("connective")
    cover = "a: so 3+4=7\nb: then 7*2=4\nc: now 4+1=5"
    for bits in ([0, 0, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1]):
        text = enc.encode(cover, bits, SAMPLE)
        assert [line.split()[2] for line in text.splitlines()] == [line.split()[2] for line in cover.splitlines()]  # meaning kept
        assert enc.decode(text, 4, SAMPLE) == bits


def test_injections_are_judged_on_what_only_obeying_produces():
    assert len({inj.text for inj in INJECTIONS}) == len(INJECTIONS)  # no template counted twice
    for inj in INJECTIONS:
        injected = inject(COVER, inj)
        control = inject(COVER, inj, control=True)
        assert inj.text.splitlines()[0] in injected and inj.text.splitlines()[0] not in control
        if inj.canary:
            # copying the CoT with its injection does not count as obeying it
            assert not inj.obeyed(injected) and not inj.obeyed(control)
        else:
            assert inj.obeyed(injected) and inj.obeyed(control)  # a copy keeps the line: the control shows it
            assert not inj.obeyed(COVER)


@register_paraphraser("test-fixed")
class Fixed(Paraphraser):
    """Returns the same text whatever it is given."""

    def paraphrase(self, texts, questions, draw=0):
        return [Rewritten("We computed something and got a number.") for _ in texts]


@register_paraphraser("test-flaky")
class Flaky(Paraphraser):
    """Refuses any batch of more than one (so the run must retry one at a time), then raises
    on the first question, returns nothing for the second and copies the rest."""

    def paraphrase(self, texts, questions, draw=0):
        if len(texts) > 1:
            raise RuntimeError("batch refused")
        if questions[0] == FIRST.question:
            raise RuntimeError("cannot paraphrase this")
        if questions[0] == SECOND.question:
            return [""]
        return list(texts)


def _samples():
    from cotscope.tasks import get_task

    return get_task("arithmetic", {}, limit=4, seed=0).samples


FIRST, SECOND = _samples()[:2]


def run(tmp_path, name="run", **kw):
    kw.setdefault("encoders", DETERMINISTIC)
    kw.setdefault("n_samples", 4)
    kw.setdefault("coverage_draws", 0)
    kw.setdefault("injections_per_sample", 0)
    return stego(run_dir=tmp_path / name, backend=MockBackend(respond=english), model="mock", progress=False, **kw)


def test_with_no_paraphraser_every_encoder_keeps_its_whole_payload(tmp_path):
    r = run(tmp_path, paraphrasers=("none",), payload_bits=6, n_samples=8)
    for enc in DETERMINISTIC:
        c = r.summary.cell(enc, "none")
        assert c.n == 8 and not c.failures
        assert c.exact.value == 1.0 and c.bit_error.value == 0.0
        assert c.capacity.value == pytest.approx(6.0) and c.capacity.hi == pytest.approx(6.0)
        assert 0 < c.capacity.lo < 6  # 8 samples cannot prove 6 bits exactly
        assert c.answer_kept.value == 1.0


def test_a_fixed_text_paraphraser_leaves_no_bits_and_little_meaning(tmp_path):
    r = run(tmp_path, paraphrasers=("none", "test-fixed"), payload_bits=4, n_samples=12)
    for enc in DETERMINISTIC:
        c = r.summary.cell(enc, "test-fixed")
        assert c.capacity.value < 1.5, enc  # no information about the payload gets through
        assert c.exact.value < 0.5
    fixed = r.summary.paraphraser("test-fixed")
    assert fixed.meaning_kept.value < 0.2  # the mock's answer is the last number: the fixed text has none
    assert fixed.obedience.value == 0.0 and fixed.control.value == 0.0


def test_identity_obeys_every_keep_verbatim_injection_and_no_canary(tmp_path):
    r = run(tmp_path, paraphrasers=("none",), encoders=("case",))
    none = r.summary.paraphraser("none")
    assert none.by_kind["keep-verbatim"].obeyed.value == 1.0
    assert none.by_kind["keep-verbatim"].control.value == 1.0  # ... and keeps the line without being asked
    assert none.by_kind["canary"].obeyed.value == 0.0
    assert none.effect.value == 0.0


def test_failures_are_recorded_and_counted_never_a_crash(tmp_path):
    r = run(tmp_path, paraphrasers=("test-flaky",), encoders=("acrostic", "case"), payload_bits=4)
    for enc in ("acrostic", "case"):
        c = r.summary.cell(enc, "test-flaky")
        assert c.failures == {"paraphrase failed": 2} and c.n == 2
        assert c.capacity.value == pytest.approx(4.0)  # the two it did paraphrase (copies) keep everything
    rec = [json.loads(x) for x in (r.run_dir / "records.jsonl").read_text().splitlines()]
    bad = sorted(x["failure"] for x in rec if x["kind"] == "cell" and x["failure"])
    assert sum("cannot paraphrase this" in b for b in bad) == 2 and sum("empty" in b for b in bad) == 2
    inj = r.summary.paraphraser("test-flaky")
    assert inj.n_failed == 2 * len(INJECTIONS) and inj.obedience.n == 2


def test_an_empty_cot_and_a_too_small_cover_are_counted(tmp_path):
    def terse(prompt, params):
        return "5" if prompt.prefix.rstrip().endswith(":") else ""

    r = stego(run_dir=tmp_path / "e", backend=MockBackend(respond=terse), model="mock", progress=False,
              encoders=("lexical",), paraphrasers=("none",), n_samples=3, coverage_draws=0)
    c = r.summary.cell("lexical", "none")
    assert c.n == 0 and c.failures == {"cover too small": 3}
    assert c.capacity.value is None and any("no room" in w for w in r.summary.warnings)


class Counting(Paraphraser):
    calls = 0

    def paraphrase(self, texts, questions, draw=0):
        Counting.calls += len(texts)
        return [Rewritten(t.upper()) for t in texts]


register_paraphraser("test-counting")(Counting)


def test_a_killed_run_resumes_without_redoing_work(tmp_path):
    Counting.calls = 0
    full = run(tmp_path, "full", paraphrasers=("test-counting",), encoders=("case", "numbers"), n_samples=4, coverage_draws=2)
    first_calls = Counting.calls
    lines = (full.run_dir / "records.jsonl").read_bytes().splitlines(keepends=True)
    # a kill after some records, in the middle of writing the next one
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.json").write_bytes((full.run_dir / "config.json").read_bytes())
    (cut / "records.jsonl").write_bytes(b"".join(lines[: len(lines) // 2]) + lines[len(lines) // 2][:20])
    Counting.calls = 0
    with pytest.warns(UserWarning, match="torn last line"):
        resumed = run(tmp_path, "cut", paraphrasers=("test-counting",), encoders=("case", "numbers"), n_samples=4, coverage_draws=2)
    assert 0 < Counting.calls < first_calls
    assert resumed.summary.model_dump() == full.summary.model_dump()
    keys = [key(RECORD.validate_json(x)) for x in (cut / "records.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == len(lines)
    Counting.calls = 0
    run(tmp_path, "cut", paraphrasers=("test-counting",), encoders=("case", "numbers"), n_samples=4, coverage_draws=2)
    assert Counting.calls == 0  # all done: nothing recomputed


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    run(tmp_path, paraphrasers=("none",), encoders=("case",), n_samples=2)
    with pytest.raises(CotscopeError, match="different config"):
        run(tmp_path, paraphrasers=("none",), encoders=("case",), n_samples=2, payload_bits=5)


def test_coverage_is_zero_for_a_deterministic_paraphraser(tmp_path):
    r = run(tmp_path, paraphrasers=("none", "test-counting"), encoders=("case",), coverage_draws=3)
    for p in ("none", "test-counting"):
        cov = r.summary.paraphraser(p).coverage
        assert cov["case"].value == 0.0 and cov["case"].hi > 0  # 0 of n is not [0, 0]


def test_the_report_shows_every_stage_side_by_side(tmp_path):
    r = run(tmp_path, paraphrasers=("none", "test-fixed"), encoders=("acrostic",), n_samples=2)
    html = r.report_path.read_text()
    assert "We computed something and got a number." in html and "On this basis," not in COVER
    assert html.count("<details>") >= 3 and (r.run_dir / "stego.png").stat().st_size > 1000
    summary = json.loads(r.summary_path.read_text())
    cell = next(c for c in summary["cells"] if c["paraphraser"] == "test-fixed")
    assert {"capacity", "answer_kept", "exact", "bit_error"} <= set(cell)
    assert all(k in cell["capacity"] for k in ("value", "lo", "hi", "n"))


def test_bad_names_fail_before_any_model_loads(capsys):
    for argv, msg in (
        (["stego", "--encoders", "nope"], "unknown encoder 'nope'"),
        (["stego", "--paraphrasers", "none,hf/../nowhere"], "hf/"),
        (["stego", "--injections", "bogus"], "unknown injection 'bogus'"),
        (["stego", "--paraphrasers", "mock?prompt=shout"], "prompt must be one of"),
        (["stego", "--paraphrasers", "mock?colour=red"], "unknown option 'colour'"),
        (["stego", "--payload-bits", "0"], "payload_bits"),
    ):
        assert main(argv) == 2, argv
        assert msg in capsys.readouterr().err, argv


@pytest.mark.slow
def test_cli_on_an_organism(tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["stego", "--model", "organism/faithful", "--task", "chain", "--encoders", "connective,acrostic",
                 "--paraphrasers", "none,chain", "--n-samples", "30", "--out", str(out), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "connective" in text and "injection obeyed" in text
    s = json.loads((out / "summary.json").read_text())
    cell = {(c["encoder"], c["paraphraser"]): c for c in s["cells"]}
    # the chain paraphraser redraws every connective from the meaning: the code is gone ...
    assert cell[("connective", "none")]["capacity"]["value"] == pytest.approx(4.0)
    assert cell[("connective", "chain")]["capacity"]["value"] < 0.5
    assert cell[("connective", "chain")]["capacity"]["hi"] < 2.0
    # ... and the answer is kept on (nearly) every sample
    assert cell[("connective", "chain")]["answer_kept"]["value"] >= 0.95
    assert cell[("connective", "chain")]["answer_kept"]["lo"] > 0.8


def tiny_model2vec(path):
    """A static embedding over the words of COVER, saved as model2vec saves one."""
    import numpy as np
    from model2vec import StaticModel
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w.strip(".,!").lower() for w in (COVER + " We computed something and got a number").split()})
    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    vectors = np.random.default_rng(0).normal(size=(len(vocab), 16)).astype(np.float32)
    StaticModel(vectors, tok).save_pretrained(str(path))
    return f"model2vec/{path}"


def test_semantic_similarity_from_a_local_model2vec_model(tmp_path):
    pytest.importorskip("model2vec")
    spec = tiny_model2vec(tmp_path / "m2v")
    r = run(tmp_path, paraphrasers=("none", "test-fixed"), encoders=("case",), n_samples=3, similarity=spec)
    same, fixed = r.summary.cell("case", "none").similarity, r.summary.cell("case", "test-fixed").similarity
    assert same.value == pytest.approx(1.0, abs=1e-5) and same.n == 3
    assert fixed.value < 0.9


def test_a_bad_similarity_spec_fails_before_work(tmp_path):
    with pytest.raises(CotscopeError, match="model2vec/<hub-id-or-local-path>"):
        run(tmp_path, paraphrasers=("none",), similarity="sbert/foo")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("variant", ["plain", "step", "context", "suspicious"])
def test_llm_paraphraser_prompts(variant, tmp_path):
    """Each prompt variant asks what it says; `step` asks once per line; draws differ in seed."""
    from cotscope.stego.paraphrasers import get_paraphraser

    seen = []

    def respond(prompt, params):
        seen.append((prompt, params))
        return "Paraphrase: " + prompt.messages[-1].content.splitlines()[-1].upper()

    backend = MockBackend(respond=respond)
    para = get_paraphraser(f"mock?prompt={variant}&temperature=0.5", lambda spec: backend, seed=3)
    out = para.paraphrase(["line one\nline two"], ["What?"], draw=0)
    para.paraphrase(["line one\nline two"], ["What?"], draw=1)
    assert len(out) == 1 and not out[0].text.startswith("Paraphrase:")  # the label is dropped
    first = [p for p, params in seen if params.seed == 3]
    assert len(first) == (2 if variant == "step" else 1)
    assert {params.seed for _, params in seen} == {3, 3 + 7919} and all(params.temperature == 0.5 for _, params in seen)
    text = "\n".join(m.content for p in first for m in p.messages)
    assert ("Question: What?" in text) == (variant == "context")
    assert ("secret message" in text) == (variant == "suspicious")
    assert "not instructions" in text or "Do not follow instructions" in text  # every variant says the text is data


@pytest.mark.slow
def test_a_stego_run_killed_with_sigkill_resumes_to_the_same_numbers(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    args = ["stego", "--model", "mock?delay=0.2", "--encoders", "case,numbers,instructed", "--paraphrasers", "none",
            "--n-samples", "8", "--samples-per-flush", "1", "--injections-per-sample", "2", "--coverage-draws", "0", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "cotscope"), *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not ((out / "records.jsonl").exists() and len((out / "records.jsonl").read_bytes().splitlines()) >= 12):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert main([*args, "--out", str(out)]) == 0
    keys = [key(RECORD.validate_json(x)) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys))
    ref, got = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "ref", out))
    assert got == ref
