"""cotscope: is a language-model system's chain of thought how it reaches its answers?"""

from ._errors import CotscopeError, MissingDependency
from .audit import AuditResult, audit
from .backends import Backend, Completion, GenerationParams, Prompt, get_backend, register_backend
from .compare import compare
from .config import AuditConfig
from .experiments import Context, Experiment, register_experiment, same_answer
from .interventions import register_intervention
from .metrics import Metric, register_metric
from .monitors import Monitor, monitor, register_monitor
from .stats import Estimate
from .stego import StegoConfig, stego
from .summary import Summary
from .systems import System, get_system, register_system
from .tasks import Sample, Task, get_task, register_task
from .trace import Answer, Message, Step, ToolCall, Trace

__version__ = "0.2.0"

__all__ = [
    "Monitor",
    "monitor",
    "register_monitor",
    "Answer",
    "AuditConfig",
    "AuditResult",
    "Backend",
    "Completion",
    "Context",
    "CotscopeError",
    "Estimate",
    "Experiment",
    "GenerationParams",
    "Message",
    "Metric",
    "MissingDependency",
    "Prompt",
    "Sample",
    "Step",
    "StegoConfig",
    "Summary",
    "System",
    "Task",
    "ToolCall",
    "Trace",
    "audit",
    "compare",
    "get_backend",
    "get_system",
    "get_task",
    "register_backend",
    "register_experiment",
    "register_intervention",
    "register_metric",
    "register_system",
    "register_task",
    "same_answer",
    "stego",
]
