import json
import os

import pytest

from cotscope import CotscopeError, GenerationParams, Prompt, get_backend
from cotscope.backends.base import cut_at_stop
from cotscope.backends.mock import MockBackend
from cotscope.backends.registry import parse_spec


def test_unknown_model_names_known_forms():
    with pytest.raises(CotscopeError, match=r"unknown model 'nope/x'.*hf/\.\.\..*mock.*openai/\.\.\..*smollm2-135m"):
        get_backend("nope/x")


def test_spec_options():
    assert parse_spec("hf/org/name?dtype=float32&batch_size=4") == ("hf", "org/name", {"dtype": "float32", "batch_size": "4"})
    with pytest.raises(CotscopeError, match="unknown options for mock"):
        get_backend("mock?colour=red", cache=False)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(CotscopeError, match="GGUF file not found"):
        get_backend(f"gguf/{tmp_path / 'x.gguf'}", cache=False)


@pytest.mark.parametrize("spec", ["openai/model", "openai/@http://x", "openai/m@ftp://x"])
def test_openai_spec_errors(spec):
    pytest.importorskip("openai")
    with pytest.raises(CotscopeError, match="openai/<model>@<base-url>"):
        get_backend(spec, cache=False)


def test_mock_rules_file(tmp_path):
    f = tmp_path / "rules.jsonl"
    f.write_text(json.dumps({"match": "apples", "output": "I like apples.\nAnswer: 3"}) + "\n")
    b = get_backend(f"mock/{f}", cache=False)
    out = b.generate([Prompt.chat("How many apples?"), Prompt.chat("Pears 9")], GenerationParams(stop=("Answer:",)))
    assert out[0].text == "I like apples.\n" and out[0].finish_reason == "stop"
    assert out[1].text == "The question mentions 9.\n"  # the default reply, cut at the stop string
    assert b.generate([Prompt.chat("Pears 9", prefix="Answer:")], GenerationParams())[0].text == "Answer: 9"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"match": 1}\n')
    with pytest.raises(CotscopeError, match="bad.jsonl:1: bad mock rule"):
        get_backend(f"mock/{bad}", cache=False)


def test_mock_scores_its_own_answer_highest():
    b = MockBackend()
    [scores] = b.score([Prompt.chat("Pick 7", prefix="Answer:")], [["7", "8"]])
    assert scores[0] > scores[1]


def test_cut_at_stop():
    assert cut_at_stop("abc Answer: 3", ["Answer:"]) == ("abc ", True)
    assert cut_at_stop("abc", ["\n", "x"]) == ("abc", False)


def test_model_caches_greedy_calls_counts_usage_and_never_caches_sampling():
    from cotscope.backends import Completion, Model
    from cotscope.backends.mock import MockBackend

    provider = MockBackend()
    model = Model(provider)
    prompts = [Prompt.chat("What is 2 + 3?"), Prompt.chat("What is 4 + 1?"), Prompt.chat("What is 2 + 3?")]
    greedy = GenerationParams(max_new_tokens=8)
    first = model.generate(prompts, greedy)
    assert provider.n_generated_prompts == 2  # the repeated prompt is asked once
    assert model.generate(prompts[:1], greedy) == first[:1] and provider.n_generated_prompts == 2
    assert model.usage.cache_hits == 2 and model.usage.prompts == 2
    model.generate(prompts, GenerationParams(max_new_tokens=8, temperature=0.7))
    assert provider.n_generated_prompts == 5  # sampled: every prompt, every time
    scores = model.score(prompts[:1], [["5", "6"]])
    assert model.score(prompts[:1], [["5", "6"]]) == scores and model.usage.cache_hits == 3
    cut = Model(MockBackend(respond=lambda p, params: "x"))
    cut.provider.generate = lambda ps, params: [Completion("x " * 8, 0, 8, finish_reason="length") for _ in ps]
    cut.generate([Prompt.chat("q")], greedy)
    assert cut.usage.truncated == 1 and cut.usage.generated_tokens == 8
    assert model.count_tokens("a b c") == 3 and model.spec == provider.spec


def organism_provider():
    """A fresh transformers provider of the faithful organism, outside any `Model` cache, in
    float32 on any device (bfloat16, the default on a GPU, can flip a near-tie between a batch
    and a row alone)."""
    pytest.importorskip("torch")
    b = get_backend("organism/faithful?dtype=float32", cache=False)
    return getattr(b, "provider", b)


def chain_cot_prompts(n_ops=(1, 3, 5), per=2):
    """CoT prompts of chain questions, `per` of each length: their CoTs end at different tokens."""
    from cotscope.systems.prompts import cot_prompt
    from cotscope.tasks import get_task

    prompts = []
    for k in n_ops:
        t = get_task("chain", {"n_ops": str(k)}, limit=per)
        prompts += [cot_prompt(s, t.kind) for s in t.samples]
    return prompts


