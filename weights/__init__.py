"""Shipped models: ONNX files, their model cards and manifest.json (installed as img2img.weights)."""
