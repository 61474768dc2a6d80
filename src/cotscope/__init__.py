"""cotscope: is a language-model system's chain of thought how it reaches its answers?"""

from ._errors import CotscopeError, MissingDependency
from .audit import AuditResult, audit
from .compare import compare
from .backends import Backend, GenerationParams, Prompt, get_backend, register_backend
from .config import AuditConfig
from .interventions import register_intervention
from .systems import System, get_system, register_system
from .tasks import Sample, Task, get_task, register_task
from .trace import Step, Trace

__version__ = "0.1.0"

__all__ = [
    "AuditConfig",
    "AuditResult",
    "Backend",
    "CotscopeError",
    "GenerationParams",
    "MissingDependency",
    "Prompt",
    "Sample",
    "Step",
    "System",
    "Task",
    "Trace",
    "audit",
    "compare",
    "get_backend",
    "get_system",
    "get_task",
    "register_backend",
    "register_intervention",
    "register_system",
    "register_task",
]