def test_no_decode_step_is_spent_on_a_row_that_has_ended():
    """Rows of one batch end at different tokens (a stop string): each leaves the batch as it
    ends, so the batch runs as many row-steps as the rows run alone, and says the same."""
    prompts = chain_cot_prompts()
    params = GenerationParams(max_new_tokens=120, stop=("Answer:",))
    batched = organism_provider()
    outs = batched.generate(prompts, params)
    assert len({o.n_generated_tokens for o in outs}) > 2 and all(o.finish_reason == "stop" for o in outs)
    solo = organism_provider()
    alone = [solo.generate([p], params)[0] for p in prompts]
    assert [o.text for o in outs] == [o.text for o in alone]
    assert batched.n_decode_row_steps == solo.n_decode_row_steps
    assert batched.n_decode_row_steps < len(prompts) * max(o.n_generated_tokens for o in outs)


def test_a_sampled_row_draws_the_same_whatever_shares_its_batch():
    """Sampling seeds come from the call's seed and the row's prompt, not from a stream over the
    batch: a row sampled alone says what it says beside others (a resumed run batches
    differently), and N samples of one prompt in one call still differ."""
    prompts = chain_cot_prompts(n_ops=(3,), per=6)
    params = GenerationParams(max_new_tokens=60, temperature=1.0, seed=5)
    b = get_backend("organism/mixed?dtype=float32", cache=False)  # it samples either kind of line
    b = getattr(b, "provider", b)
    together = b.generate(prompts, params)
    alone = [b.generate([p], params)[0].text for p in prompts]
    assert [o.text for o in together] == alone
    reversed_order = b.generate(prompts[::-1], params)
    assert [o.text for o in reversed_order][::-1] == alone
    repeats = b.generate([prompts[0]] * 6, params)
    assert len({o.text for o in repeats}) > 1 and repeats[0].text == alone[0]
    other_seed = GenerationParams(max_new_tokens=60, temperature=1.0, seed=6)
    assert [o.text for o in b.generate(prompts, other_seed)] != alone  # the seed still decides


def test_decode_stream_rows_join_and_leave_and_say_what_they_say_alone():
    """Calls join the running batch between steps, with their own budgets and stop strings,
    and leave as they end: each row's text, token count and finish reason equal a call of
    its own, and no step runs a row that has ended."""
    prompts = chain_cot_prompts()
    long = GenerationParams(max_new_tokens=120, stop=("Answer:",))
    first = [(p, long) for p in prompts[:3]]
    later = [(prompts[3], GenerationParams(max_new_tokens=4, stop=("Answer:",))), (prompts[4], GenerationParams(max_new_tokens=120, stop=("\n",))),
             (prompts[5], long)]
    streamed = organism_provider()
    stream = streamed.open_stream()
    a = stream.add([p for p, _ in first], [q for _, q in first])
    done = dict(stream.step() + stream.step())
    b = stream.add([p for p, _ in later], [q for _, q in later])
    while stream.busy():
        done |= dict(stream.step())
    solo = organism_provider()
    alone = [solo.generate([p], q)[0] for p, q in first + later]
    assert done[a] + done[b] == alone
    assert [o.finish_reason for o in done[b]] == ["length", "stop", "stop"] and done[b][0].n_generated_tokens == 4
    assert streamed.n_decode_row_steps == solo.n_decode_row_steps
    assert stream.cache is None and not stream.rows  # nothing left running


def test_a_short_call_is_admitted_before_long_ones_queued_earlier():
    """The stream admits queued rows shortest budget first, so an answer forced after a text that
    has just ended runs while its KV is still held: with room for one row, a short call queued
    after a long one ends first."""
    provider = organism_provider()
    provider.batch_size = 1
    prompts = chain_cot_prompts((3,), per=3)
    long, short = GenerationParams(max_new_tokens=120, stop=("Answer:",)), GenerationParams(max_new_tokens=4)
    stream = provider.open_stream()
    stream.add([prompts[0]], [long])
    done = dict(stream.step())
    b = stream.add([prompts[1]], [long])
    c = stream.add([prompts[2]], [short])
    order = []
    while stream.busy():
        order += [t for t, _ in stream.step()]
    assert order.index(c) < order.index(b)
    assert not done


def test_rows_with_different_budgets_and_stops_share_a_batch():
    provider = organism_provider()
    prompts = chain_cot_prompts((3,), per=3)
    params = [GenerationParams(max_new_tokens=3), GenerationParams(max_new_tokens=60, stop=("\n",)), GenerationParams(max_new_tokens=60, stop=("Answer:",))]
    together = provider.generate_each(prompts, params)
    assert together == [provider.generate([p], q)[0] for p, q in zip(prompts, params)]
    assert together[0].n_generated_tokens == 3 and together[0].finish_reason == "length"


def scored_after_storing(provider, first, later, cands):
    """Score `first`, then `later`, on a fresh backend over `provider`'s model (its KV store
    filled by `first`), and `later` on another with an empty store: (the storing backend, its
    scores of `later`, the prompt tokens it ran for them, the other's scores, its tokens)."""
    from cotscope.backends.hf import HFBackend

    stored = HFBackend(provider.model, provider.tok)
    stored.score(first, cands)
    before = stored.n_prefill_tokens
    got = stored.score(later, cands)
    fresh = HFBackend(provider.model, provider.tok)
    want = fresh.score(later, cands)
    return stored, got, stored.n_prefill_tokens - before, want, fresh.n_prefill_tokens


