"""A sliding-window model through ``llamacpp/``: Gemma 3's architecture (``gemma3``, five windowed
layers to one global) with random weights and a 16-token window, written by
`bench/sliding_window.py` (no Gemma 3 file can be downloaded here). Prefixes longer than the
window are shared between rows and give what a fresh context gives; a whole audit runs."""

import importlib.util
import json
from pathlib import Path

import pytest

from cotscope import AuditConfig, audit
from cotscope.backends import GenerationParams, Prompt, get_backend

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sliding_window.py"


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory, path):  # `path`: the embedded GGUF, whose tokenizer it copies
    spec = importlib.util.spec_from_file_location("sliding_window", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # weights large enough that the context changes the next token (checked below)
    return mod.write_gemma3_gguf(tmp_path_factory.mktemp("gemma3") / "tiny.gguf", **mod.SHAPES_TINY, scale=0.2, tokenizer_from=path)


LONG = "The quick brown fox jumps over the lazy dog, and then the cat runs far away into the night. " * 3
OTHER = "A slow green turtle walks under a busy bridge while the river keeps on singing its old song. " * 3


def test_the_file_is_a_sliding_window_model(gemma3):
    import gguf

    fields = gguf.GGUFReader(str(gemma3)).fields
    assert fields["general.architecture"].contents() == "gemma3"
    assert fields["gemma3.attention.sliding_window"].contents() == 16


def test_rows_that_share_a_prefix_past_the_window_decode_as_from_a_fresh_context(gemma3):
    params = GenerationParams(max_new_tokens=8)
    cuts = [len(LONG) // 2, len(LONG) // 3, len(LONG)]
    prompts = [Prompt.chat("Continue the text.").with_prefix(LONG[:c]) for c in cuts]
    shared = get_backend(f"llamacpp/{gemma3}?server=off&isolate=false&n_batch=8", cache=False)
    rendered = [shared.encode(shared.render(p)) for p in prompts]
    assert min(len(r) for r in rendered) > 3 * 16  # every prompt runs past the window
    got = shared.generate(prompts, params)
    assert shared.n_prefill_tokens < 1.3 * max(len(r) for r in rendered)  # the shared prefix ran once
    for p, g in zip(prompts, got, strict=True):  # each alone, in a context of its own
        alone = get_backend(f"llamacpp/{gemma3}?server=off&isolate=false&n_batch=8", cache=False)
        assert alone.generate([p], params)[0].text == g.text
        alone.close()
    # the control: a different text before the same question changes what the model says, so
    # a prefix that came back wrong from the shared context would show
    other = shared.generate([Prompt.chat("Continue the text.").with_prefix(OTHER[: len(LONG)])], params)[0]
    assert other.text != got[-1].text
    scores = shared.score(prompts[:1], [[" dog", " cat"]])[0]
    fresh = get_backend(f"llamacpp/{gemma3}?server=off&isolate=false", cache=False)
    assert scores == pytest.approx(fresh.score(prompts[:1], [[" dog", " cat"]])[0], abs=1e-3)
    shared.close()
    fresh.close()


def test_an_audit_of_every_experiment_runs_on_a_sliding_window_gguf(gemma3, tmp_path):
    config = AuditConfig(model=f"llamacpp/{gemma3}?server=off", n_samples=2, max_new_tokens=48)
    result = audit(config, tmp_path, progress=False, plots=False)
    assert len(result.records) == 2
    for rec in result.records:  # every experiment ran on every sample, on CoTs past the window
        assert set(rec.results) == set(config.experiments)
        assert rec.traces["subject"].n_prompt_tokens + rec.traces["subject"].n_generated_tokens > 3 * 16
    saved = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(saved) == 2
