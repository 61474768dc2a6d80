"""Tasks: questions with gold answers, generators and loaders, and grading."""

from .base import Sample, Task, extract_answer, get_task, grade, list_tasks, register_task

__all__ = ["Sample", "Task", "extract_answer", "get_task", "grade", "list_tasks", "register_task"]
