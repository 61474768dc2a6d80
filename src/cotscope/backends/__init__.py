"""Model access: one abstract `Backend`, chosen by a spec string."""

from .base import Backend, Completion, GenerationParams, Message, Prompt
from .registry import get_backend, list_backends, register_backend

__all__ = ["Backend", "Completion", "GenerationParams", "Message", "Prompt", "get_backend", "list_backends", "register_backend"]
