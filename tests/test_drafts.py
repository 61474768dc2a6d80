"""Drafts in the decode stream (`backends._draft`, `_DecodeStream._check`): the stream keeps a
draft only up to the first token greedy decoding would not choose, so its text is that of a
row alone, whether the drafts are right, wrong, or absent."""

import pytest

from cotscope import GenerationParams
from cotscope.engine.draft import CORPUS_GRAMS, Drafter, RowIndex
from .test_backends import chain_cot_prompts, organism_provider, streamed


def test_a_draft_follows_the_latest_occurrence_of_the_last_tokens():
    d = Drafter(3)
    seq = [1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8, 1, 2, 3]
    assert d.propose(seq, RowIndex(), 9) == [7, 8, 1]  # the latest earlier 1 2 3 was followed by 7 8 1
    assert d.propose(seq, RowIndex(), 2) == [7, 8]  # room (the row's budget) bounds it
    assert d.propose([5, 6], RowIndex(), 3) == [] and d.propose([4], RowIndex(), 3) == []
    d.learn([40, 41, 42, 43, 44])
    assert d.propose([0, 40, 41, 42], RowIndex(), 5) == [43, 44]  # from a finished row's text
    assert d.propose([0, 5, 6, 0, 5], RowIndex(), 5) == [6, 0, 5]  # two tokens, in the row's own text
    index = RowIndex()  # indexed as the row grows, the same drafts
    grown = [1, 2, 3, 4, 5, 9, 1, 2]
    d.propose(grown, index, 3)
    assert d.propose(grown + [3], index, 3) == [4, 5, 9]


def test_the_corpus_of_finished_texts_is_bounded():
    d = Drafter(2)
    for start in range(0, 4 * CORPUS_GRAMS, 1000):
        d.learn(list(range(start, start + 1000)))
    assert len(d.corpus) <= CORPUS_GRAMS
    last = 4 * CORPUS_GRAMS - 1000
    assert d.propose([last, last + 1, last + 2], RowIndex(), 2) == [last + 3, last + 4]  # the latest text stays


@pytest.mark.slow
def test_drafts_are_checked_and_the_stream_says_what_rows_say_alone():
    """Rows that join in waves, with drafts from their own text and from rows that ended: some
    drafts are kept, some are not, and every row's completion equals a call of its own and
    the stream's without drafts."""
    prompts = chain_cot_prompts((3, 5), per=4)
    params = GenerationParams(max_new_tokens=80, stop=("Answer:",))
    provider = organism_provider()
    outs = streamed(provider, prompts, params, waves=3)
    assert 0 < provider.n_draft_kept < provider.n_draft_tokens
    plain = organism_provider()
    plain.drafter = None
    assert streamed(plain, prompts, params, waves=3) == outs and plain.n_draft_tokens == 0
    solo = organism_provider()
    assert outs == [solo.generate([p], params)[0] for p in prompts]
    assert provider.n_decode_row_steps == solo.n_decode_row_steps  # one per token kept, none for a row that ended


def test_wrong_drafts_leave_unused_columns_that_are_packed_away(monkeypatch):
    """A drafter that is always wrong: every step masks the draft's columns, the columns a row
    does not use are packed once they pass the slack, and the text is still a row's own."""
    from cotscope.engine import stream as _stream

    class Wrong(Drafter):
        def propose(self, seq, index, room):
            return [(seq[-1] + 1) % 50 + 1] * min(self.k, room)  # never what the organism writes next

    prompts = chain_cot_prompts((5,), per=3)
    params = GenerationParams(max_new_tokens=100)
    provider = organism_provider()
    provider.engine.drafter = Wrong(4)
    widths = []
    check = _stream.DecodeStream._check

    def watched(self):
        check(self)
        widths.append(self.mask.shape[1] - int(self.mask.sum(dim=1).max()))

    monkeypatch.setattr(_stream.DecodeStream, "_check", watched)
    outs = streamed(provider, prompts, params)
    assert provider.n_draft_tokens > 100 and provider.n_draft_kept < provider.n_draft_tokens / 10
    assert max(widths) > _stream.HOLE_SLACK // 2 and max(widths) <= _stream.HOLE_SLACK + 5  # packed once past the slack
    solo = organism_provider()
    assert outs == [solo.generate([p], params)[0] for p in prompts]


def test_a_cpu_checks_a_draft_with_grouped_queries_as_sdpa_does():
    """Queries of a few tokens a row over a KV with grouped heads and unused columns (padding,
    drafts not kept): the packed attention gives plain SDPA's logits."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from cotscope.engine import attention, rows

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=6, num_key_value_heads=2, head_dim=16)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, :4] = 0  # left padding
    mask[1, 6:8] = 0  # columns of a draft not kept
    new = torch.randint(0, 64, (3, 4))
    new_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    full = torch.cat([mask, new_mask], dim=1)
    pos = rows.positions(full)
    logits = {}
    for impl in ("sdpa", attention.cpu_attention()):
        model.set_attn_implementation(impl)
        with torch.inference_mode():
            past = model(input_ids=ids, attention_mask=mask, position_ids=rows.positions(mask), use_cache=True).cache
            logits[impl] = model(input_ids=new, attention_mask=full, position_ids=pos[:, 12:], cache=past, use_cache=True).logits
    plain, packed = logits.values()
    for r, n in enumerate(new_mask.sum(dim=1).tolist()):
        torch.testing.assert_close(packed[r, :n], plain[r, :n], rtol=1e-5, atol=1e-5)


def test_rows_that_go_on_from_stored_text_join_the_next_check_without_a_prompt_pass():
    """A prompt that goes on from a finished row's text with a few tokens more (the answer
    forced after a CoT) joins the running batch on the stored KV: its last prompt tokens run in
    the next check beside the running rows' tokens, not in a prompt pass of their own. Its text
    equals a call of its own, and the steps it joins run one forward each."""
    from cotscope.engine.stream import JOIN_TOKENS

    prompts = chain_cot_prompts(n_ops=(1, 5), per=2)
    short, long = GenerationParams(max_new_tokens=24, stop=("\n",)), GenerationParams(max_new_tokens=120, stop=("Answer:",))
    provider = organism_provider()
    stream = provider.open_stream()
    first = stream.add(prompts[:2], [short] * 2)
    running = stream.add(prompts[2:], [long] * 2)
    done = {}
    while first not in done:
        done |= dict(stream.step())
    follow = [p.with_prefix(o.text + "\nAn") for p, o in zip(prompts[:2], done[first], strict=True)]
    fed = [len(provider.encode(provider.render(f))) - len(provider.encode(provider.render(p))) - o.n_generated_tokens + 1
           for f, p, o in zip(follow, prompts[:2], done[first], strict=True)]
    assert all(1 < n <= JOIN_TOKENS for n in fed)  # the stored KV holds all but a few tokens
    forwards, steps, model = [0], 0, provider.model
    forward = model.forward

    def counted(*args, **kwargs):
        forwards[0] += 1
        return forward(*args, **kwargs)

    model.forward = counted
    try:
        answers = stream.add(follow, [short] * 2)
        while answers not in done:
            done |= dict(stream.step())
            steps += 1
    finally:
        del model.forward
    assert stream.rows and forwards[0] == steps  # the running rows were still running: one forward a step
    while stream.busy():
        done |= dict(stream.step())
    solo = organism_provider()
    assert done[answers] == [solo.generate([p], short)[0] for p in follow]
    assert done[running] == [solo.generate([p], long)[0] for p in prompts[2:]]
