"""The model contract (img2img.contract): one descriptor, written and read back the same way by
every task, the importer and the shipped models, with clear errors for broken metadata."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from img2img.contract import (
    FP16_SUFFIX,
    IMAGE,
    IMAGE_MASK,
    INPUT_LAYOUTS,
    LATENT,
    LATENT_LABEL,
    ModelInfo,
    precision_variant,
)
from img2img.engine.config import config_to_dict
from img2img.errors import ModelError
from img2img.export import describe_net
from img2img.nets import build_net
from img2img.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"

# Per task: a tiny net of the kind it trains, config fields its export reads, the direction
# exported, and the shipped model whose metadata keys an export of the task must write.
TASK_EXPORTS = {
    "superres": ("srvgg_tiny", {"scale": 4}, {"scale": 4, "data": "photos"}, "", "superres-x4.onnx"),
    "inpaint": ("inpaint_unet_tiny", {}, {"data": "photos", "data_license": "CC0-1.0"}, "", "inpaint.onnx"),
    "faces": (
        "dcgan_generator_tiny", {"num_classes": 2},
        {"data": "faces", "conditional": True, "labels": "cat,dog"}, "", "faces-emoji.onnx",
    ),
    "adain": ("adain_tiny", {}, {"data": "photos", "style_size": 256}, "", None),
    "style": (
        "resnet_tiny", {}, {"data": "photos", "style_image": "art/starry-night.jpg"}, "", "style-starry-night.onnx",
    ),
    "pix2pix": ("unet_tiny", {}, {"data": "pairs", "domain_a": "google", "domain_b": "twitter"}, "",
                "emoji-google2twitter-pix2pix.onnx"),
    "cyclegan": ("resnet_tiny", {}, {"data_a": "a", "data_b": "b", "background": "black"}, "b2a",
                 "emoji-google2twitter.onnx"),
}


def task_descriptor(task_name: str) -> tuple[ModelInfo, str | None]:
    """The descriptor an export of `task_name` writes (as `export.export_net` builds it), named
    "m", and the shipped model of that task."""
    preset, net_options, fields, direction, shipped = TASK_EXPORTS[task_name]
    task = TASKS.get(task_name)
    config = task.config_class(**fields)
    net = build_net(preset, **net_options)
    info = describe_net(net, config=config_to_dict(config), **task.export_fields(config, net, direction))
    return dataclasses.replace(info, name="m"), shipped


def shipped_metadata(file: str) -> dict[str, str]:
    return {prop.key: prop.value for prop in onnx.load(WEIGHTS / file, load_external_data=False).metadata_props}


def test_every_task_has_an_export_case():
    assert set(TASK_EXPORTS) == set(TASKS)


@pytest.mark.parametrize("task_name", sorted(TASK_EXPORTS))
def test_task_descriptor_round_trips_through_metadata(task_name):
    info, _ = task_descriptor(task_name)
    props = info.to_metadata()
    assert all(isinstance(value, str) for value in props.values())
    parsed = ModelInfo.from_metadata(props, source="m.onnx")
    assert parsed.to_metadata() == props
    # Every typed field survives; the config comes back as JSON gives it (tuples as lists).
    assert dataclasses.replace(parsed, config=info.config) == info
    assert parsed.config == json.loads(json.dumps(info.config))


@pytest.mark.parametrize("task_name", sorted(name for name, case in TASK_EXPORTS.items() if case[-1]))
def test_task_export_writes_the_keys_its_shipped_model_carries(task_name):
    info, shipped = task_descriptor(task_name)
    assert set(info.to_metadata()) == set(shipped_metadata(shipped))


def test_task_descriptors_declare_their_graph():
    assert task_descriptor("superres")[0].inputs == IMAGE and task_descriptor("superres")[0].scale == 4
    assert task_descriptor("inpaint")[0].inputs == IMAGE_MASK
    faces, _ = task_descriptor("faces")
    assert faces.inputs == LATENT_LABEL and faces.labels == ("cat", "dog") and faces.generates
    assert task_descriptor("adain")[0].to_metadata()["inputs"] == "image,style,style_weights,alpha"
    cyclegan = task_descriptor("cyclegan")[0].to_metadata()
    assert cyclegan["domains"] == "B->A" and cyclegan["direction"] == "b2a" and cyclegan["background"] == "0,0,0"
    assert cyclegan["task"] == "translate" and cyclegan["trained_as"] == "cyclegan"


def test_a_colouring_model_declares_that_it_paints_over_transparency():
    info = ModelInfo(task="translate", name="colour", scale=1, opaque_output=True)
    props = info.to_metadata()
    assert props["opaque_output"] == "1" and ModelInfo.from_metadata(props, source="colour.onnx").opaque_output
    assert "opaque_output" not in task_descriptor("pix2pix")[0].to_metadata()  # the default: keep the input's
    assert shipped_metadata("openmoji-outline2color.onnx")["opaque_output"] == "1"


@pytest.mark.parametrize("file", sorted(path.name for path in WEIGHTS.glob("*.onnx")))
def test_shipped_metadata_reads_back_to_the_same_strings(file):
    props = shipped_metadata(file)
    assert ModelInfo.from_metadata(props, source=file).to_metadata() == props


def test_unset_optional_fields_are_left_out():
    props = ModelInfo(task="superres", name="x2", scale=2).to_metadata()
    assert props == {
        "name": "x2", "task": "superres", "scale": "2", "channels": "3", "multiple_of": "1", "min_size": "1",
        "range": "0,1", "precision": "fp32",
    }
    # An unconditional generator says so with an empty label list, and has no size requirements.
    generator = ModelInfo(task="faces", name="g", scale=1, inputs=LATENT, latent_dim=8, resolution=16).to_metadata()
    assert generator["labels"] == "" and generator["inputs"] == "z" and "multiple_of" not in generator


def test_missing_name_defaults_to_the_file_stem():
    assert ModelInfo.from_metadata({"scale": "2"}, source="models/x2.onnx").name == "x2"


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({"task": "superres"}, "has no 'scale' in its ONNX metadata"),
        ({"scale": "two"}, "metadata 'scale' is 'two', expected a whole number"),
        ({"scale": "1000"}, "expected 1 to 16"),
        ({"scale": "2", "multiple_of": "0"}, "expected 1 to 1,024"),
        ({"scale": "2", "min_size": "99999999"}, "expected 1 to 4,096"),
        ({"scale": "2", "resolution": "0"}, "metadata 'resolution' is 0"),
        ({"scale": "2", "range": "0-1"}, "expected 'low,high'"),
        ({"scale": "2", "range": "-1,1"}, "the runtime feeds and reads \\[0, 1\\]"),
        ({"scale": "2", "inputs": "image,style"}, "metadata 'inputs' is 'image,style'"),
        ({"scale": "2", "precision": "int4"}, "expected one of fp32, fp16, int8"),
        ({"scale": "2", "config": "{not json"}, "'config' is not valid JSON"),
        ({"scale": "2", "whole_image": "yes"}, "expected '1' or '0'"),
        ({"scale": "1", "opaque_output": "true"}, "metadata 'opaque_output' is 'true', expected '1' or '0'"),
        ({"scale": "2", "background": "255,255"}, "expected 'r,g,b' with each 0-255"),
    ],
)
def test_malformed_metadata_names_the_key_and_the_fix(metadata, says):
    with pytest.raises(ModelError, match=says) as raised:
        ModelInfo.from_metadata(metadata, source="bad.onnx")
    assert str(raised.value).startswith("bad.onnx")


def test_input_layouts_are_the_graphs_the_runtime_runs():
    assert INPUT_LAYOUTS == (IMAGE, IMAGE_MASK, ("image", "style", "style_weights", "alpha"), LATENT, LATENT_LABEL)
    for layout in INPUT_LAYOUTS:
        info = ModelInfo(scale=1, inputs=layout, latent_dim=8 if layout[0] == "z" else 0)
        assert ModelInfo.from_metadata(info.to_metadata(), source="m.onnx").inputs == layout


def test_precision_variants_are_named_by_one_suffix():
    assert FP16_SUFFIX == ".fp16.onnx"
    assert precision_variant("w/model.onnx", "fp16") == Path("w/model.fp16.onnx")
    assert precision_variant("w/model.fp16.onnx", "fp32") == Path("w/model.onnx")
    assert precision_variant("w/model.fp16.onnx", "fp16") == Path("w/model.fp16.onnx")
    with pytest.raises(ModelError, match="unknown precision 'bf16'"):
        precision_variant("model.onnx", "bf16")


def test_contract_imports_neither_torch_nor_onnx():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, img2img.contract; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, cwd=ROOT, check=True, timeout=60,
    ).stdout.split()
    assert "img2img.contract" in loaded
    assert not [name for name in loaded if name.split(".")[0] in ("torch", "onnx", "onnxruntime")]
