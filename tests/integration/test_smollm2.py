"""The embedded SmolLM2-135M GGUF through transformers: real weights, small budgets."""

import math

import pytest

from cotscope import AuditConfig, GenerationParams, Prompt, audit, get_backend

pytestmark = pytest.mark.integration
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def backend():
    """The embedded model in float32: its paths (batched or alone, a shared prefix's KV or the
    plain pass) compute the same numbers to 1e-3 there; bfloat16, the default on a CPU with
    bfloat16 arithmetic, rounds each path differently (0.13 nats apart on one score here)."""
    return get_backend("smollm2-135m?dtype=float32")


def test_batched_generation_equals_one_by_one(backend):
    prompts = [Prompt.chat("What is 2 + 3?"), Prompt.chat("Name a colour. Be brief, one word please.", prefix="Sure:")]
    params = GenerationParams(max_new_tokens=12)
    together = backend.generate(prompts, params)
    alone = [backend.generate([p], params)[0] for p in prompts]
    assert [c.text for c in together] == [c.text for c in alone]
    assert all(c.n_generated_tokens > 0 for c in together)
    assert together[0].n_prompt_tokens == backend.count_tokens(backend.render(prompts[0]))


def test_score_matches_a_plain_forward_pass(backend):
    import torch

    prompt = Prompt.chat("What is the capital of France?", prefix="The capital of France is")
    [scores] = backend.score([prompt], [[" Paris", " banana"]])
    assert scores[0] > scores[1]
    ids = backend.encode(backend.render(prompt) + " Paris")
    n = len(ids) - len(backend.encode(backend.render(prompt)))
    with torch.inference_mode():
        logp = torch.log_softmax(backend.model(torch.tensor([ids])).logits[0].float(), -1)
    reference = sum(logp[i - 1, ids[i]].item() for i in range(len(ids) - n, len(ids)))
    assert scores[0] == pytest.approx(reference, abs=1e-3)


@pytest.mark.slow
def test_tiny_audit_end_to_end(tmp_path):
    cfg = AuditConfig(n_samples=2, continue_max_new_tokens=12, experiments=("truncate", "filler", "legibility"))
    result = audit(cfg, tmp_path, progress=False)
    t = result.summary.experiments["truncate"]
    assert result.summary.n_samples == 2
    cut = sum(r.traces["subject"].cut for r in result.records)
    assert result.summary.n_cut["subject"] == cut and t.n_samples == 2 - cut  # cut CoTs are counted, not measured
    for rec in result.records:
        steps = rec.traces["subject"].steps
        original = rec.results["truncate"]
        assert [p.k for p in original] == list(range(len(steps) + 1))
        assert original[-1].forced.answer == rec.traces["subject"].answer  # same cue, greedy
    assert t.curve[-1].values["agreement"].value == 1.0
    assert (tmp_path / "truncate.png").stat().st_size > 10_000


@pytest.mark.slow
def test_multiple_choice_forced_by_log_probability(tmp_path):
    cfg = AuditConfig(task_args={"choices": "4"}, n_samples=1, max_new_tokens=32, continue_max_new_tokens=8)
    rec = audit(cfg, tmp_path, progress=False, plots=False).records[0]
    for p in [p for src in ("truncate", "summary", "paraphrase") for p in rec.results[src]]:  # every source, every k
        probs = p.forced.choice_logprobs
        assert set(probs) == set("ABCD")
        assert sum(math.exp(v) for v in probs.values()) == pytest.approx(1.0)
        assert p.forced.answer == max(probs, key=probs.get)


def test_hf_backend_loads_a_local_directory(tmp_path, backend):
    """hf/<path> loads what save_pretrained wrote: a tiny random Llama with SmolLM2's tokenizer."""
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=len(backend.tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=backend.tok.bos_token_id, eos_token_id=backend.tok.eos_token_id,
    )
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    backend.tok.save_pretrained(tmp_path)
    tiny = get_backend(f"hf/{tmp_path}?batch_size=2", cache=False)
    assert tiny.model.config.num_hidden_layers == 2 and tiny.batch_size == 2
    out = tiny.generate([Prompt.chat("hi")], GenerationParams(max_new_tokens=5))
    assert out[0].n_generated_tokens <= 5
    assert len(tiny.score([Prompt.chat("hi")], [["a", "b"]])[0]) == 2


