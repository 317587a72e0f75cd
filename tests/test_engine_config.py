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