def test_a_conversations_prompt_prefix_is_run_once_across_calls():
    """A later call of the same conversation runs only the tokens past the prefix an earlier
    call ran (kept in the backend's KV store), with the numbers of a backend that runs it all."""
    provider = organism_provider()
    from cotscope.backends.hf import HFBackend

    [base] = chain_cot_prompts((4,), per=1)
    [cot] = provider.generate([base], GenerationParams(max_new_tokens=120, stop=("Answer:",)))
    lines = [x for x in cot.text.split("\n") if x.strip()]
    assert len(lines) >= 3
    first = [base.with_prefix("\n".join(lines[:k]) + "\n") for k in (1, len(lines))]
    later = [base.with_prefix("\n".join(lines[:k]) + "\nAnswer:") for k in (2, len(lines) - 1)]
    cands = [[" 1", " 12", " 7"]] * 2

    stored, got, ran, want, fresh_ran = scored_after_storing(provider, first, later, cands)
    assert ran < 0.5 * fresh_ran  # the shared part was not run again
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=2e-3)
    params = GenerationParams(max_new_tokens=30, stop=("Answer:",))
    assert stored.generate(later, params) == HFBackend(provider.model, provider.tok, prefix_cache=False).generate(later, params)


def test_another_conversation_with_the_same_leading_tokens_reuses_their_kv():
    """Two conversations that open with the same long instruction (as a rewriter's prompts
    do): the second runs only the tokens after the shared ones, with the numbers of a
    backend that runs it all."""
    provider = organism_provider()
    instruction = "Rewrite the reasoning below in other words, keeping every number and step. " * 4
    a = [Prompt.chat(instruction + "Tom has 3 apples and buys 4.", prefix="Answer:")]
    b = [Prompt.chat(instruction + "Ann has 9 pears and eats 2.", prefix="Answer:")]
    cands = [[" 7", " 5"]]
    _, got, ran, want, fresh_ran = scored_after_storing(provider, a, b, cands)
    assert ran < 0.5 * fresh_ran
    assert got[0] == pytest.approx(want[0], abs=2e-3)


def test_a_cache_layer_writes_each_decode_step_in_place_and_holds_what_concatenation_would():
    """The decode cache's layer keeps a buffer with room for coming tokens: a step writes one
    column there (no copy of the whole KV), rows can be selected and leading columns cropped,
    and at every point the keys and values are exactly what concatenating every update gives."""
    torch = pytest.importorskip("torch")
    from cotscope.engine.cache import GROW_TOKENS, grow_layer

    layer = grow_layer()()
    k, v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    want_k, want_v = k.clone(), v.clone()
    layer.update(k, v)
    buffer = layer.buf[0].data_ptr()
    for step in range(GROW_TOKENS + 3):
        nk, nv = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
        keys, values = layer.update(nk, nv)
        want_k, want_v = torch.cat([want_k, nk], dim=-2), torch.cat([want_v, nv], dim=-2)
        assert torch.equal(keys, want_k) and torch.equal(values, want_v)
        if step < GROW_TOKENS:  # within the room it was given, the buffer is the same memory
            assert layer.buf[0].data_ptr() == buffer
    assert layer.buf[0].data_ptr() != buffer  # then it grew once
    sel = torch.tensor([2, 0])
    layer.batch_select_indices(sel)
    want_k, want_v = want_k[sel], want_v[sel]
    assert torch.equal(layer.keys, want_k)
    layer.keys, layer.values = layer.keys[:, :, 7:], layer.values[:, :, 7:]  # the stream crops columns every row pads
    nk, nv = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)
    keys, values = layer.update(nk, nv)
    assert torch.equal(keys, torch.cat([want_k[:, :, 7:], nk], dim=-2)) and torch.equal(values, torch.cat([want_v[:, :, 7:], nv], dim=-2))


