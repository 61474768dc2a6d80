"""The llama.cpp provider (in its own process, and in this one with ?isolate=0) against transformers on the same GGUF (the embedded
SmolLM2): the same greedy text, the same scores up to quantization, and a truncation sweep
that evaluates each shared prefix once."""

import json

import pytest

from cotscope import CotscopeError
from cotscope.backends import GenerationParams, Prompt, check_backend, get_backend
from cotscope.trace import Message

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.integration


PROMPTS = [Prompt.chat("What is 2+3? Think step by step."), Prompt.chat("Name a colour.")]


@pytest.mark.slow
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
    # quantized dot products then may pick the other one ("The colour is" / "The colour I'm";
    # on an AVX2 CPU, "2 + 3" / "2 + 3 =" at the 25th token, 0.19 nats apart in float32).
    for prompt, x, y in zip(PROMPTS, a, b, strict=True):
        assert_same_until_a_near_tie(prompt, x.text, y.text, cpp, hf)
    conts = [["A", "B", " The answer is"]] * 2
    sa, sb = cpp.score(PROMPTS, conts), hf.score(PROMPTS, conts)
    for ra, rb in zip(sa, sb):
        assert max(abs(u - v) for u, v in zip(ra, rb)) < 0.5  # Q4_1 arithmetic vs the fp32 dequantized copy
        assert ra.index(max(ra)) == rb.index(max(rb))


def assert_same_until_a_near_tie(prompt, a: str, b: str, cpp, hf, tie_nats: float = 0.5) -> None:
    """Two greedy texts of one prompt are the same, or part where both backends score the two
    next tokens within `tie_nats` of each other."""
    from cotscope.backends.base import common_prefix

    if a == b:
        return
    provider = hf.provider if hasattr(hf, "provider") else hf
    tok, ta, tb = provider.tok, provider.encode(a), provider.encode(b)
    i = common_prefix(ta, tb)
    assert i < min(len(ta), len(tb)), f"one text is the other cut short: {a!r} / {b!r}"
    prefixed = prompt.with_prefix(tok.decode(ta[:i]))
    pair = [tok.decode(ta[i : i + 1]), tok.decode(tb[i : i + 1])]
    for backend in (cpp, hf):
        [(u, v)] = backend.score([prefixed], [pair])
        assert abs(u - v) < tie_nats, f"{pair} at token {i} are {abs(u - v):.2f} nats apart, not a near tie"


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
                      (f"llamacpp/{tmp_path}/m.bin", "not a .gguf"), ("llamacpp/{p}?n_ctx=big", "n_ctx='big': expected an integer"),
                      ("llamacpp/{p}?colour=red", "unknown option 'colour'"),
                      ("llamacpp/{p}?n_batch=0", "at least 1"), ("llamacpp/{p}?n_parallel=4", "unknown option 'n_parallel'"),
                      ("llamacpp/{p}?isolate=2", "isolate='2': expected true or false"), ("llamacpp/{p}?extra_bufts=7", "expected true or false"),
                      ("llamacpp/{p}?seed=-1", "must be 0 or more"), ("llamacpp/{p}?enable_thinking=maybe", "expected true or false")):
        with pytest.raises(CotscopeError, match=msg):
            from cotscope.backends.hf import smollm2_path

            check_backend(spec.replace("{p}", smollm2_path()))


def test_an_audit_runs_on_llamacpp(path, tmp_path):
    from cotscope import audit

    r = audit(model=f"llamacpp/{path}", n_samples=2, experiments=("truncate",), run_dir=tmp_path / "a", progress=False, plots=False)
    assert r.summary.metrics["accuracy/subject"].n == 2


QUESTIONS = ["What is 17 times 23? Think step by step.", "Name a colour.", "Write a haiku about rain.",
             "If Tom has 3 apples and buys 5 more, how many does he have?"]


def _provider(spec):
    b = get_backend(spec, cache=False)
    return b.provider if hasattr(b, "provider") else b


def test_rows_of_one_batch_stop_at_their_own_budgets_and_no_step_runs_an_ended_row(path):
    cpp = _provider(f"llamacpp/{path}")
    prompts = [Prompt.chat(q) for q in QUESTIONS]
    budgets = [5, 40, 12, 1]
    outs = cpp.generate_each(prompts, [GenerationParams(max_new_tokens=n) for n in budgets])
    for out, n in zip(outs, budgets):
        assert 1 <= out.n_generated_tokens <= n
        assert (out.finish_reason == "length") == (out.n_generated_tokens == n)
    assert outs[0].finish_reason == "length"  # 5 tokens cannot finish that answer
    # A row's first token comes from its prompt pass; each later one from one decode step.
    assert cpp.n_decode_row_steps == sum(o.n_generated_tokens for o in outs) - len(outs)


