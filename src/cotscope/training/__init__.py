"""Training that keeps the CoT honest: GRPO (TRL) on CoT rewards, audited as it trains."""

from .grpo import TrainingConfig, TrainResult, train

__all__ = ["TrainResult", "TrainingConfig", "train"]