def test_rows_leaving_the_cache_are_replaced_from_the_end_in_place_and_joins_copy_once():
    """When rows finish, the stream fills their slots with rows from the end: only those rows
    move, within the same buffer. Any other selection still gives the rows asked for. A join
    of layers gives each part right-aligned with zeros on its left."""
    torch = pytest.importorskip("torch")
    from cotscope.engine.cache import grow_layer
    from cotscope.engine.rows import fill_from_end

    assert fill_from_end([0, 2, 3, 5]) == [0, 5, 2, 3]
    assert fill_from_end([1, 2]) == [2, 1]  # slot 0 from the end; 1 stays
    assert fill_from_end([0, 1, 2]) == [0, 1, 2]
    for keep in ([0, 2, 3, 5], [4, 5], [1, 3, 4], [5, 0, 2]):  # the last is not an in-place order
        layer = grow_layer()()
        k, v = torch.randn(6, 2, 5, 4), torch.randn(6, 2, 5, 4)
        layer.update(k, v)
        buffer = layer.buf[0].data_ptr()
        order = fill_from_end(keep) if keep == sorted(keep) else keep
        layer.batch_select_indices(torch.tensor(order))
        assert torch.equal(layer.keys, k[order]) and torch.equal(layer.values, v[order])
        assert (layer.buf[0].data_ptr() == buffer) == (keep == sorted(keep))
        nk, nv = torch.randn(len(order), 2, 1, 4), torch.randn(len(order), 2, 1, 4)
        keys, values = layer.update(nk, nv)  # the next step writes in the same buffer
        assert torch.equal(keys, torch.cat([k[order], nk], dim=-2)) and torch.equal(values, torch.cat([v[order], nv], dim=-2))
    a, b = grow_layer()(), grow_layer()()
    ka, kb = torch.randn(2, 2, 3, 4), torch.randn(1, 2, 6, 4)
    a.update(ka, ka + 1)
    b.update(kb, kb + 1)
    joined = grow_layer().joined([a, b], 6)
    want = torch.cat([torch.cat([torch.zeros(2, 2, 3, 4), ka], dim=-2), kb])
    assert torch.equal(joined.keys, want) and torch.equal(joined.values[:2, :, 3:], ka + 1)
    assert a.keys is None and b.buf is None  # the parts were freed
    keys, _ = joined.update(torch.ones(3, 2, 1, 4), torch.ones(3, 2, 1, 4))
    assert torch.equal(keys[:, :, :6], want) and keys.shape == (3, 2, 7, 4)


def test_a_running_batchs_buffer_takes_joining_rows_and_crops_in_place():
    """A running batch's buffer keeps room for more rows: rows that join are written into it
    (its own rows moved right when the newcomers are wider), leading padding is cropped by
    moving the rest left, and neither allocates; a join past its rows gets a new buffer. The
    keys always equal the parts right-aligned with zeros on their left."""
    torch = pytest.importorskip("torch")
    from cotscope.engine.cache import GROW_TOKENS, grow_layer

    grow = grow_layer()

    def part(k):
        layer = grow()
        layer.update(k, k + 1)
        return layer

    def aligned(ks, width):
        return torch.cat([torch.cat([torch.zeros(k.shape[0], 2, width - k.shape[2], 4), k], dim=-2) for k in ks])

    ka, kb, kc = torch.randn(2, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 2, 4)
    batch = grow.joined([part(ka[:1]), part(ka[1:])], 3, rows=4)  # two rows do not fit in the first's one
    assert batch.running and batch.buf[0].shape[0] == 4 and batch.buf[0].shape[-2] == 3 + GROW_TOKENS
    buffer = batch.buf[0].data_ptr()
    joined = grow.joined([batch, part(kb), part(kc)], 5)  # wider than the batch: its rows move right
    assert joined is batch and batch.buf[0].data_ptr() == buffer
    want = aligned([ka, kb, kc], 5)
    assert torch.equal(batch.keys, want) and torch.equal(batch.values, aligned([ka + 1, kb + 1, kc + 1], 5))
    batch.crop_left(2)
    assert batch.buf[0].data_ptr() == buffer and torch.equal(batch.keys, want[:, :, 2:])
    nk = torch.randn(4, 2, 1, 4)
    keys, _ = batch.update(nk, nk)
    assert batch.buf[0].data_ptr() == buffer and torch.equal(keys, torch.cat([want[:, :, 2:], nk], dim=-2))
    more = grow.joined([batch, part(kb)], 5)  # five rows do not fit in four
    assert more.buf[0].data_ptr() != buffer and torch.equal(more.keys, aligned([torch.cat([want[:, :, 2:], nk], dim=-2), kb], 5))


def test_rows_join_a_running_batch_in_its_buffer_and_say_what_they_say_alone():
    """Waves of calls join a running batch: once its buffer has room for them they are written
    into it (no new buffer), and every row says what it says alone."""
    prompts = chain_cot_prompts((3,), per=6)
    params = GenerationParams(max_new_tokens=40)
    provider = organism_provider()
    stream = provider.open_stream()
    tickets = [stream.add(prompts[:2], [params] * 2)]
    done = dict(stream.step() + stream.step())
    tickets.append(stream.add(prompts[2:4], [params] * 2))
    done |= dict(stream.step())
    buffer = stream.cache.layers[0].buf[0].data_ptr()
    assert stream.cache.layers[0].buf[0].shape[0] >= 6  # room for the next wave
    tickets.append(stream.add(prompts[4:], [params] * 2))
    done |= dict(stream.step())
    assert len(stream.rows) == 6 and stream.cache.layers[0].buf[0].data_ptr() == buffer
    while stream.busy():
        done |= dict(stream.step())
    solo = organism_provider()
    assert [o for t in tickets for o in done[t]] == [solo.generate([p], params)[0] for p in prompts]


