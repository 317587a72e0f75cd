"""Tasks: one module per image-to-image job, found by name in TASKS (each a subclass of
`img2img.engine.task.Task`)."""

from img2img.engine.task import Task
from img2img.registry import Registry

TASKS: Registry[type[Task]] = Registry("task")

# Each module registers itself in TASKS.
from img2img.tasks import adain, cyclegan, faces, inpaint, pix2pix, style, superres  # noqa: E402

__all__ = ["TASKS", "adain", "cyclegan", "faces", "inpaint", "pix2pix", "style", "superres"]
