"""Tasks: one module per image-to-image job, found by name in TASKS."""

from img2img.registry import Registry
from img2img.tasks.base import GanObjective, Task

TASKS: Registry[type[Task]] = Registry("task")

# Each module registers itself in TASKS.
from img2img.tasks import adain, cyclegan, faces, inpaint, pix2pix, style, superres  # noqa: E402

__all__ = ["TASKS", "GanObjective", "Task", "adain", "cyclegan", "faces", "inpaint", "pix2pix", "style", "superres"]
