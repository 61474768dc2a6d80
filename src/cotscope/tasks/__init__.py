"""Tasks: questions with gold answers, generators and loaders, and grading."""

from . import arithmetic, chain, hub, jsonl  # noqa: F401 - registration
from .base import Sample, Task, extract_answer, get_task, grade, list_tasks, register_task, task_factory

__all__ = ["Sample", "Task", "extract_answer", "get_task", "grade", "list_tasks", "register_task", "task_factory"]
