"""img2img: GAN image-to-image toolkit.

The package splits in two halves that never meet at import time:

- the inference side (`img2img.runtime`, the `img2img` command) runs exported ONNX models with
  onnxruntime, numpy and Pillow only;
- the training side (`img2img.nets`, `img2img.losses`, `img2img.engine`, `img2img.tasks`,
  `img2img.export`) needs the `train` extra (torch, kornia, albumentations, onnx).

Importing `img2img` itself imports neither.
"""

__version__ = "0.1.0"
