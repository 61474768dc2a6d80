"""Model access: one abstract `Backend`, chosen by a spec string."""

from .base import Backend, Completion, GenerationParams, Message, Prompt, ToolTurn
from .model import Model, Usage
from .registry import check_backend, get_backend, list_backends, register_backend

__all__ = ["Backend", "Completion", "GenerationParams", "Message", "Model", "Prompt", "ToolTurn", "Usage", "check_backend", "get_backend", "list_backends", "register_backend"]
