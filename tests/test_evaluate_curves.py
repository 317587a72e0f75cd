import json
import sys

import numpy as np
import pytest
from PIL import Image

from img2img.errors import Img2ImgError
from img2img.engine.curves import loss_figure, plot_run, read_log, smooth, validation_figure
from img2img.files.atomic import TEMP_SUFFIX


def write_log(path, records, tail=""):
    path.write_text("".join(json.dumps(record) + "\n" for record in records) + tail)


def train_records(steps=60):
    rng = np.random.default_rng(0)
    records = []
    for step in range(10, 10 * steps + 1, 10):
        record = {"step": step, "l_g_pix": 0.05 / (1 + step / 100) + 0.001 * rng.random(), "lr_g": 2e-4}
        if step > 200:  # the discriminator joins after a warm-up, as in ESRGAN training
            record["l_d_adv"] = 0.7 + 0.1 * rng.standard_normal()
        records.append(record)
    return records


def validation_records():
    return [
        {"step": step, "psnr_y": 25.0 + step / 200, "ssim_y": 0.7 + step / 10000, "bicubic_psnr_y": 26.0, "images": 4.0}
        for step in (100, 200, 300, 400, 500, 600)
    ]


@pytest.fixture
def run(tmp_path):
    write_log(tmp_path / "train_log.jsonl", train_records())
    write_log(tmp_path / "validation_log.jsonl", validation_records())
    return tmp_path


def assert_real_plot(path):
    assert path.stat().st_size > 5_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 400 and image.height >= 250
        # Drawn, not blank: many distinct colours (lines, faint raw series, text).
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50


def test_plot_run_writes_both_figures(run):
    written = plot_run(run)
    assert written == [run / "plots" / "losses.png", run / "plots" / "validation.png"]
    for path in written:
        assert_real_plot(path)
    assert not list((run / "plots").glob(f"*{TEMP_SUFFIX}"))


def test_without_a_validation_log_only_losses_are_drawn(run):
    (run / "validation_log.jsonl").unlink()
    assert plot_run(run) == [run / "plots" / "losses.png"]
    assert not (run / "plots" / "validation.png").exists()


def test_without_a_train_log_only_validation_is_drawn(run):
    (run / "train_log.jsonl").unlink()
    assert plot_run(run) == [run / "plots" / "validation.png"]


def test_an_empty_log_draws_nothing(run):
    (run / "validation_log.jsonl").write_text("")
    assert plot_run(run) == [run / "plots" / "losses.png"]


def test_a_folder_without_logs_is_an_error(tmp_path):
    with pytest.raises(Img2ImgError, match="train_log.jsonl"):
        plot_run(tmp_path)
    with pytest.raises(Img2ImgError, match="neither"):
        plot_run(tmp_path / "missing")


def test_a_truncated_last_line_and_garbage_lines_are_skipped(tmp_path):
    path = tmp_path / "train_log.jsonl"
    records = train_records(5)
    write_log(path, records[:2], tail='not json\n[1, 2]\n{"l_g_pix": 1.0}\n{"step": "3", "l_g_pix": 1.0}\n')
    with path.open("a") as stream:
        stream.write("".join(json.dumps(record) + "\n" for record in records[2:]))
        stream.write('{"step": 60, "l_g_pix": 0.0')  # killed mid-write
    read = read_log(path)
    assert [record["step"] for record in read] == [10, 20, 30, 40, 50]
    assert read[0]["l_g_pix"] == pytest.approx(records[0]["l_g_pix"])
    assert plot_run(tmp_path) == [tmp_path / "plots" / "losses.png"]


def test_a_resumed_run_replaces_the_steps_it_logged_again(tmp_path):
    path = tmp_path / "train_log.jsonl"
    first = [{"step": step, "l_g_pix": 1.0} for step in (10, 20, 30, 40)]
    resumed = [{"step": step, "l_g_pix": 2.0} for step in (30, 40, 50)]  # checkpoint was at 20
    write_log(path, first + resumed)
    read = read_log(path)
    assert [(record["step"], record["l_g_pix"]) for record in read] == [
        (10, 1.0), (20, 1.0), (30, 2.0), (40, 2.0), (50, 2.0)
    ]


def test_only_numbers_are_kept(tmp_path):
    path = tmp_path / "validation_log.jsonl"
    path.write_text('{"step": 5, "psnr_y": 27.5, "note": "x", "ok": true, "fid": NaN, "kid": Infinity}\n')
    (record,) = read_log(path)
    assert set(record) == {"step", "psnr_y", "fid", "kid"}
    assert np.isnan(record["fid"]) and record["kid"] == np.inf


def test_smooth_is_a_centred_mean_shrinking_at_the_ends():
    values = np.array([0.0, 3.0, 0.0, 3.0, 6.0])
    # Windows: [0, 3], [0, 3, 0], [3, 0, 3], [0, 3, 6], [3, 6].
    assert smooth(values, 3) == pytest.approx([1.5, 1.0, 2.0, 3.0, 4.5])
    assert smooth(values, 1) == pytest.approx(values)
    with pytest.raises(ValueError, match="odd"):
        smooth(values, 2)


def test_loss_panels_are_per_network_and_log_scaled_when_spanning_decades():
    figure = loss_figure(train_records())
    generator, discriminator = figure.axes
    assert generator.get_title(loc="left") == "generator losses"
    assert discriminator.get_title(loc="left") == "discriminator losses"
    # l_g_pix goes from 0.05 to 0.008: positive, but less than a decade -> linear.
    assert generator.get_yscale() == "linear"
    # Raw and smoothed line per loss; only the smoothed one is labelled.
    assert [line.get_label() for line in generator.get_lines() if not line.get_label().startswith("_")] == ["l_g_pix"]
    assert len(generator.get_lines()) == 2
    spread = [{"step": step, "l_g_pix": 10.0 ** (-step / 10), "l_d_adv": -1.0 + step} for step in range(1, 40)]
    generator, discriminator = loss_figure(spread).axes
    assert generator.get_yscale() == "log"
    assert discriminator.get_yscale() == "linear"  # a negative value rules log out


def test_losses_of_neither_network_get_their_own_panel():
    records = [{"step": step, "l_style": 1.0 / step, "l_g_pix": 0.1} for step in (1, 2, 3)]
    titles = [axes.get_title(loc="left") for axes in loss_figure(records).axes]
    assert titles == ["generator losses", "other losses"]


def test_learning_rate_and_throughput_are_not_losses():
    assert loss_figure([{"step": 1, "lr_g": 1e-4, "images_per_second": 12.0}]) is None


def test_validation_has_one_panel_per_metric_with_the_bicubic_baseline_inside():
    figure = validation_figure(validation_records())
    visible = [axes for axes in figure.axes if axes.get_visible()]
    titles = [axes.get_title() for axes in visible]
    assert titles == ["psnr_y (last 28)", "ssim_y (last 0.76)"]
    psnr_panel = visible[0]
    assert len(psnr_panel.get_lines()) == 2  # the model and the dashed bicubic baseline
    assert psnr_panel.get_lines()[1].get_linestyle() == "--"
    assert list(psnr_panel.get_lines()[1].get_ydata()) == [26.0] * 6
    assert validation_figure([{"step": 1, "images": 3.0}]) is None


def test_a_missing_matplotlib_is_reported_with_the_install_command(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(Img2ImgError, match=r"img2img\[train\]"):
        plot_run(run)
