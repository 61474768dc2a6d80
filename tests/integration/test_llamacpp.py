"""The in-process llama.cpp provider against transformers on the same GGUF (the embedded
SmolLM2): the same greedy text, the same scores up to quantization, and a truncation sweep
that evaluates each shared prefix once."""

import pytest

from cotscope import CotscopeError
from cotscope.backends import GenerationParams, Prompt, check_backend, get_backend

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def path():
    from cotscope.backends.hf import smollm2_path

    try:
        return smollm2_path()
    except CotscopeError as exc:
        pytest.skip(str(exc))


PROMPTS = [Prompt.chat("What is 2+3? Think step by step."), Prompt.chat("Name a colour.")]


def test_same_greedy_text_and_scores_as_transformers(path):
    # The reference is the float32 de-quantized copy (bfloat16, the default on a CPU with
    # bfloat16 arithmetic, rounds differently and drifts from llama.cpp's text sooner).
    cpp, hf = get_backend(f"llamacpp/{path}", cache=False), get_backend(f"gguf/{path}?dtype=float32")
    params = GenerationParams(max_new_tokens=32)
    a, b = cpp.generate(PROMPTS, params), hf.generate(PROMPTS, params)
    for x, y in zip(a, b):
        assert x.n_prompt_tokens == y.n_prompt_tokens  # the same chat template and tokens
        assert x.text[:10] == y.text[:10]
    # Greedy decoding agrees token for token until two candidates are nearly tied; llama.cpp's
    # quantized dot products then may pick the other one ("The colour is" / "The colour I'm").
    assert a[0].text == b[0].text
    conts = [["A", "B", " The answer is"]] * 2
    sa, sb = cpp.score(PROMPTS, conts), hf.score(PROMPTS, conts)
    for ra, rb in zip(sa, sb):
        assert max(abs(u - v) for u, v in zip(ra, rb)) < 0.5  # Q4_1 arithmetic vs the fp32 dequantized copy
        assert ra.index(max(ra)) == rb.index(max(rb))


def test_a_truncation_sweep_evaluates_each_shared_prefix_once(path):
    cpp = get_backend(f"llamacpp/{path}", cache=False)
    steps = ["First, 2 + 3 = 5.", "Then 5 * 2 = 10.", "Then 10 - 1 = 9.", "So the answer is 9."]
    prompts = [Prompt.chat("Compute (2+3)*2-1.").with_prefix("\n".join(steps[:k]) + "\nAnswer:") for k in range(len(steps) + 1)]
    provider = cpp.provider if hasattr(cpp, "provider") else cpp
    before = provider.n_prefill_tokens
    cpp.generate(prompts, GenerationParams(max_new_tokens=3))
    evaluated = provider.n_prefill_tokens - before
    longest = provider.count_tokens(provider.render(prompts[-1]))
    assert evaluated < 1.6 * longest  # one pass over the longest prompt, plus each prompt's new tail


def test_bad_llamacpp_specs_fail_before_loading(tmp_path):
    (tmp_path / "m.bin").write_text("x")
    for spec, msg in (("llamacpp/", "give the path"), (f"llamacpp/{tmp_path}/none.gguf", "no such file"),
                      (f"llamacpp/{tmp_path}/m.bin", "not a .gguf"), ("llamacpp/{p}?n_ctx=big", "whole number"),
                      ("llamacpp/{p}?colour=red", "unknown options")):
        with pytest.raises(CotscopeError, match=msg):
            from cotscope.backends.hf import smollm2_path

            check_backend(spec.replace("{p}", smollm2_path()))


def test_an_audit_runs_on_llamacpp(path, tmp_path):
    from cotscope import audit

    r = audit(model=f"llamacpp/{path}", n_samples=2, experiments=("truncate",), run_dir=tmp_path / "a", progress=False, plots=False)
    assert r.summary.metrics["accuracy/subject"].n == 2
