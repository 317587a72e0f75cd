"""Which files a batch takes and where their results go, checked before anything is decoded.

The inputs are listed by `img2img.files.listing.image_files` (the lister training and evaluation
use too), then filtered by include/exclude and the shard; each output's place is checked against
the input, mask and output folders, and each image's mask is found by its relative path.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from img2img.errors import ImageReadError, OutputError
from img2img.files.atomic import TEMP_SUFFIX, temp_file_pattern, temp_key
from img2img.files.listing import IMAGE_SUFFIXES, check_folder, image_files
from img2img.runtime.batch_options import BatchOptions, shard_of
from img2img.runtime.batch_report import FileRecord


def find_inputs(input_dir: str | os.PathLike[str], options: BatchOptions) -> list[Path]:
    """The image files a batch over `input_dir` takes, in processing order.

    Walks the tree without following symlinked folders, skips hidden files and folders (names
    starting with "."), the output and mask folders when they lie inside `input_dir`, and files
    whose suffix is not in IMAGE_SUFFIXES; then applies include/exclude and the shard. Sorted by
    path components, so the order is the same everywhere.

    Raises:
        ImageReadError: `input_dir` is missing or not a folder.
    """
    root = check_folder(input_dir)
    selected = _select(_scan(root, options, errors=[]), root, options)
    return [path for path in selected if _in_shard(path, root, options)]


def output_path_for(
    input_dir: str | os.PathLike[str], path: str | os.PathLike[str], options: BatchOptions
) -> Path:
    """Where the result for input `path` goes: the same relative place under output_dir, suffix ext.

    Raises:
        OutputError: `path` is not under `input_dir`, or the output would land outside
            output_dir (through a symlinked folder inside it).
    """
    root, path = Path(input_dir), Path(path)
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise OutputError(f"{path} is not inside the input folder {root}") from None
    target = options.output_dir / relative.with_suffix(f".{options.ext}")
    real = target.parent.resolve() / target.name
    if not real.is_relative_to(options.output_dir.resolve()):
        raise OutputError(_outside_message(target, real, options))
    return target


def _outside_message(target: Path, real: Path, options: BatchOptions) -> str:
    return (
        f"its output {target} resolves to {real}, outside the output folder {options.output_dir} "
        "(a symlinked folder?); remove the link or pick another output folder"
    )


@dataclass(frozen=True)
class Item:
    source: Path
    relative: str  # posix path under the input folder
    output: Path
    output_relative: str  # posix path under the output folder
    mask: Path | None = None  # its mask file, with a mask folder


def check_mask_dir(masks: Path, root: Path, output_dir: Path) -> None:
    if not masks.is_dir():
        what = "is a file" if masks.exists() else "does not exist"
        raise ImageReadError(
            f"mask folder {masks} {what}; pass the folder holding one mask per image, at the images' "
            "relative paths"
        )
    if masks.resolve() == root.resolve():
        raise ImageReadError(
            f"the mask folder {masks} is the input folder, so every image would be its own mask; "
            "keep the masks in a folder of their own"
        )
    # Results written into the mask tree would replace masks (photo.png's result is the mask
    # photo.png's name); an output folder holding the mask folder is checked file by file.
    if output_dir.resolve().is_relative_to(masks.resolve()):
        raise OutputError(
            f"the output folder {output_dir} is inside the mask folder {masks}; results would replace "
            "the masks: pass another output folder"
        )


def check_report_path(options: BatchOptions, plan: list[Item]) -> None:
    """Refuses a report path that would replace a file this run reads or writes: an input, a
    mask or an output (where a later `skip_existing` run would take the report for a result)."""
    path = options.report_path
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise OutputError(f"the report {path} has an image suffix; the report is JSON: name it .json")
    real = path.parent.resolve() / path.name
    # Only files of the report's name can be it: the folders of the others are never resolved.
    for item in plan:
        for role, other in (("input", item.source), ("mask", item.mask), ("output", item.output)):
            if other is not None and other.name == path.name and other.parent.resolve() / other.name == real:
                raise OutputError(
                    f"the report {path} would replace the {role} {other}; pass another report path"
                )


def _matches(patterns: Iterable[str], relative: str, name: str) -> bool:
    return any(fnmatch.fnmatchcase(relative, glob) or fnmatch.fnmatchcase(name, glob) for glob in patterns)


def _scan(root: Path, options: BatchOptions, errors: list[OSError]) -> list[Path]:
    """Every image file under root (excluded, output and mask folders aside), sorted."""
    skip = {options.output_dir.resolve()}
    if options.masks is not None:
        skip.add(options.masks.resolve())

    def enter(folder: Path) -> bool:
        relative = folder.relative_to(root).as_posix()
        return not _matches(options.exclude, relative, folder.name) and folder.resolve() not in skip

    return image_files(root, enter=enter, errors=errors)


def _select(paths: list[Path], root: Path, options: BatchOptions) -> list[Path]:
    """The paths passing include and exclude."""
    selected = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        if options.include and not _matches(options.include, relative, path.name):
            continue
        if _matches(options.exclude, relative, path.name):
            continue
        selected.append(path)
    return selected


def _in_shard(path: Path, root: Path, options: BatchOptions) -> bool:
    if options.shard is None:
        return True
    k, n = options.shard
    return shard_of(path.relative_to(root).as_posix(), n) == k


def plan_items(
    root: Path, options: BatchOptions, records: dict[int, FileRecord]
) -> tuple[list[Item], list[FileRecord]]:
    """This run's files in order, with the outcome already known for some of them.

    Fills `records` for files that fail before decoding (their output would clash with another
    file's, land inside the input tree or outside the output folder, or they have no mask in the
    mask folder) or are skipped. Returns the items and a failed record per folder that could not
    be listed.
    """
    listing_errors: list[OSError] = []
    selected = _select(_scan(root, options, listing_errors), root, options)
    listing_failures = [
        FileRecord(
            input=Path(os.path.relpath(error.filename or root, root)).as_posix() + "/",
            output=None,
            status="failed",
            reason=f"cannot list folder {error.filename}: {error.strerror or error}; its images were skipped",
        )
        for error in listing_errors
    ]
    real_input_root, real_output_root = root.resolve(), options.output_dir.resolve()
    # Outputs may only land inside the input tree when the output folder itself lies inside it
    # (that folder is never scanned); otherwise such an output could replace an input.
    outputs_may_land_in_input_tree = real_output_root.is_relative_to(real_input_root)
    real_mask_root = options.masks.resolve() if options.masks is not None else None
    real_folders: dict[Path, Path] = {}

    items: list[Item] = []
    first_claim: dict[Path, str] = {}
    mask_listings: dict[Path, dict[str, list[str]]] = {}
    for path in selected:
        relative = path.relative_to(root).as_posix()
        output = options.output_dir / Path(relative).with_suffix(f".{options.ext}")
        output_relative = output.relative_to(options.output_dir).as_posix()
        if output.parent not in real_folders:
            real_folders[output.parent] = output.parent.resolve()
        # Only the folder is resolved: an atomic write replaces a link at the output's own name
        # rather than writing through it.
        real = real_folders[output.parent] / output.name
        refused = None
        if not real.is_relative_to(real_output_root):
            refused = _outside_message(output, real, options)
        elif not outputs_may_land_in_input_tree and real.is_relative_to(real_input_root):
            refused = (
                f"its output {output} lies inside the input folder {root} and could replace an input; "
                "pass an output folder outside it"
            )
        elif real_mask_root is not None and real.is_relative_to(real_mask_root):
            refused = (
                f"its output {output} lies inside the mask folder {options.masks} and could replace a mask; "
                "pass an output folder outside it"
            )
        elif real in first_claim:
            refused = (
                f"its output {output} is also the output of {first_claim[real]}; "
                "rename one of them or move it to another folder"
            )
        else:
            first_claim[real] = relative
        # Clashes are settled over all selected files before sharding, so that the same file wins
        # whichever shard looks.
        if not _in_shard(path, root, options):
            continue
        mask = None
        if options.masks is not None and refused is None:
            mask, refused = _find_mask(options.masks, relative, mask_listings)
        index = len(items)
        items.append(Item(path, relative, output, output_relative, mask))
        if refused is not None:
            records[index] = FileRecord(relative, output_relative, "failed", reason=refused)
        elif options.skip_existing and output.is_file():
            records[index] = FileRecord(relative, output_relative, "skipped", reason="output exists")
    return items, listing_failures


def _find_mask(
    masks: Path, relative: str, listings: dict[Path, dict[str, list[str]]]
) -> tuple[Path | None, str | None]:
    """The mask of the input at `relative` (posix, under the input folder): (path, None), or
    (None, why there is none). `listings` caches each mask folder's image files by stem."""
    wanted = Path(relative)
    folder = masks / wanted.parent
    if folder not in listings:
        by_stem: dict[str, list[str]] = {}
        try:
            names = [path.name for path in image_files(folder, recursive=False)]
        except (ImageReadError, OSError):
            names = []
        for name in names:
            by_stem.setdefault(Path(name).stem, []).append(name)
        listings[folder] = by_stem
    found = listings[folder].get(wanted.stem, [])
    if len(found) == 1:
        return folder / found[0], None
    if not found:
        return None, (
            f"no mask for it: {folder / wanted.stem}.* does not exist (any of {' '.join(IMAGE_SUFFIXES)}); "
            "add one, or exclude the image"
        )
    return None, f"several masks for it in {folder}: {', '.join(found)}; keep one"


def remove_stale_temps(paths: list[Path]) -> None:
    """Delete temporary files a killed earlier run left for these destinations.

    Only temps of this run's own destinations go: another shard may be writing in the same folder.
    Each folder is listed once (save_image's own clean-up lists it per file), which keeps a rerun
    over a large folder with `skip_existing` fast.
    """
    by_folder: dict[Path, dict[str, str]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, {})[temp_key(path.name)] = path.name
    for folder, destinations in by_folder.items():
        try:
            temps = [entry.name for entry in os.scandir(folder) if entry.name.endswith(TEMP_SUFFIX)]
        except OSError:
            continue
        for name in temps:
            # ".<key>.<random>.img2img.tmp", where the random part has no dot.
            destination = destinations.get(name[1 : -len(TEMP_SUFFIX)].rpartition(".")[0])
            if destination is not None and fnmatch.fnmatchcase(name, temp_file_pattern(destination)):
                try:
                    (folder / name).unlink()
                except OSError:
                    # Left for the write of that file to retry; a leftover never breaks a write.
                    pass