def test_half_precision_on_a_cpu_attends_in_float32_and_the_default_follows_the_cpu(monkeypatch):
    """bfloat16 is the default where the CPU multiplies it natively (float32 elsewhere, where
    torch emulates it), and the provider says which it ran. On a CPU, half-precision weights
    attend in float32 (torch's bfloat16 attention of one new token was 7x slower): the
    logits stay within bfloat16's rounding of plain SDPA's."""
    torch = pytest.importorskip("torch")
    from cotscope.engine import attention

    monkeypatch.setattr(attention, "cpu_has_bfloat16", lambda: False)
    assert attention.default_dtype("cpu") == "float32" and attention.default_dtype("cuda") == "bfloat16"
    monkeypatch.setattr(attention, "cpu_has_bfloat16", lambda: True)
    assert attention.default_dtype("cpu") == "bfloat16"
    b = get_backend("organism/faithful?dtype=bfloat16&device=cpu", cache=False)
    b = getattr(b, "provider", b)
    assert b.precision == "cpu bfloat16" and b.model.config._attn_implementation == attention.cpu_attention()
    assert get_backend("organism/faithful?dtype=float32&device=cpu", cache=False).usage.precision == "cpu float32"
    prompts = chain_cot_prompts(per=1)
    ids = torch.tensor([b.encode(b.render(prompts[-1]))])
    with torch.inference_mode():
        ours = b.model(input_ids=ids).logits.float()
        b.model.set_attn_implementation("sdpa")
        plain = b.model(input_ids=ids).logits.float()
        b.model.set_attn_implementation(attention.cpu_attention())
    assert (ours - plain).abs().max() < 0.1 * plain.abs().max()
    with torch.inference_mode():  # and through the decode path: the first greedy token is plain SDPA's
        first = b.generate([prompts[-1]], GenerationParams(max_new_tokens=1))[0].text
    assert first == b.tok.decode([int(plain[0, -1].argmax())]) or (plain[0, -1].topk(2).values.diff().abs() < 0.1).item()


def test_freed_heap_memory_is_given_back_at_most_once_a_second():
    from cotscope.engine import memory as _memory

    if _memory._trim_fn() is None:
        pytest.skip("no malloc_trim here (not glibc)")
    assert _memory.release_freed_memory(force=True)
    assert not _memory.release_freed_memory()  # within TRIM_EVERY_S of the last
    assert _memory.release_freed_memory(force=True)


def test_prompts_of_similar_length_share_a_batch_within_the_padding_allowed():
    pytest.importorskip("torch")
    from cotscope.engine.rows import similar_lengths

    lengths = [5, 300, 40, 41, 250, 44, 39, 260, 6]
    batches = similar_lengths(lengths, lambda x: x, waste=0.2)
    assert sorted(x for b in batches for x in b) == sorted(lengths)
    assert all(sum(b) >= 0.8 * max(b) * len(b) for b in batches)
    assert len(batches) == 3  # about 5, about 40, about 250-300
    assert similar_lengths(lengths, lambda x: x, waste=1.0) == [sorted(lengths)]


def test_a_converted_gguf_is_keyed_by_its_file_and_dtype(tmp_path, monkeypatch):
    """A GGUF file that changes (size or modification time), moves, or is loaded in another
    dtype is converted again; the same file in the same dtype reuses its folder."""
    import os

    from cotscope.backends import _load, hf

    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"x" * 10)
    key = _load._gguf_folder(f, "float32")
    assert key.parent == tmp_path / "cache" / "gguf" and key.name.startswith("m-")
    assert _load._gguf_folder(f, "float32") == key and _load._gguf_folder(f, "bfloat16") != key
    os.utime(f, ns=(1, 1))
    touched = _load._gguf_folder(f, "float32")
    assert touched != key
    f.write_bytes(b"x" * 11)
    os.utime(f, ns=(1, 1))
    grown = _load._gguf_folder(f, "float32")
    assert grown not in (key, touched)
    g = tmp_path / "other" / "m.gguf"
    g.parent.mkdir()
    f.rename(g)
    os.utime(g, ns=(1, 1))  # the same name, size and time in another folder
    assert _load._gguf_folder(g, "float32") != grown


def test_the_gguf_cache_drops_its_least_recently_used_conversions_past_its_budget(tmp_path):
    """Past the budget the conversions used longest ago go; the one just written stays even when
    it alone is over it, and a folder still being written (hidden) is not touched."""
    import os

    from cotscope.backends import _load, hf

    def folder(name, mib, used):
        p = tmp_path / name
        (p / "sub").mkdir(parents=True)
        (p / "sub" / "model.safetensors").write_bytes(b"\0" * (mib * 2**20))
        os.utime(p, (used, used))
        return p

    old, mid, new, partial = folder("a", 3, 100), folder("b", 3, 200), folder("c", 3, 300), folder(".d-x", 3, 50)
    just = folder("e", 2, 400)
    _load._evict_conversions(tmp_path, keep=just, budget=8 * 2**20)
    assert [p.exists() for p in (old, mid, new, partial, just)] == [False, True, True, True, True]
    _load._evict_conversions(tmp_path, keep=mid, budget=2**20)  # over the budget alone: kept, the rest go
    assert mid.exists() and not new.exists() and not just.exists() and partial.exists()


