import pytest
import torch

from img2img.engine.device import resolve_device
from img2img.errors import ConfigError


def test_named_devices_resolve_and_auto_picks_one() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")


@pytest.mark.parametrize("option", ["engine.device", "--device"])
def test_errors_name_the_option_the_device_came_from(option: str) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be auto, cuda, mps or cpu, not 'tpu'"):
        resolve_device("tpu", option=option)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=f"{option}=cuda but no CUDA GPU"):
            resolve_device("cuda", option=option)