@pytest.mark.slow
def test_prefix_cache_equals_the_plain_path(backend):
    """The shared-prefix KV path gives the plain path's numbers: the truncation points of one
    trace, and two questions in one batch."""
    from cotscope.backends.hf import HFBackend

    plain = HFBackend(backend.model, backend.tok, batch_size=backend.batch_size, prefix_cache=False)
    steps = ["Tom has 12 apples.", "He buys 5 more, so 12 + 5 = 17.", "He gives away 3, so 17 - 3 = 14."]
    base = [Prompt.chat("Tom has 12 apples, buys 5 and gives away 3. How many?"), Prompt.chat("What is 2 + 2?")]
    prompts = [base[0].with_prefix("\n".join(steps[:k]) + ("\n" if k else "") + "Answer:") for k in range(4)]
    prompts += [base[1].with_prefix("Let me think.\nAnswer:"), base[1].with_prefix("Answer:")]
    cands = [[" 14", " 17", " 12"]] * len(prompts)
    fast_before = backend.n_prefill_tokens
    fast = backend.score(prompts, cands)
    fast_tokens = backend.n_prefill_tokens - fast_before
    slow = plain.score(prompts, cands)
    for f_row, s_row in zip(fast, slow, strict=True):
        assert f_row == pytest.approx(s_row, abs=2e-3)
    assert fast_tokens < 0.6 * plain.n_prefill_tokens
    params = GenerationParams(max_new_tokens=10)
    assert [c.text for c in backend.generate(prompts, params)] == [c.text for c in plain.generate(prompts, params)]


@pytest.mark.slow
def test_a_gguf_is_converted_once_and_read_back_the_same(tmp_path, monkeypatch):
    """The first load keeps the de-quantized model as a transformers folder; the second reads
    that folder and has the same weights, tokenizer, chat template and greedy text."""
    import torch

    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path))
    first = get_backend("smollm2-135m?dtype=float32", cache=False)
    (folder,) = (tmp_path / "gguf").iterdir()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert first.model.name_or_path != str(folder)
    second = get_backend("smollm2-135m?dtype=float32", cache=False)
    assert second.model.name_or_path == str(folder)  # read from the folder, not the GGUF
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    prompt = Prompt.chat("What is 17 + 25? Think step by step.", system="Be brief.")
    assert first.render(prompt) == second.render(prompt)
    text = "Héllo wörld 123 <|im_end|> 🙂"
    assert first.encode(text) == second.encode(text) and first.tok.pad_token == second.tok.pad_token
    params = GenerationParams(max_new_tokens=24)
    assert first.generate([prompt], params)[0].text == second.generate([prompt], params)[0].text
    uncached = get_backend("smollm2-135m?dtype=float32&gguf_cache=false", cache=False)
    assert uncached.model.name_or_path != str(folder) and len(list((tmp_path / "gguf").iterdir())) == 1


@pytest.mark.slow
def test_a_damaged_converted_copy_is_read_again_from_the_gguf(tmp_path, monkeypatch):
    """A kept conversion whose weights file is damaged gives a warning, the GGUF is read again,
    and a sound copy replaces the damaged one."""
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path))
    get_backend("smollm2-135m?dtype=float32", cache=False)
    (folder,) = (tmp_path / "gguf").iterdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short, as by a full disk
    with pytest.warns(UserWarning, match="could not be read.*reading the GGUF file again"):
        again = get_backend("smollm2-135m?dtype=float32", cache=False)
    assert again.model.name_or_path != str(folder)  # from the GGUF
    assert weights.stat().st_size > 100_000_000  # a sound copy again
    assert get_backend("smollm2-135m?dtype=float32", cache=False).model.name_or_path == str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mistral", "gemma2"])
def test_a_sliding_window_model_audits_and_decodes_as_transformers_generate(tmp_path, backend, arch):
    """A model whose layers keep a window of 8 tokens, shorter than every prompt (Mistral: all
    layers; Gemma 2: every other layer): an audit through hf/ runs, and batched greedy text of
    prompts of different lengths equals transformers' own `generate` on each alone."""
    import torch
    import transformers

    from cotscope.backends.hf import WindowedHFBackend

    torch.manual_seed(0)
    tok = backend.tok
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if arch == "mistral":
        model = transformers.MistralForCausalLM(transformers.MistralConfig(sliding_window=8, **common))
    else:
        model = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(sliding_window=8, head_dim=8, **common))
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    tiny = get_backend(f"hf/{tmp_path / 'model'}?batch_size=4", cache=False).provider
    assert isinstance(tiny, WindowedHFBackend)

    result = audit(AuditConfig(model=f"hf/{tmp_path / 'model'}", n_samples=2, max_new_tokens=24, continue_max_new_tokens=8),
                   tmp_path / "run", progress=False, plots=False)
    assert len(result.records) == 2 and all(r.traces["subject"].n_generated_tokens > 0 for r in result.records)
    assert all(r.results.get("truncate") for r in result.records)

    prompts = [Prompt.chat("What is 2 + 3?"), Prompt.chat("Tom has 12 apples and buys 5 more. How many now?", prefix="Step 1:"),
               Prompt.chat("Name a colour.")]
    params = GenerationParams(max_new_tokens=16)
    ours = tiny.generate(prompts, params)
    for prompt, got in zip(prompts, ours, strict=True):
        ids = torch.tensor([tiny.encode(tiny.render(prompt))])
        assert ids.shape[1] > 8
        with torch.inference_mode():
            ref = tiny.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                                      pad_token_id=tok.pad_token_id)
        assert got.text == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