@pytest.mark.slow
def test_rows_are_deterministic_and_run_in_token_order_whatever_order_they_are_asked_in(path):
    prompts = [Prompt.chat(q) for q in QUESTIONS]
    params = GenerationParams(max_new_tokens=24)
    a = _provider(f"llamacpp/{path}").generate(prompts, params)
    b = _provider(f"llamacpp/{path}").generate(prompts, params)
    assert [x.text for x in a] == [x.text for x in b]
    c = _provider(f"llamacpp/{path}").generate(prompts[::-1], params)
    assert [x.text for x in c] == [x.text for x in a][::-1]


def test_a_prompt_starts_from_another_conversations_prefix(path):
    cpp = _provider(f"llamacpp/{path}")
    instruction = "Rewrite the following step of reasoning so that it contains a mistake. " * 6
    cpp.generate([Prompt.chat(instruction + "Step: 2 + 2 = 4.")], GenerationParams(max_new_tokens=4))
    before = cpp.n_prefill_tokens
    prompt = Prompt.chat(instruction + "Step: 3 * 3 = 9.")
    cpp.generate([prompt], GenerationParams(max_new_tokens=4))
    assert cpp.n_prefill_tokens - before < 0.5 * cpp.count_tokens(cpp.render(prompt))


@pytest.mark.slow
def test_a_small_context_caps_budgets_and_a_prompt_too_long_for_it_fails_clearly(path):
    cpp = _provider(f"llamacpp/{path}?n_ctx=256")
    prompts = [Prompt.chat(q) for q in QUESTIONS * 3]
    outs = cpp.generate(prompts, GenerationParams(max_new_tokens=16))
    assert len(outs) == len(prompts) and all(o.n_generated_tokens >= 1 for o in outs)
    long = Prompt.chat("Count on. " * 20)  # fits, but not with its whole budget: cut at the context's end
    [cut] = cpp.generate([long], GenerationParams(max_new_tokens=400))
    assert cut.finish_reason == "length" and cut.n_prompt_tokens + cut.n_generated_tokens <= 256
    with pytest.raises(CotscopeError, match="raise n_ctx"):
        cpp.generate([Prompt.chat("Count on. " * 80)], GenerationParams(max_new_tokens=16))
    with pytest.raises(CotscopeError, match="raise n_ctx"):
        cpp.score([Prompt.chat("Count on. " * 80)], [["A"]])
    assert cpp.generate(prompts[:1], GenerationParams(max_new_tokens=16))[0].text == outs[0].text  # still usable


@pytest.mark.slow
def test_an_audit_whose_context_cannot_hold_its_rows_stops_with_a_named_error_within_a_minute(path, tmp_path):
    import time

    from cotscope import audit

    start = time.monotonic()
    with pytest.raises(CotscopeError, match="raise n_ctx"):
        audit(model=f"llamacpp/{path}?n_ctx=48", n_samples=2, experiments=("truncate",), run_dir=tmp_path / "a", progress=False, plots=False)
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_sampled_rows_follow_their_seed(path):
    """A seed gives the same text on a fresh backend (a rerun); seeds differ in their draws.
    (On a backend that holds the prompt already, its last token is evaluated in a step of one,
    which rounds a little differently: a draw near a boundary may then go the other way.)"""
    prompt = [Prompt.chat("Write a haiku about rain.")]
    run = lambda cpp, seed: cpp.generate(prompt, GenerationParams(max_new_tokens=24, temperature=1.0, seed=seed))[0].text  # noqa: E731
    assert run(_provider(f"llamacpp/{path}"), 1) == run(_provider(f"llamacpp/{path}"), 1)
    cpp = _provider(f"llamacpp/{path}")
    assert len({run(cpp, s) for s in range(4)}) > 1


def test_scores_after_prefixes_are_reused_equal_a_fresh_backends(path):
    # One row at a time, four sequences churned by the generations before (each prompt's KV
    # computed in one pass, as a fresh backend computes it): every reused prefix must hold the
    # KV of the tokens it claims. (A prefix whose last token was evaluated alone, in a step of
    # one token, may differ by up to 0.3 nats: llama.cpp's kernels differ with the step's size.)
    prompts = [Prompt.chat(q) for q in QUESTIONS]
    conts = [["A", " The answer is 391"]] * len(prompts)
    spec = f"llamacpp/{path}"
    fresh = _provider(spec).score(prompts, conts)
    used = _provider(spec)
    used.generate(prompts, GenerationParams(max_new_tokens=24))
    after = used.score(prompts, conts)
    assert max(abs(u - v) for ra, rb in zip(fresh, after) for u, v in zip(ra, rb)) < 1e-3



