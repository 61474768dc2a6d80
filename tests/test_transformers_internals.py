"""The transformers internals the engine touches, each named, so that a transformers release that
moves one fails here with its name instead of deep inside a decode step. pyproject pins the minor
series these were read from; a newer series is taken by moving the pin once this file passes.

The engine (cotscope.engine: cache, stream, store, attention) subclasses `cache_utils.DynamicLayer`
and reads and writes its `keys`/`values` in place, swaps the layers of a `DynamicCache`, registers
an attention function and its mask under transformers' registries, and reads the attention
implementation's name from the model's config."""

import inspect

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _tiny_config():
    return transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def test_the_pinned_minor_series_is_the_one_installed():
    import importlib.metadata as md
    import re
    from pathlib import Path

    pin = re.search(r'"transformers>=(\d+)\.(\d+)[^,]*,<(\d+)\.(\d+)"', (Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pin, "pyproject.toml pins transformers to one minor series (>=X.Y,<X.Y+1)"
    lo, hi = (int(pin[1]), int(pin[2])), (int(pin[3]), int(pin[4]))
    assert hi == (lo[0], lo[1] + 1), f"the pin spans more than one minor series: {pin[0]}"
    got = tuple(int(x) for x in md.version("transformers").split(".")[:2])
    assert got == lo, f"transformers {md.version('transformers')} is installed; the engine's internals were read from {lo[0]}.{lo[1]}"


def test_dynamic_layer_keeps_keys_and_values_the_engine_writes_in_place():
    from transformers.cache_utils import DynamicLayer

    layer = DynamicLayer()
    for name in ("is_initialized", "lazy_initialization", "get_seq_length", "update"):
        assert hasattr(layer, name), f"transformers.cache_utils.DynamicLayer.{name} moved (engine/cache.py's GrowLayer uses it)"
    params = list(inspect.signature(DynamicLayer.update).parameters)
    assert params[:3] == ["self", "key_states", "value_states"], f"DynamicLayer.update's signature moved: {params}"
    k, v = torch.zeros(2, 1, 3, 4), torch.ones(2, 1, 3, 4)
    assert not layer.is_initialized, "DynamicLayer.is_initialized should be False before the first update"
    layer.update(k, v)
    for name, want in (("keys", k), ("values", v)):
        assert torch.equal(getattr(layer, name), want), f"DynamicLayer.{name} no longer holds what update() was given"
    assert layer.get_seq_length() == 3, "DynamicLayer.get_seq_length() no longer counts the key columns (dim -2)"


def test_a_dynamic_cache_built_from_a_config_has_one_swappable_layer_per_decoder_layer():
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=_tiny_config())
    assert hasattr(cache, "layers"), "DynamicCache.layers moved (engine/store.py and stream.py swap and read its layers)"
    assert len(cache.layers) == 2 and all(type(x) is DynamicLayer for x in cache.layers), \
        "DynamicCache(config=...) no longer builds plain DynamicLayers for full-attention layers (has_windowed_layers reads this)"
    cache.layers[0] = DynamicLayer()
    cache.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), 0)
    assert cache.layers[0].get_seq_length() == 3, "DynamicCache.update(k, v, layer_idx) no longer writes to cache.layers[layer_idx]"


def test_the_attention_and_mask_registries_take_a_named_function():
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    assert callable(sdpa_attention_forward), "transformers.integrations.sdpa_attention.sdpa_attention_forward moved"
    assert callable(sdpa_mask), "transformers.masking_utils.sdpa_mask moved"
    for registry, what in ((AttentionInterface, "transformers.AttentionInterface"), (ALL_MASK_ATTENTION_FUNCTIONS, "masking_utils.ALL_MASK_ATTENTION_FUNCTIONS")):
        assert hasattr(registry, "register"), f"{what}.register moved (engine/attention.py registers the CPU attention there)"


def test_the_model_names_its_attention_and_takes_a_registered_one():
    from cotscope.engine.attention import cpu_attention

    model = transformers.LlamaForCausalLM(_tiny_config())
    assert hasattr(model.config, "_attn_implementation"), "config._attn_implementation moved (backends/_load.py reads it)"
    assert hasattr(model, "set_attn_implementation"), "PreTrainedModel.set_attn_implementation moved"
    name = cpu_attention()
    model.set_attn_implementation(name)
    assert model.config._attn_implementation == name, "set_attn_implementation no longer records the name in config._attn_implementation"
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    assert out.past_key_values.layers[0].keys.shape[-2] == 3, "a forward no longer fills past_key_values.layers[i].keys"
