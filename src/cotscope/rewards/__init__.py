"""CoT rewards with TRL's reward signature, ``(prompts, completions, **columns) -> list[float | None]``,
so that each plugs into `trl.GRPOTrainer` as it is. Built in: ``correct``, ``format``,
``monitor``, ``legibility``, ``correct-after-paraphrase`` and ``paraphrase-consistency``; a
user's own loads by import path."""

from .base import REWARDS, Answerer, Reward, get_reward, register_reward, split_completion
from . import builtin as _builtin  # noqa: F401 - registers the built-in rewards

__all__ = ["REWARDS", "Answerer", "Reward", "get_reward", "register_reward", "split_completion"]
