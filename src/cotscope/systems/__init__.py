"""Systems: how models are embodied (answer at once, reason, pipelines, selection loops)."""

from . import agent, builtin, pipelines, recorded, thinking  # noqa: F401 - registration
from .base import System, get_system, list_systems, register_system

__all__ = ["System", "get_system", "list_systems", "register_system"]
