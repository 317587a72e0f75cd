"""Evaluation of trained models: scores, comparison sheets and reports (training curves: `img2img.engine.curves`)."""
