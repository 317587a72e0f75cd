"""`python -m cli ...` runs the same app as the `img2img` console script."""

from cli.main import app

app(prog_name="img2img")