def test_a_cache_that_cannot_be_written_warns_and_leaves_nothing_half_written(tmp_path):
    import os

    from cotscope.backends import _load, hf

    class Saves:
        def __init__(self, error=None):
            self.error = error

        def save_pretrained(self, folder, **kw):
            (folder / "config.json").write_text("{}")
            if self.error:
                raise self.error

    folder = tmp_path / "gguf" / "m-0"
    with pytest.warns(UserWarning, match="cannot keep the converted GGUF"):
        _load._keep_converted(Saves(ValueError("not serializable")), Saves(), folder)
    assert not folder.exists() and list((tmp_path / "gguf").iterdir()) == []  # the half-written folder is gone
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.warns(UserWarning, match="cannot keep the converted GGUF"):
        _load._keep_converted(Saves(), Saves(), blocked / "gguf" / "m-0")
    stale, fresh = folder.parent / ".m-1-killed", folder.parent / ".m-2-writing"  # one a killed run left; one being written now
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (0, 0))
    _load._keep_converted(Saves(), Saves(), folder)
    assert (folder / "config.json").is_file() and sorted(p.name for p in folder.parent.iterdir()) == [".m-2-writing", "m-0"]


def test_the_kv_store_is_bounded_in_bytes_least_recently_used_out(monkeypatch):
    """The store of prompt-prefix KV keeps at most `kv_store_bytes` (whatever a token's KV
    costs in this model and dtype); the conversation used longest ago leaves first, and one
    entry larger than the budget is still kept (the last call's prefix)."""
    import cotscope.backends.hf as hf

    provider = organism_provider()
    backend = hf.HFBackend(provider.model, provider.tok)
    prompts = [Prompt.chat(f"Question {i}: what is {i} plus {i}?", prefix="Answer:") for i in range(4)]
    backend.score(prompts[:1], [[" 1"]])
    one = next(iter(backend.engine.kv_store.values()))[2]
    kv = next(iter(backend.engine.kv_store.values()))[1]
    assert len({t.untyped_storage().data_ptr() for pair in kv for t in pair}) == 1  # one buffer an entry
    layers = provider.model.config.num_hidden_layers
    assert one > 0 and one % (2 * layers) == 0  # keys and values of every layer
    backend.kv_store_bytes = int(2.5 * one)
    for p in prompts[1:]:
        backend.score([p], [[" 1"]])
    kept = list(backend.engine.kv_store.values())
    assert sum(x[2] for x in kept) <= backend.kv_store_bytes and len(kept) == 2
    assert [x[0] for x in kept] == [backend.row(p).ids[: len(x[0])] for p, x in zip(prompts[2:], kept, strict=True)]
    backend.kv_store_bytes = 1
    backend.score(prompts[:1], [[" 1"]])
    assert len(backend.engine.kv_store) == 1


def test_an_entry_read_by_another_conversation_is_recently_used():
    """A generated CoT's KV that a later prompt reads past a shared template header (a truncation
    of it) counts as used then, whichever conversation wrote it: an entry nobody read leaves the
    store first."""
    import cotscope.backends.hf as hf

    provider = organism_provider()
    backend = hf.HFBackend(provider.model, provider.tok)
    prompts = chain_cot_prompts((4,), per=2)
    params = GenerationParams(max_new_tokens=120, stop=("Answer:",))
    first = backend.generate(prompts[:1], params)[0]
    backend.generate(prompts[1:], params)
    (a_ids, _, a), (b_ids, _, b) = backend.engine.kv_store.values()
    backend.kv_store_bytes = a + b + 1
    backend.score([prompts[0].with_prefix("\n".join(first.text.split("\n")[:3]) + "\nAnswer:")], [[" 1"]])
    held = [x[0] for x in backend.engine.kv_store.values()]
    assert a_ids in held and b_ids not in held


def test_a_forced_answers_prompt_that_copies_a_stored_entry_is_not_stored():
    """A prompt read again at most once (`passing`: a forced answer's) whose tokens a stored entry
    holds all but a few of, and which does not extend that entry (a truncation point of a stored
    trace), leaves no entry of its own: the stored entry serves it. Controls: the same prompt
    not passing is stored; a passing prompt that is mostly new text, or that extends the entry
    (it replaces it), is stored. The logits it starts from are the same either way."""
    import torch

    import cotscope.backends.hf as hf
    from cotscope.engine.rows import FED_SLACK, Row

    provider = organism_provider()
    backend = hf.HFBackend(provider.model, provider.tok)
    engine = backend.engine
    base = Prompt.chat("Question: what is 12 plus 30? Think it through step by step, line by line.", prefix="Answer:")
    backend.score([base], [[" 42"]])
    held = next(iter(engine.kv_store.values()))[0]
    cut = held[: len(held) - 6] + engine.encode(" So")  # all but six of the entry's tokens, then its own

    def start(ids, passing, group):
        [(_, _, _, logits, _)] = engine.start_alone([Row(ids, group, len(ids))], [passing])
        return group in engine.kv_store, logits

    stored_passing, logits_passing = start(cut, True, "cut-passing")
    stored_kept, logits_kept = start(cut, False, "cut-kept")
    assert not stored_passing and stored_kept
    assert torch.allclose(logits_passing.float(), logits_kept.float(), atol=1e-5)
    new_text = cut + engine.encode(" and then some more words" * 8)
    assert len(new_text) - len(cut) > FED_SLACK
    assert start(new_text, True, "new-text")[0]
    assert start(held + engine.encode(" 42"), True, "extends")[0]


