"""The package is layered: a module imports only from its own layer or the layers below it.

Bottom to top (the `cli/` package, outside `img2img/`, sits above them all):

    errors, registry, contract, files      what everything shares
    nets, losses, metrics, data, runtime   building blocks (runtime: the ONNX inference side)
    engine                                 the training loop, the Task interface, checkpoints
    tasks                                  one module per image-to-image job
    evaluate, export, importing, serve,    what the commands do with tasks and trained nets
    train

A piece needed lower down moves down (or is passed in); it is never imported upwards, lazily
inside a function or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "img2img"

LAYERS = [
    {"errors", "registry", "contract", "files"},
    {"nets", "losses", "metrics", "data", "runtime"},
    {"engine"},
    {"tasks"},
    {"evaluate", "export", "importing", "quantize", "serve", "train"},
]
LAYER_OF = {part: index for index, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str | None:
    """'img2img.engine.trainer' -> 'engine'; None outside img2img and for the package root
    itself (`from img2img import __version__`: the root holds the version and the lazy entry
    points of the runtime, and is imported with any of its modules anyway)."""
    names = module.split(".")
    return names[1] if names[0] == "img2img" and len(names) > 1 else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every img2img import in `path`, at any depth (lazy imports too);
    `from img2img.x import y` also names `img2img.x.y`, which may be a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                base = ".".join(package + ((node.module,) if node.module else ()))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            if base == "img2img":
                found += [(node.lineno, f"img2img.{alias.name}") for alias in node.names if alias.name in LAYER_OF]
    return found


def modules() -> list[Path]:
    # The package root is the public facade (`img2img.load` reaches into the runtime lazily).
    return sorted(path for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py")


def test_every_part_of_the_package_has_a_layer():
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in modules()}
    assert parts - LAYER_OF.keys() == set(), "add the new part of img2img/ to LAYERS"


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_imports_from_a_higher_layer(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = [
        f"line {line}: {module} ({part_of(module)} is above {own})"
        for line, module in imported_modules(path)
        if part_of(module) is not None and LAYER_OF.get(part_of(module), -1) > LAYER_OF[own]
    ]
    assert upward == [], f"{path.relative_to(PACKAGE.parent)} imports upwards: " + "; ".join(upward)
