"""The answer forced after a continuation, decoded in the continuation's own row of the decode
stream (`GenerationParams.then`, `engine.stream.DecodeStream`): the same text as the answer asked
as a call of its own, on the stream's direct path, through the organisms' template edges, and on
whole audits; and the continuation's KV no longer goes to the store."""

from dataclasses import replace

import pytest

from cotscope import AuditConfig, GenerationParams, audit
from cotscope.backends.base import Then
from .test_backends import chain_cot_prompts, organism_provider


ANSWER = GenerationParams(max_new_tokens=12, stop=("\n",), keep=False)
COT = GenerationParams(max_new_tokens=120, stop=("Answer:",))


def _run(stream, prompts, params):
    ticket, done = stream.add(prompts, params), {}
    while ticket not in done:
        done |= dict(stream.step())
    while stream.busy():
        stream.step()
    return done[ticket]


def _asking(prompt, tail):
    """A `Then` whose answer prompt is the CoT written, cut, then `tail` (what `System` asks
    after a continuation: its text, a line break and the answer cue). Plumbing: it writes the
    prompt; what the tests hold the answer to is the model's own decode of that prompt alone."""
    return Then(lambda done: (prompt.with_prefix(prompt.prefix + done.text.rstrip() + tail), ANSWER, lambda c: c))


def test_an_answer_in_the_row_says_what_a_call_of_its_own_says():
    """Positive control of the path: the answers run in their rows (the counter moves), each says
    what the same answer prompt says alone, and no continuation's KV reaches the store. Where the
    answer's prompt shares too little with the row (a long insertion), it is queued as a row of its
    own: the same text again, and the counter does not move."""
    provider = organism_provider()
    prompts = chain_cot_prompts(n_ops=(1, 3, 5), per=2)
    stream = provider.open_stream()
    near = [replace(COT, then=_asking(p, "\nAnswer:")) for p in prompts]
    outs = _run(stream, prompts, near)
    assert provider.n_answers_in_row == len(prompts)
    assert not any(isinstance(k, tuple) and k[0] == "generated" for k in provider.engine.kv_store)  # nothing kept: no continuation, no answer
    asked = [p.with_prefix(p.prefix + o.text.rstrip() + "\nAnswer:") for p, o in zip(prompts, outs, strict=True)]
    alone = [provider.generate([a], ANSWER)[0] for a in asked]
    assert [o.answer.text for o in outs] == [a.text for a in alone]
    assert all(o.answer.text.strip() for o in outs)  # an answer was written, not an empty line
    plain = provider.generate(prompts, COT)
    assert [o.text for o in outs] == [c.text for c in plain]  # the continuation itself is unchanged

    provider.forget()
    far = " Let me write the whole question out once more before I answer it.\nAnswer:"
    outs = _run(stream, prompts, [replace(COT, then=_asking(p, far)) for p in prompts])
    assert provider.n_answers_in_row == len(prompts)  # queued, not in the row
    asked = [p.with_prefix(p.prefix + o.text.rstrip() + far) for p, o in zip(prompts, outs, strict=True)]
    assert [o.answer.text for o in outs] == [provider.generate([a], ANSWER)[0].text for a in asked]


def test_the_answer_can_take_back_the_last_tokens_of_the_row():
    """An answer prompt that drops the row's last tokens (the stop string, a trailing space) cuts
    the row's KV to the shared part: the same text as the prompt alone."""
    provider = organism_provider()
    prompts = chain_cot_prompts(n_ops=(3, 5), per=2)
    # The row holds the CoT and the "Answer" of its stop string; the answer prompt drops the cue.
    then = [replace(COT, then=Then(lambda done, p=p: (p.with_prefix(p.prefix + done.text.rstrip()[:-1]), ANSWER, lambda c: c)))
            for p in prompts]
    outs = _run(provider.open_stream(), prompts, then)
    assert provider.n_answers_in_row == len(prompts)
    asked = [p.with_prefix(p.prefix + o.text.rstrip()[:-1]) for p, o in zip(prompts, outs, strict=True)]
    assert [o.answer.text for o in outs] == [provider.generate([a], ANSWER)[0].text for a in asked]


@pytest.mark.parametrize("model,system", [
    ("organism/faithful", "cot"),
    ("organism/faithful-think", "think"),  # through the thinking twin's edge
    ("organism/faithful?hint=says", "cot"),  # through the hint follower's edge
])
def test_an_audit_gives_the_same_records_with_answers_in_the_row(tmp_path, model, system):
    """The experiments that continue a CoT (truncation, mistakes), run with answers in the row
    and asked apart: every record equal (log-probabilities to 1e-5). What it saves shows where the
    KV store is short (`bench/long_trace.py`); on these short CoTs both run about as many tokens."""
    runs = {}
    for tag, spec in (("apart", model + ("&" if "?" in model else "?") + "answer_in_row=false"), ("row", model)):
        from cotscope import get_backend

        backend = get_backend(spec)
        config = AuditConfig(model=spec, system=system, task="chain", n_samples=4, experiments=("truncate", "mistake"))
        result = audit(config, tmp_path / tag, backend=backend, progress=False)
        runs[tag] = ([_stripped(r.model_dump(mode="json")) for r in result.records], backend.n_answers_in_row)
    (apart, n_apart), (row, n_row) = runs["apart"], runs["row"]
    assert n_apart == 0 and n_row > 0
    assert row == apart


def _stripped(x):
    """A record without its wall time and what names the model spec, log-probabilities rounded."""
    if isinstance(x, dict):
        return {k: _stripped(v) for k, v in x.items() if k != "wall_s"}
    if isinstance(x, list):
        return [_stripped(v) for v in x]
    if isinstance(x, str):
        return x.replace("&answer_in_row=false", "").replace("?answer_in_row=false", "")
    if isinstance(x, float):
        return round(x, 5)
    return x


def test_only_a_system_that_reasons_and_answers_the_default_way_asks_with_the_continuation():
    """`System._thens`: asked where the backend says it decodes answers in the row and the system
    builds answers the default way; not for a choice, a backend that does not, a sampled
    continuation, or a system with its own `answer_from` (it would be bypassed)."""
    from cotscope.backends.mock import MockBackend
    from cotscope.systems.builtin import CotSystem
    from cotscope.tasks.base import Sample

    class InRow(MockBackend):
        answers_in_row = True

    class OwnAnswers(CotSystem):
        def answer_from(self, samples, cots):
            return super().answer_from(samples, cots)

    sample = Sample(id="s", question="q", answer="1")
    assert CotSystem(InRow(), "numeric", "cot")._thens([sample], [["a"]]) is not None
    assert CotSystem(MockBackend(), "numeric", "cot")._thens([sample], [["a"]]) is None
    assert CotSystem(InRow(), "choice", "cot")._thens([sample], [["a"]]) is None
    assert CotSystem(InRow(), "numeric", "cot", GenerationParams(temperature=0.7))._thens([sample], [["a"]]) is None
    assert OwnAnswers(InRow(), "numeric", "cot")._thens([sample], [["a"]]) is None
