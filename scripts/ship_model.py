"""Turn a finished training run into a shipped model in weights/.

Writes weights/<name>.onnx (the EMA generator, exported and parity-checked), its float16 variant
weights/<name>.fp16.onnx (unless --no-fp16), with --int8-calibration PHOTOS its 8-bit variant
weights/<name>.int8.onnx (`img2img quantize`), weights/<name>.safetensors
(the same weights, for `engine.init_generator` fine-tuning), for a run that trained a
discriminator weights/<name>.discriminator.safetensors (for `engine.init_discriminator`, so
fine-tuning keeps a trained critic), and the model's entry in weights/manifest.json (sha256 and
the validation metrics of the chosen checkpoint). The model card weights/<name>.md is written by
hand from the run's logs, or rendered from a template by `scripts/campaign.py ship`.

Usage:
    python scripts/ship_model.py runs/superres-x4 --name superres-x4 [--checkpoint best] \
        [--int8-calibration data/photos/train]
    python scripts/ship_model.py runs/emoji-cyclegan --name emoji-google2twitter --direction a2b
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from img2img.engine.checkpoint import generator_from_checkpoint, load_checkpoint, save_safetensors_generator
from img2img.contract import precision_variant
from img2img.export import export_generator, export_net
from img2img.nets import rebuild_net
from img2img.quantize import quantize_model

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def export_model(
    source: Path,
    *,
    name: str,
    weights: Path,
    fp16: bool = True,
    direction: str | None = None,
    weights_name: str | None = None,
    int8_calibration: Path | None = None,
) -> dict[str, Any]:
    """Exports checkpoint `source` as model `name` into the folder `weights`, with an 8-bit
    variant calibrated on the photos of `int8_calibration` when given; returns its manifest
    entry (the caller writes the manifest)."""
    checkpoint = load_checkpoint(source)
    generator = generator_from_checkpoint(checkpoint)
    onnx_path = weights / f"{name}.onnx"
    errors = export_generator(generator, onnx_path, fp16=fp16, direction=direction)
    print(f"exported {source} -> {onnx_path} (parity max abs error {errors})")
    _, info = export_net(generator, direction)
    twin = weights_name or name
    save_safetensors_generator(generator.net, weights / f"{twin}.safetensors", task=generator.task, config=generator.config)
    entry_discriminator = {}
    record = checkpoint.get("discriminator")
    if record is not None:
        discriminator = rebuild_net(record["arch"], record["hparams"])
        discriminator.load_state_dict(record["state_dict"])
        file = f"{twin}.discriminator.safetensors"
        save_safetensors_generator(discriminator, weights / file, task=generator.task, config=generator.config)
        entry_discriminator = {"discriminator": file}
    entry_fp16 = {}
    if fp16:
        entry_fp16 = {
            "fp16_file": precision_variant(onnx_path, "fp16").name,
            "fp16_sha256": hashlib.sha256(precision_variant(onnx_path, "fp16").read_bytes()).hexdigest(),
        }
    entry_int8 = {}
    if int8_calibration is not None:
        int8_path, agreement = quantize_model(onnx_path, int8_calibration)
        print(f"quantized {onnx_path} -> {int8_path} ({agreement:.1f} dB PSNR from the float32 outputs)")
        entry_int8 = {
            "int8_file": int8_path.name,
            "int8_sha256": hashlib.sha256(int8_path.read_bytes()).hexdigest(),
            "int8_psnr": round(agreement, 1),
        }
    metrics = checkpoint.get("metrics") or {}
    return {
        "name": name,
        "task": info.task,
        "scale": info.scale,
        "file": onnx_path.name,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "checkpoint": f"{twin}.safetensors",
        **entry_discriminator,
        **entry_fp16,
        **entry_int8,
        "card": f"{name}.md",
        "metrics": {
            "step": checkpoint["step"],
            **{key: round(value, 4) for key, value in metrics.items() if key != "images"},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder given to `img2img train --out`")
    parser.add_argument("--name", required=True, help="shipped model name, e.g. superres-x4")
    parser.add_argument("--checkpoint", default="best", help="last, best or a checkpoint path")
    parser.add_argument("--direction", help="CycleGAN runs: a2b or b2a, the net to ship")
    parser.add_argument(
        "--weights-name",
        help="name of the .safetensors twin (default: --name); both directions of a CycleGAN run share one, "
        "holding G and F, which is what fine-tuning the run needs",
    )
    parser.add_argument(
        "--no-fp16", dest="fp16", action="store_false",
        help="skip the float16 variant (small models gain nothing from it on a GPU)",
    )
    parser.add_argument(
        "--int8-calibration", type=Path,
        help="folder of photos: also write the 8-bit variant <name>.int8.onnx, calibrated on them",
    )
    args = parser.parse_args()

    source = args.run / "checkpoints" / f"{args.checkpoint}.pt" if args.checkpoint in ("last", "best") else Path(args.checkpoint)
    entry = export_model(
        source, name=args.name, weights=WEIGHTS, fp16=args.fp16, direction=args.direction,
        weights_name=args.weights_name, int8_calibration=args.int8_calibration,
    )
    manifest_path = WEIGHTS / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": []}
    manifest["models"] = [m for m in manifest["models"] if m["name"] != args.name] + [entry]
    manifest["models"].sort(key=lambda m: m["name"])
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
