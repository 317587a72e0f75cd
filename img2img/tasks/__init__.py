"""Tasks: one module per image-to-image job, found by name in TASKS."""

from img2img.registry import Registry
from img2img.tasks.base import GanObjective, Task

TASKS: Registry[type[Task]] = Registry("task")

from img2img.tasks import superres  # noqa: E402  (registers itself in TASKS)

__all__ = ["TASKS", "GanObjective", "Task", "superres"]
