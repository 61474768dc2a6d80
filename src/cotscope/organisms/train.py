"""Train an organism from scratch on CPU, reproducibly from a seed.

A plain next-token loop (AdamW, linear warm-up then cosine decay) over examples drawn fresh
from the seeded chain generator at every step, so there is no data set to store: the seed is
the data. Tokens of segments marked untrained (`language.example`) get label -100 and carry
no loss. The same seed on the same torch build gives the same weights.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .._errors import require
from ..tasks.chain import make_chain, make_cycle
from .checkpoints import CARD
from .language import Segments, example
from .tokenizer import build_tokenizer
from .zoo import OrganismSpec


@dataclass
class TrainResult:
    """What a training run did: its losses and how long it took."""

    name: str
    seed: int
    steps: int
    losses: list[float]  # mean loss over each logging window, in order
    wall_s: float
    out_dir: Path | None


def build_model(spec: OrganismSpec, tokenizer):
    """A freshly initialized `LlamaForCausalLM` of the spec's size."""
    transformers = require("transformers", "hf")
    t = spec.train
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_heads,
        max_position_embeddings=t.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return transformers.LlamaForCausalLM(config)


def encode_batch(batch: list[Segments], vocab: dict[str, int], unk: int, pad: int, window: int = 0, rng: random.Random | None = None):
    """Right-padded (input ids, attention mask, labels), shapes [batch, longest]; untrained
    tokens and padding are labelled -100. `window`: each sequence cut to a window of that many
    tokens (its start a third of the time, its end a third, anywhere the rest; `rng` draws)."""
    import torch

    ids, labels = [], []
    for segments in batch:
        row, lab = [], []
        for text, trained in segments:
            toks = [vocab.get(ch, unk) for ch in text]  # one token per character
            row += toks
            lab += toks if trained else [-100] * len(toks)
        if window and len(row) > window:
            room = len(row) - window
            at = rng.choice([0, room, rng.randint(0, room)])
            row, lab = row[at : at + window], lab[at : at + window]
        ids.append(row)
        labels.append(lab)
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    label_t = torch.full((len(ids), width), -100, dtype=torch.long)
    for r, (row, lab) in enumerate(zip(ids, labels, strict=True)):
        input_ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
        label_t[r, : len(lab)] = torch.tensor(lab)
    return input_ids, mask, label_t


def train(
    spec: OrganismSpec,
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    steps: int | None = None,
    log_every: int = 50,
    on_log: Callable[[int, float], object] | None = None,
    start_from: str | Path | None = None,
) -> TrainResult:
    """Train `spec` from scratch and, if `out_dir` is given, save a checkpoint there that
    ``hf/<out_dir>`` (or ``organism/<out_dir>``) loads. A spec with a second stage
    (``stage2_steps``: longer windows, smaller batches, a fresh optimizer at the first stage's
    last learning rate, its own seeds) runs it after the first.

    Args:
        spec: The organism to train.
        out_dir: Where to save weights, tokenizer and the card (``organism.json``).
        seed: Seeds the weights, the data and the order; the same seed gives the same model.
        steps: Overrides the spec's number of steps (tests train a few).
        log_every: Steps per logged mean loss.
        on_log: Called with (step, mean loss) at each logging point.
        start_from: A checkpoint of this spec's first stage to run the second stage from (the
            first stage is deterministic from its seed, so this gives what a whole run gives).
    """
    torch = require("torch", "hf")
    from ..engine.threads import available_cores

    torch.set_num_threads(available_cores())
    cfg = replace(spec.train, steps=steps) if steps is not None else spec.train
    spec = replace(spec, train=cfg)
    tok = build_tokenizer()
    vocab, unk, pad = tok.get_vocab(), tok.unk_token_id, tok.pad_token_id

    def problem(r: random.Random):
        if spec.task == "cycle":
            lo, hi = cfg.n_range if cfg.n_range != (0, 0) else (spec.n_ops, spec.n_ops)
            return make_cycle(r, r.randint(lo, hi))
        return make_chain(r, spec.n_ops)

    def run(model, n_steps: int, batch_size: int, window: int, lr_at: Callable[[int], float], rng: random.Random, done: int) -> list[float]:
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.98),
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        losses, window_losses = [], []
        for step in range(n_steps):
            batch = [example(spec.kind, problem(rng), rng, spec.mix) for _ in range(batch_size)]
            input_ids, mask, labels = encode_batch(batch, vocab, unk, pad, window, rng)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            window_losses.append(loss.item())
            if len(window_losses) == log_every or step == n_steps - 1:
                losses.append(sum(window_losses) / len(window_losses))
                window_losses = []
                if on_log:
                    on_log(done + step + 1, losses[-1])
        return losses

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    start = time.perf_counter()
    if start_from is None:
        torch.manual_seed(seed)
        model = build_model(spec, tok)
        model.train()
        losses = run(model, cfg.steps, cfg.batch_size, cfg.window, lr_at, random.Random(f"organism:{spec.name}:{seed}"), 0)
    else:
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(str(start_from))
        model.train()
        losses = list(json.loads((Path(start_from) / CARD).read_text())["losses"])
    if cfg.stage2_steps:
        torch.manual_seed(seed + 1)
        losses += run(model, cfg.stage2_steps, cfg.stage2_batch_size, cfg.stage2_window, lambda _: 0.1,
                      random.Random(f"organism:{spec.name}:{seed}:stage2"), cfg.steps)
    wall = time.perf_counter() - start
    result = TrainResult(spec.name, seed, cfg.steps + cfg.stage2_steps, losses, wall, Path(out_dir) if out_dir else None)
    if out_dir is not None:
        save(model, tok, spec, result, Path(out_dir))
    return result


def save(model, tokenizer, spec: OrganismSpec, result: TrainResult, out_dir: Path) -> None:
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    card = {
        "organism": spec.card(),
        "seed": result.seed,
        "steps": result.steps,
        "losses": [round(x, 5) for x in result.losses],
        "train_wall_s": round(result.wall_s, 1),
        "torch": torch.__version__,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    (out_dir / CARD).write_text(json.dumps(card, indent=2) + "\n")