@pytest.mark.parametrize(("template", "message"), [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "failed: access to attribute '__class__' of 'str' object is unsafe"),
    ("{% set _ = messages.append(1) %}", "chat template failed"),  # changing the conversation: the sandbox refuses
    ("{{ raise_exception('system messages are not supported') }}", "refused the conversation: system messages"),
    ("{% for m in messages %}", "does not parse"),
])
def test_a_hostile_or_broken_gguf_chat_template_is_a_named_error(path, template, message):
    backend = get_backend(f"llamacpp/{path}?n_ctx=256&isolate=0", cache=False).provider  # the renderer itself, in this process
    assert "<|im_start|>user" in backend.render(PROMPTS[0])  # the file's own template works
    backend.template, backend._template = template, None
    with pytest.raises(CotscopeError, match=message):
        backend.render(PROMPTS[0])


def test_a_gguf_template_renders_in_the_environment_transformers_gives_templates(path):
    """What a model was trained on: `tojson` without HTML escapes (a tool's description "it's"
    stays "it's", not "it\\u0027s"), in the order given; loop controls; `strftime_now`."""
    backend = get_backend(f"llamacpp/{path}?n_ctx=256&isolate=0", cache=False).provider
    backend.template, backend._template = ("{% for t in tools %}{{ t | tojson }}{% endfor %}"
                                           "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}[{{ m.content }}]{% endfor %}"
                                           "{{ strftime_now('%Y') | length }}"), None
    tools = [{"type": "function", "function": {"name": "calc", "description": "it's <arithmetic> & more"}}]
    convo = (Message(role="user", content="a"), Message(role="assistant", content="b"))
    assert backend.render(Prompt(messages=convo, tools=json.dumps(tools))) == (
        '{"type": "function", "function": {"name": "calc", "description": "it\'s <arithmetic> & more"}}[a]4')


def test_native_tool_calls_need_a_gguf_template_that_renders_tools(path, tmp_path):
    """The embedded SmolLM2's template has no tools: tool-loop?calls=native through llamacpp/ is
    refused by name, before any call is made up."""
    from cotscope import audit

    with pytest.raises(CotscopeError, match="does not render tools.*calls=text"):
        audit(model=f"llamacpp/{path}?n_ctx=2048", system="tool-loop?tools=calculator&calls=native", n_samples=1, baseline="",
              experiments=(), run_dir=tmp_path / "a", progress=False, plots=False)


def test_the_engine_runs_in_its_own_process_and_gives_what_it_gives_in_this_one(path):
    from cotscope.backends._isolated import IsolatedBackend

    there = get_backend(f"llamacpp/{path}?n_ctx=512", cache=False).provider
    here = get_backend(f"llamacpp/{path}?n_ctx=512&isolate=0", cache=False).provider
    assert isinstance(there, IsolatedBackend) and not isinstance(here, IsolatedBackend)
    params = GenerationParams(max_new_tokens=24)
    assert there.generate(PROMPTS, params) == here.generate(PROMPTS, params)
    assert there.n_generated_tokens == here.n_generated_tokens > 0
    assert there.render(PROMPTS[0]) == here.render(PROMPTS[0])
    there.close()
    assert not there.alive


def test_llamacpp_repacked_buffers_on_this_cpu_run_or_are_a_named_error(path):
    """CPU feature: amx_tile. On a Xeon with AMX, llama-cpp-python 0.3.36 built natively
    segfaulted in its AMX kernel on the first matrix product when its repacked ("extra") weight
    buffers were on (measured: exit 139). Forced on here, the engine either runs (a build or CPU
    without that kernel) or its process dies and the call is an EngineDied naming the signal;
    this test process lives either way. The default, off on AMX CPUs, runs (the tests above)."""
    from cotscope.backends._isolated import EngineDied
    from cotscope.engine.threads import cpu_flags

    backend = get_backend(f"llamacpp/{path}?n_ctx=256&extra_bufts=1", cache=False).provider
    try:
        out = backend.generate(PROMPTS[:1], GenerationParams(max_new_tokens=4))
        assert out[0].n_generated_tokens > 0
    except EngineDied as exc:
        assert "amx_tile" in cpu_flags() and "killed by SIG" in str(exc)
    finally:
        backend.close()
