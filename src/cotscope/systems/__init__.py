"""Systems: how a model is embodied (direct answer, chain of thought, ...)."""

from .base import Answer, Continuation, System, get_system, list_systems, register_system

__all__ = ["Answer", "Continuation", "System", "get_system", "list_systems", "register_system"]
