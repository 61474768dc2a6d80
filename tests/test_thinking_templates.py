"""The thinking channel through a model's own chat template, on tiny random-weights models (the
text is noise; the rendering, the prefill and the split are what is checked). The templates
here are written for the test with the mechanisms of the published ones: a Qwen3-style switch
(``enable_thinking=false`` closes an empty block in the generation prompt), an R1-distill-style
generation prompt that opens ``<think>`` itself, and gpt-oss-style harmony channels with a
``reasoning_effort`` line. The published templates are checked in `test_published_templates.py`."""

import pytest

from cotscope import AuditConfig, CotscopeError, audit
from cotscope.backends import check_backend, get_backend
from cotscope.systems.base import get_system
from cotscope.tasks.base import Sample

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

QWEN3_LIKE = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}{% endif %}"
)
R1_LIKE = (
    "{% for m in messages %}{% if m.role == 'user' %}{{ '<｜User｜>' + m.content }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)
HARMONY_LIKE = (
    "{{ '<|start|>system<|message|>Reasoning: ' + (reasoning_effort | default('medium')) + '<|end|>' }}"
    "{% for m in messages %}{{ '<|start|>' + m.role + '<|message|>' + m.content + '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start|>assistant' }}{% endif %}"
)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<｜User｜>", "<｜Assistant｜>", "<|start|>", "<|end|>",
           "<|message|>", "<|channel|>", "<|return|>", "<pad>"]


def tiny_model(folder, template: str, eos: str, special: tuple[str, ...] = (), bos: str | None = None) -> str:
    """A one-layer Llama with random weights and a byte-level BPE tokenizer trained here
    (`special`: more special tokens the template writes; `bos`: its ``bos_token``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["What is 3 plus 4? Give the final answer in the form Answer: <number>.", "First add 3 and 4 to get 7.",
              "analysis final assistant system user Reasoning medium high low"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=[*SPECIAL, *special], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token="<pad>", bos_token=bos)
    fast.chat_template = template
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=1, max_position_embeddings=1024, eos_token_id=fast.convert_tokens_to_ids(eos),
                                      pad_token_id=fast.pad_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("templates")
    return {"qwen3": tiny_model(root / "qwen3", QWEN3_LIKE, "<|im_end|>"), "r1": tiny_model(root / "r1", R1_LIKE, "<｜User｜>"),
            "harmony": tiny_model(root / "harmony", HARMONY_LIKE, "<|return|>")}


SAMPLE = Sample(id="s0", question="What is 3 plus 4?", answer="7")


def test_template_options_reach_the_models_own_template(models):
    on = get_backend(f"hf/{models['qwen3']}", cache=False).provider
    off = get_backend(f"hf/{models['qwen3']}?enable_thinking=false", cache=False).provider
    system = get_system("think", on, "numeric")
    prompt = system.prompt(SAMPLE)
    assert on.render(prompt).endswith("<|im_start|>assistant\n")
    assert off.render(prompt).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    high = get_backend(f"hf/{models['harmony']}?reasoning_effort=high", cache=False).provider
    assert high.render(prompt).startswith("<|start|>system<|message|>Reasoning: high<|end|>")
    for spec, message in ((f"hf/{models['qwen3']}?enable_thinking=maybe", "expected true or false"),
                          (f"hf/{models['harmony']}?reasoning_effort=max", "expected low, medium or high")):
        with pytest.raises(CotscopeError, match=message):
            check_backend(spec)


@pytest.mark.parametrize(("name", "system", "want"), [
    ("qwen3", "think", "<|im_start|>assistant\n<think>\nFirst add.\nThen sum.\n</think>\n\nAnswer:"),
    ("r1", "think", "<｜Assistant｜><think>\nFirst add.\nThen sum.\n</think>\n\nAnswer:"),  # the template opened the block: not written twice
    ("harmony", "think?format=harmony",
     "<|start|>assistant<|channel|>analysis<|message|>First add.\nThen sum.\n<|end|><|start|>assistant<|channel|>final<|message|>Answer:"),
])
def test_partial_thinking_goes_into_the_assistant_turn_the_template_opens(models, name, system, want):
    backend = get_backend(f"hf/{models[name]}", cache=False).provider
    think = get_system(system, backend, "numeric")
    generation_prompt = backend.render(think.prompt(SAMPLE))
    forced = backend.render(think.answer_prompt(SAMPLE, "First add.\nThen sum."))
    assert forced.endswith(want)
    assert forced.startswith(generation_prompt.removesuffix("<think>\n"))
    going_on = backend.render(think.prompt(SAMPLE).with_prefix(think.thinking_prefix(SAMPLE, "First add.")))
    assert going_on.endswith(want[: want.index("Then sum.")])  # the system continues after the partial trace


def test_a_generation_prompt_that_closes_thinking_is_refused_by_name(models, tmp_path):
    with pytest.raises(CotscopeError, match="closes the thinking block.*enable_thinking=true"):
        cfg = AuditConfig(model=f"hf/{models['qwen3']}?enable_thinking=false", system="think", baseline="", experiments=("truncate",),
                          n_samples=1, max_new_tokens=8)
        audit(cfg, tmp_path / "off", progress=False, plots=False)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "system"), [("qwen3", "think"), ("r1", "think"), ("harmony", "think?format=harmony")])
def test_an_audit_through_each_template_runs_on_the_thinking_channel(models, name, system, tmp_path):
    assert_audit_on_thinking_channel(f"hf/{models[name]}", system, tmp_path / name)


def assert_audit_on_thinking_channel(model: str, system: str, out) -> None:
    """A truncate audit of 2 samples through `system` runs, every trace on the thinking channel."""
    cfg = AuditConfig(model=model, system=system, baseline="", experiments=("truncate",), n_samples=2, max_new_tokens=12)
    result = audit(cfg, out, progress=False, plots=False)
    traces = [r.traces["subject"] for r in result.records]
    assert len(traces) == 2 and all(t.channel == "thinking" for t in traces)
    for t in traces:  # noise rarely closes its block: a block that did not close is cut, not read as a complete CoT
        assert t.meta["thinking_ended"] in ("close tag", "end token", "budget")  # a local model always says which
        assert (t.finish_reason == "stop") == (t.meta["thinking_ended"] == "close tag")
