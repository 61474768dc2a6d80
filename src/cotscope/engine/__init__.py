"""The transformers engine behind ``hf/`` and ``gguf/``: continuous batching, the KV prefix store, drafts and the CPU's attention."""

from .engine import Engine

__all__ = ["Engine"]
