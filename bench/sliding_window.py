"""Benchmark: a sliding-window GGUF's every-experiment audit through ``llamacpp/``, n=4, target
under 5 minutes on 2 CPU cores.

With ``--model <file.gguf>`` it audits that file (a Gemma 3 270M GGUF, say). Without it, it
writes one: Gemma 3's architecture (llama.cpp's ``gemma3``: five sliding-window layers to one
global, query and key norms, post-norms) at Gemma 3 270M's shapes, weights random and stored
as Q8_0, since no Gemma 3 file can be downloaded on the machines cotscope is tested on. Its
tokenizer and chat template are the embedded SmolLM2's, copied from that GGUF, the token list
padded with unused tokens to Gemma 3's 262,144 so that the output layer has Gemma 3's size.
Random weights write text without meaning that never ends on its own: every row runs to its
budget, so the figure is the path's speed with full budgets, and no metric means anything.

    python bench/sliding_window.py [--model FILE.gguf] [--n-samples 4] [--tiny] [--record]

``--tiny`` writes the tests' shapes (6 layers of 64, window 16) instead. `write_gemma3_gguf` is
what the tests call.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Gemma 3 270M (google/gemma-3-270m's config.json)
SHAPES_270M = {"n_embd": 640, "n_layer": 18, "n_head": 4, "n_head_kv": 1, "head_dim": 256, "n_ff": 2048,
               "sliding_window": 512, "n_vocab": 262144}
SHAPES_TINY = {"n_embd": 64, "n_layer": 6, "n_head": 2, "n_head_kv": 1, "head_dim": 32, "n_ff": 128,
               "sliding_window": 16, "n_vocab": None}


def write_gemma3_gguf(out: str | Path, *, n_embd: int, n_layer: int, n_head: int, n_head_kv: int, head_dim: int, n_ff: int,
                      sliding_window: int, n_vocab: int | None = None, quant: str = "F32", seed: int = 0,
                      tokenizer_from: str | Path | None = None, name: str = "random gemma3", scale: float = 0.02) -> Path:
    """Write a ``gemma3`` GGUF with random weights at `out` (see above); ``quant`` F32, F16 or Q8_0
    for the matrices (norms stay float32). The tokenizer is `tokenizer_from`'s (default: the
    embedded SmolLM2's GGUF)."""
    import gguf

    if tokenizer_from is None:
        from cotscope.backends.hf import smollm2_path

        tokenizer_from = smollm2_path()
    reader = gguf.GGUFReader(str(tokenizer_from))

    def field(key):
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    tokens, types, merges = list(field("tokenizer.ggml.tokens")), list(field("tokenizer.ggml.token_type")), list(field("tokenizer.ggml.merges"))
    n_vocab = n_vocab or len(tokens)
    if n_vocab < len(tokens):
        raise ValueError(f"n_vocab {n_vocab} is below the tokenizer's {len(tokens)} tokens")
    tokens += [f"<unused{i}>" for i in range(n_vocab - len(tokens))]
    types += [int(gguf.TokenType.UNUSED)] * (n_vocab - len(types))

    w = gguf.GGUFWriter(str(out), "gemma3")
    w.add_name(name)
    w.add_context_length(32768)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(sliding_window)
    w.add_rope_freq_base(1_000_000.0)
    w.add_tokenizer_model(field("tokenizer.ggml.model"))
    w.add_tokenizer_pre(field("tokenizer.ggml.pre"))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, add in (("tokenizer.ggml.bos_token_id", w.add_bos_token_id), ("tokenizer.ggml.eos_token_id", w.add_eos_token_id),
                     ("tokenizer.ggml.unknown_token_id", w.add_unk_token_id), ("tokenizer.ggml.padding_token_id", w.add_pad_token_id)):
        if field(key) is not None:
            add(int(field(key)))
    w.add_add_bos_token(bool(field("tokenizer.ggml.add_bos_token")))
    w.add_chat_template(field("tokenizer.chat_template"))

    rng = np.random.default_rng(seed)
    qtype = {"F32": gguf.GGMLQuantizationType.F32, "F16": gguf.GGMLQuantizationType.F16, "Q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]

    def matrix(name: str, rows: int, cols: int) -> None:
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, x.astype(np.float16))
        elif qtype == gguf.GGMLQuantizationType.Q8_0:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, x)

    def norm(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    matrix("token_embd.weight", n_vocab, n_embd)
    norm("output_norm.weight", n_embd)
    for i in range(n_layer):
        b = f"blk.{i}."
        norm(b + "attn_norm.weight", n_embd)
        matrix(b + "attn_q.weight", n_head * head_dim, n_embd)
        matrix(b + "attn_k.weight", n_head_kv * head_dim, n_embd)
        matrix(b + "attn_v.weight", n_head_kv * head_dim, n_embd)
        matrix(b + "attn_output.weight", n_embd, n_head * head_dim)
        norm(b + "post_attention_norm.weight", n_embd)
        norm(b + "attn_q_norm.weight", head_dim)
        norm(b + "attn_k_norm.weight", head_dim)
        norm(b + "ffn_norm.weight", n_embd)
        matrix(b + "ffn_gate.weight", n_ff, n_embd)
        matrix(b + "ffn_up.weight", n_ff, n_embd)
        matrix(b + "ffn_down.weight", n_embd, n_ff)
        norm(b + "post_ffw_norm.weight", n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(out)


TARGET_S = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a sliding-window GGUF to audit (default: one written as above)")
    parser.add_argument("--n-samples", type=int, default=4)
    parser.add_argument("--tiny", action="store_true", help="write the tests' shapes (6 layers of 64) in float32")
    parser.add_argument("--spec-options", default="", help="llamacpp/ options, e.g. server=off")
    parser.add_argument("--record", action="store_true", help="Add this run's figures to bench/results.jsonl (see bench/report.py).")
    args = parser.parse_args()
    from cotscope import AuditConfig, audit, get_backend

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            t = time.perf_counter()
            shapes, quant = (SHAPES_TINY, "F32") if args.tiny else (SHAPES_270M, "Q8_0")
            path = str(write_gemma3_gguf(Path(tmp) / "gemma3.gguf", **shapes, quant=quant,
                                         name=f"random gemma3, {'tiny' if args.tiny else '270M shapes'}, window {shapes['sliding_window']}"))
            print(f"written               {path} ({Path(path).stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")
        spec = f"llamacpp/{path}" + (f"?{args.spec_options}" if args.spec_options else "")
        config = AuditConfig(model=spec, n_samples=args.n_samples)
        t0 = time.perf_counter()
        backend = get_backend(spec)
        result = audit(config, Path(tmp) / "run", backend=backend, plots=False)
        wall = time.perf_counter() - t0
        decoder = getattr(backend, "decoder", "")
        gen = getattr(backend, "n_generated_tokens", 0)
        backend.close()
    peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    from report import model_name, record

    name = model_name(spec) if args.model else f"random gemma3 ({'tiny' if args.tiny else '270M shapes, Q8_0'}; llamacpp)"
    print(f"model                 {name}, decoded by {decoder}")
    print(f"samples               {len(result.records)}, every experiment ({','.join(config.experiments)}), CoT budget {config.max_new_tokens}")
    print(f"wall time             {wall:.1f} s (model load included)  target < {TARGET_S:.0f} s")
    print(f"generation            {gen} tokens, {gen / wall:.1f} per second of wall time")
    print(f"peak memory (RSS)     {peak_mb:.0f} MiB (this process or the engine's)")
    ok = wall < TARGET_S
    print(f"target                {'met' if ok else 'MISSED'}")
    if args.record:
        setting = f"{name}, {decoder}, every experiment, n={args.n_samples}"
        print("recorded in", record("sliding_window", setting, {"wall_s": round(wall, 1), "peak_gb": round(peak_mb / 1024, 2),
                                                                "generated_tokens": gen, "tokens_per_s": round(gen / wall, 1)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