def streamed(provider, prompts, params, waves=1):
    """Completions of `prompts` decoded by `provider`'s stream, admitted in `waves` calls, one
    a step (all at its first step by default); the stream is left with nothing running."""
    stream = provider.open_stream()
    size = -(-len(prompts) // waves)
    tickets, done = [], {}
    for s in range(0, len(prompts), size):
        tickets.append(stream.add(prompts[s : s + size], [params] * len(prompts[s : s + size])))
        done |= dict(stream.step())
    while stream.busy():
        done |= dict(stream.step())
    assert stream.cache is None and not stream.rows
    return [o for t in tickets for o in done[t]]


@pytest.mark.parametrize("how", ["stream", "generate", "sampled"])
def test_a_completion_carries_the_log_probability_of_the_tokens_that_wrote_it(how):
    """Every decode path reports what scoring its text again would give (the raw distribution,
    whatever the sampling temperature), over the tokens that wrote the text kept before the stop
    string; so legibility needs no second pass over a CoT."""
    provider = organism_provider()
    prompts = chain_cot_prompts((2, 4), per=2)
    params = GenerationParams(max_new_tokens=120, stop=("Answer:",), temperature=1.0 if how == "sampled" else 0.0, seed=3)
    outs = streamed(provider, prompts, params) if how == "stream" else provider.generate(prompts, params)
    assert all(o.finish_reason == "stop" and "Answer" not in o.text for o in outs)
    again = provider.score(prompts, [[o.text] for o in outs])
    for o, (s,) in zip(outs, again, strict=True):
        assert o.n_logprob_tokens == provider.count_tokens(o.text) > 10
        assert o.logprob == pytest.approx(s, abs=2e-3) and o.logprob < -1


@pytest.mark.parametrize("how", ["stream", "generate"])
def test_a_generated_texts_kv_is_kept_for_the_prompts_that_go_on_from_it(how):
    """A row that ends, in the decode stream or in a batch of `generate` (sampled rows, and the
    backends that rewrite prompts at the template's edge, such as the thinking organisms),
    leaves its KV (prompt and generated tokens) in the store: forcing the answer after the CoT,
    or cutting the CoT short, then runs only the new tokens, with the numbers of a backend that
    runs it all."""
    provider = organism_provider()
    from cotscope.backends.hf import HFBackend

    stored = HFBackend(provider.model, provider.tok)
    prompts = chain_cot_prompts((4,), per=2)
    params = GenerationParams(max_new_tokens=120, stop=("Answer:",))
    cots = streamed(stored, prompts, params) if how == "stream" else stored.generate(prompts, params)
    assert len(stored.engine.kv_store) >= 2
    later = [p.with_prefix(c.text.rstrip() + "\nAnswer:") for p, c in zip(prompts, cots, strict=True)]
    later.append(prompts[0].with_prefix(cots[0].text.split("\n")[0] + "\nAnswer:"))
    cands = [[" 1", " 12", " 7"]] * len(later)
    before = stored.n_prefill_tokens
    got = stored.score(later, cands)
    fresh = HFBackend(provider.model, provider.tok)
    want = fresh.score(later, cands)
    assert stored.n_prefill_tokens - before < 0.3 * fresh.n_prefill_tokens
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=2e-3)
    off = HFBackend(provider.model, provider.tok, prefix_cache=False)
    streamed(off, prompts, GenerationParams(max_new_tokens=120, stop=("Answer:",)))
    assert not off.engine.kv_store


def test_the_points_of_an_edited_cot_share_their_own_prefix_in_a_call_with_the_originals():
    """One call holding the truncation points of a CoT and of an edited copy of it (the same
    conversation, parting after the first line, as a paraphrase does): each CoT's points share
    one pass over that CoT, so the call runs about the two CoTs once each, where sharing only
    with the conversation's longest row ran every prefix of the edited one whole; the numbers
    are those of a backend that runs everything."""
    provider = organism_provider()
    from cotscope.backends.hf import HFBackend

    [base] = chain_cot_prompts((6,), per=1)
    [cot] = provider.generate([base], GenerationParams(max_new_tokens=160, stop=("Answer:",)))
    lines = [x for x in cot.text.split("\n") if x.strip()]
    assert len(lines) >= 5
    edited = [lines[0]] + [f"so {x}" for x in lines[1:]]
    later = [base.with_prefix("\n".join(cot_lines[:k]) + "\nAnswer:") for cot_lines in (lines, edited) for k in range(1, len(lines) + 1)]
    cands = [[" 1", " 12", " 7"]] * len(later)
    stored = HFBackend(provider.model, provider.tok)
    got = stored.score(later, cands)
    longest = [len(stored.row(p).ids) for p in (later[len(lines) - 1], later[-1])]
    assert stored.n_prefill_tokens < sum(longest) + 12 * 3 * len(later)  # each row's own: "\nAnswer:" and a candidate
    plain = HFBackend(provider.model, provider.tok, prefix_cache=False)
    for g, w in zip(got, plain.score(later, cands), strict=True):
        assert g == pytest.approx(w, abs=2e-3)
    assert plain.n_prefill_tokens > 3 * stored.n_prefill_tokens


