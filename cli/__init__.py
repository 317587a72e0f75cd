"""The `img2img` command line: a thin typer app over img2img.runtime and the training engine."""
