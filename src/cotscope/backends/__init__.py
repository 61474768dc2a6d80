"""Model access: one abstract `Backend`, chosen by a spec string."""

from .base import Backend, Completion, GenerationParams, Message, Prompt
from .registry import check_backend, get_backend, list_backends, register_backend

__all__ = ["Backend", "Completion", "GenerationParams", "Message", "Prompt", "check_backend", "get_backend", "list_backends", "register_backend"]
