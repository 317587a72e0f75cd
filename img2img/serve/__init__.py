"""`img2img serve`: a local web app for every task, over the same runtime as the command line.

- `catalogue`: the models offered (shipped and --models-dir), by name;
- `jobs`: the queue, one inference at a time per model, progress, cancel, expiry;
- `app`: the Starlette app, its JSON API and the page in `static/`.

Needs the `serve` extra (starlette, uvicorn, python-multipart); never imports torch.
"""
