"""Attention and precision on the engine's device: the CPU's SDPA, bfloat16 where the CPU multiplies
it natively, and which models keep windowed layers (they take transformers' own cache)."""

from __future__ import annotations

import functools

PACKED_QUERIES = 16  # queries a row up to which a CPU's attention packs a query group (a draft's check), see cpu_attention


def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX; Linux's flags).
    There a bfloat16 matrix product of a prompt pass ran 3x faster than float32 here; on other
    CPUs torch emulates it, slower than float32."""
    from .threads import cpu_flags

    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def default_dtype(device: str) -> str:
    return "bfloat16" if device != "cpu" or cpu_has_bfloat16() else "float32"


@functools.cache
def cpu_attention() -> str:
    """transformers' SDPA for a model on a CPU, with two changes, each kept for the speed
    docs/performance.md records. Half-precision queries, keys and values are cast to float32
    (torch's CPU attention of one token over a bfloat16 KV is far slower than over float32).
    And a few queries a row (a decode step that checks a
    draft, see `draft`) are packed as transformers packs one: the query heads that share a
    key/value head become queries of that head, where transformers copies every row's keys and
    values once per query head (`repeat_kv`). One query, and a prompt pass, take transformers'
    own path, so their numbers are those of plain SDPA."""
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    def attention(module, query, key, value, attention_mask, **kwargs):
        dtype = query.dtype
        query, key, value = query.float(), key.float(), value.float()
        b, h, q, d = query.shape
        g = getattr(module, "num_key_value_groups", 1)
        mask = attention_mask
        if (1 < q <= PACKED_QUERIES and g > 1 and mask is not None and mask.dim() == 4 and mask.shape[1] == 1
                and not module.training and not kwargs.get("dropout")):
            mask = mask[:, :, None].expand(b, 1, g, q, mask.shape[-1]).reshape(b, 1, g * q, mask.shape[-1])
            out = torch.nn.functional.scaled_dot_product_attention(query.reshape(b, h // g, g * q, d), key, value,
                                                                   attn_mask=mask, scale=kwargs.get("scaling"))
            return out.reshape(b, h, q, d).transpose(1, 2).contiguous().to(dtype), None
        out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        return out.to(dtype), weights

    name = "cotscope_sdpa_cpu"
    AttentionInterface.register(name, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)
    return name


def has_windowed_layers(model) -> bool:
    """Whether transformers' own cache for this model holds a layer that is not a plain
    full-sequence one (a sliding window, a chunked attention layer)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return any(type(layer) is not DynamicLayer for layer in DynamicCache(config=model.config).layers)