def test_a_store_entry_that_a_longer_one_holds_whole_leaves_the_store():
    """An entry whose tokens are the first ones of a new entry is dropped: the new one serves it."""
    provider = organism_provider()
    from cotscope.backends.hf import HFBackend

    [base] = chain_cot_prompts((4,), per=1)
    b = HFBackend(provider.model, provider.tok)
    b.score([base], [[" 1"]])
    [short] = [x[0] for x in b.engine.kv_store.values()]
    b.generate([base], GenerationParams(max_new_tokens=20))  # its prompt and what it wrote
    [held] = [x[0] for x in b.engine.kv_store.values()]
    assert len(held) > len(short) and held[: len(short)] == short


def test_rows_alone_in_their_conversation_start_in_one_pass():
    """Prompts of different conversations joining the stream run through the model once (their
    prompt and next-token logits together, not a prefix pass and then a pass of their last
    token), and say what they say alone."""
    provider = organism_provider()
    prompts = chain_cot_prompts((3,), per=3)
    params = GenerationParams(max_new_tokens=1)
    calls = []
    hook = provider.model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        together = streamed(provider, prompts, params)
    finally:
        hook.remove()
    assert len(calls) == 1
    solo = organism_provider()
    assert together == [solo.generate([p], params)[0] for p in prompts]


def test_rows_of_one_conversation_are_batched_by_the_tokens_they_feed():
    """The truncation points of one trace feed a few tokens past the prefix they share; a row
    that feeds many more runs in a pass of its own, not padding the others to its length."""
    pytest.importorskip("torch")
    from cotscope.engine.engine import Engine
    from cotscope.engine.rows import FED_SLACK, Row, similar_lengths

    text = list(range(100, 160))
    rows = [Row(text[:k] + [7, 8], "trace", k + 1) for k in (10, 20, 30, 40, 50)] + [Row(text[:10] + list(range(300, 330)), "trace", 39)]
    fed = Engine.fed_lengths(type("B", (), {"prefix_cache": True})(), rows)
    assert fed == [2, 2, 2, 2, 1, 30]  # the longest row feeds its last token, the one that parts at the 11th its 30
    lengths = [1] * 10 + [2, 3, 27]
    assert similar_lengths(lengths, lambda x: x, 0.2, FED_SLACK) == [[1] * 10 + [2, 3], [27]]
    assert similar_lengths(lengths, lambda x: x, 0.2) == [[1] * 10, [2, 3], [27]]  # without slack: three passes


def test_cotscope_cpu_flags_stands_in_for_the_cpus_flags():
    """`$COTSCOPE_CPU_FLAGS` (bench/audit.py --as-avx2) decides what cotscope takes the CPU to
    compute natively: without bfloat16 flags the CPU default is float32, with one bfloat16."""
    import subprocess
    import sys

    code = "from cotscope.engine.attention import default_dtype; print(default_dtype('cpu'))"
    for flags, dtype in (("avx2 fma", "float32"), ("avx2 avx512_bf16", "bfloat16"), ("", "float32")):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "COTSCOPE_CPU_FLAGS": flags},
                             capture_output=True, text=True, check=True).stdout.split()
        assert out[0] == dtype, (flags, out)


def test_the_default_batch_on_a_cpu_keeps_its_kv_within_a_budget():
    """On a CPU the default batch holds at most CPU_BATCH_KV_MIB of KV at ROW_TOKENS a row: a
    model whose token KV is large (SmolLM2-135M's shape in float32, 46 KB) gets fewer rows than
    32; the same shape in bfloat16 (23 KB), a small model, and any model on a GPU keep 32. A
    batch_size given in the spec is what runs."""
    from types import SimpleNamespace

    import torch

    from cotscope.backends._load import BATCH_SIZE, CPU_BATCH_KV_MIB, ROW_TOKENS, default_batch_size, kv_bytes_per_token

    def fake(dtype, device="cpu", heads=3):
        config = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=heads, hidden_size=576)
        return SimpleNamespace(config=config, dtype=dtype, device=torch.device(device))

    assert kv_bytes_per_token(fake(torch.float32)) == 2 * 30 * 3 * 64 * 4 == 46080
    rows = default_batch_size(fake(torch.float32))
    assert rows < BATCH_SIZE and rows * 46080 * ROW_TOKENS <= CPU_BATCH_KV_MIB * 2**20 < (rows + 1) * 46080 * ROW_TOKENS
    assert default_batch_size(fake(torch.bfloat16)) == BATCH_SIZE
    assert default_batch_size(fake(torch.float32, "meta")) == BATCH_SIZE  # not a CPU
    assert default_batch_size(fake(torch.float32, heads=300)) == 1  # never none
    given = get_backend("organism/faithful?batch_size=5", cache=False)
    assert getattr(given.provider, "inner", given.provider).batch_size == 5
