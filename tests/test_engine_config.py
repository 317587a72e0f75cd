"""Config resolution: defaults < file < overrides, with errors a user can act on."""

import pytest

from img2img.engine.config import EngineConfig, parse_override, resolve_config
from img2img.engine.schedules import lr_factor
from img2img.engine.config import ScheduleConfig
from img2img.errors import ConfigError
from img2img.tasks.superres import SuperResConfig


def test_layers_apply_in_order(tmp_path):
    config_file = tmp_path / "recipe.toml"
    config_file.write_text('net = "srvgg_small"\nscale = 2\n[engine]\nsteps = 50\nbatch_size = 4\n')
    config = resolve_config(SuperResConfig, config_file=config_file, overrides=["engine.steps=7", "optim_g.lr=1e-3"])
    assert config.net == "srvgg_small" and config.scale == 2
    assert config.engine.steps == 7 and config.engine.batch_size == 4
    assert config.optim_g.lr == pytest.approx(1e-3)
    assert isinstance(config.engine, EngineConfig)


def test_saved_run_config_is_the_base_of_a_resume():
    base = {"scale": 2, "engine": {"steps": 10, "seed": 3}}
    config = resolve_config(SuperResConfig, base=base, overrides=["engine.steps=20"])
    assert (config.scale, config.engine.steps, config.engine.seed) == (2, 20, 3)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key engine.stepz; valid keys in engine: .*steps"):
        resolve_config(SuperResConfig, overrides=["engine.stepz=3"])
    with pytest.raises(ConfigError, match="unknown config key colour"):
        resolve_config(SuperResConfig, overrides=["colour=1"])


def test_wrong_type_names_the_field():
    with pytest.raises(ConfigError, match="engine.steps: expected int"):
        resolve_config(SuperResConfig, overrides=["engine.steps=fast"])
    with pytest.raises(ConfigError, match="optim_g.betas: expected a list of 2"):
        resolve_config(SuperResConfig, overrides=["optim_g.betas=[0.5]"])


def test_int_widens_to_float_but_bool_is_not_int():
    config = resolve_config(SuperResConfig, overrides=["optim_g.lr=1", "optim_g.betas=[0, 0.9]"])
    assert config.optim_g.lr == 1.0 and config.optim_g.betas == (0.0, 0.9)
    with pytest.raises(ConfigError):
        resolve_config(SuperResConfig, overrides=["engine.steps=true"])


def test_override_values_are_read_as_toml_else_text():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("net=srvgg_small") == (["net"], "srvgg_small")
    assert parse_override('data="/x y"') == (["data"], "/x y")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("engine.steps")


def test_bad_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(SuperResConfig, config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("engine = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(SuperResConfig, config_file=broken)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # warm-up ramps (t+1)/warmup, then the kind's curve over the remaining steps of 100
        (ScheduleConfig(kind="constant", warmup_steps=4), {0: 0.25, 3: 1.0, 50: 1.0, 99: 1.0}),
        (ScheduleConfig(kind="linear", decay_start=50), {0: 1.0, 50: 1.0, 75: 0.5, 100: 0.0}),
        (ScheduleConfig(kind="linear", decay_start=50, min_ratio=0.2), {75: 0.6, 100: 0.2}),
        (ScheduleConfig(kind="cosine", warmup_steps=20), {19: 1.0, 20: 1.0, 60: 0.5, 100: 0.0}),
    ],
)
def test_learning_rate_schedules(schedule, expected):
    factor = lr_factor(schedule, total_steps=100)
    for step, value in expected.items():
        assert factor(step) == pytest.approx(value), step


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of: constant, cosine, linear"):
        lr_factor(ScheduleConfig(kind="exponential"), total_steps=10)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("engine.precision=fp16", "engine.precision: 'fp16' is not one of auto, bf16, fp32"),
        ("engine.device=tpu", "engine.device: 'tpu' is not one of auto, cuda, mps, cpu"),
        ("schedule.kind=step", "schedule.kind: 'step' is not one of constant, linear, cosine"),
        ("stage=adversarial", "stage: 'adversarial' is not one of psnr, perceptual, gan"),
        ("scale=8", "scale: 8 is not one of 2, 3, 4"),
        ("gan.loss=relativistic", "gan.loss: 'relativistic' is not one of"),
        ("gan.penalty=r2", "gan.penalty: 'r2' is not one of none, wgan-gp, dragan, r1"),
        ("gan.real_label=0", r"gan.real_label must be in \(0, 1\]"),
        ("engine.accumulate=0", "engine.accumulate must be at least 1"),
        ("engine.ema_decay=1.5", r"engine.ema_decay must be in \[0, 1\)"),
        ("net=srvgg_huge", "config key net: unknown net 'srvgg_huge'; choose one of: .*srvgg_compact"),
        ("pixel_loss=l3", "config key pixel_loss: unknown pixel loss 'l3'"),
        ("perceptual_criterion=cosine", "config key perceptual_criterion: unknown perceptual criterion 'cosine'; choose one of: charbonnier, direction"),
        ("patch_size=30", "patch_size 30 must be a multiple of scale 4"),
        ("degradation.kind=jpeg", "degradation.kind: 'jpeg' is not one of bicubic, realworld"),
        ("hr_scale_range=[0.5, 1.5]", r"hr_scale_range must be \[low, high\] with 0 < low <= high <= 1"),
    ],
)
def test_values_training_would_refuse_are_refused_when_the_config_resolves(override, message):
    """What `img2img train --dry-run` prints is a config that training accepts."""
    with pytest.raises(ConfigError, match=message):
        resolve_config(SuperResConfig, overrides=[override])


