"""Evaluation of trained models: scores, comparison sheets, reports and training curves."""