def test_multiscale_hr_is_refused_beside_given_lr_pairs():
    """Shrinking the HR photos would break the pairs of lr_data (a teacher's outputs)."""
    with pytest.raises(ConfigError, match="hr_scale_range resizes HR photos"):
        resolve_config(SuperResConfig, overrides=["hr_scale_range=[0.5, 1.0]", 'lr_data="teacher"'])


def test_a_section_given_in_part_keeps_the_task_defaults_for_the_rest():
    config = resolve_config(SuperResConfig, overrides=["optim_g.weight_decay=0.01", "gan.loss=hinge"])
    assert config.optim_g.lr == pytest.approx(5e-4)  # SuperResConfig's own, not OptimizerConfig's 2e-4
    assert (config.gan.loss, config.gan.weight) == ("hinge", pytest.approx(0.1))

    from img2img.tasks.faces import FacesConfig

    faces = resolve_config(FacesConfig, overrides=["gan.loss=lsgan", "engine.steps=10"])
    assert (faces.gan.penalty, faces.gan.penalty_weight, faces.engine.batch_size) == ("r1", pytest.approx(0.1), 32)


def test_configs_saved_with_flat_gan_and_degradation_keys_still_load():
    """Run folders and checkpoints written before the [gan] and [degradation] sections existed."""
    saved = {
        "gan_loss": "hinge", "gan_weight": 0.05, "penalty": "r1", "penalty_weight": 2.0, "wgan_clip": 0.0,
        "real_label": 0.9, "degradation": "realworld", "degradation_options": {"clean_prob": 0.3},
    }
    config = resolve_config(SuperResConfig, base=saved, overrides=["gan.weight=0.2"])
    assert (config.gan.loss, config.gan.weight, config.gan.penalty, config.gan.penalty_weight) == ("hinge", 0.2, "r1", 2.0)
    assert config.gan.real_label == pytest.approx(0.9)
    assert (config.degradation.kind, config.degradation.options) == ("realworld", {"clean_prob": 0.3})


def test_the_schedule_menu_names_every_registered_schedule():
    import typing

    from img2img.engine.schedules import SCHEDULES

    assert sorted(typing.get_args(typing.get_type_hints(ScheduleConfig)["kind"])) == SCHEDULES.names()


def test_the_gan_menus_name_every_registered_loss_and_penalty():
    import typing

    from img2img.engine.config import GanConfig
    from img2img.losses import ADVERSARIAL_LOSSES, PENALTIES

    hints = typing.get_type_hints(GanConfig)
    assert sorted(typing.get_args(hints["loss"])) == ADVERSARIAL_LOSSES.names()
    assert sorted(typing.get_args(hints["penalty"])) == sorted(["none", *PENALTIES.names()])


def test_an_override_with_a_flat_gan_key_still_wins_over_the_file(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('stage = "gan"\n[gan]\nloss = "hinge"\nweight = 0.05\n[degradation]\nkind = "realworld"\n')
    config = resolve_config(SuperResConfig, config_file=recipe, overrides=["gan_weight=0.2", "degradation=bicubic"])
    assert (config.gan.loss, config.gan.weight, config.degradation.kind) == ("hinge", 0.2, "bicubic")
