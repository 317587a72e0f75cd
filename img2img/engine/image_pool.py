"""A history of generated images for discriminator updates (Shrivastava et al., 2017).

CycleGAN trains each discriminator on a mix of the newest fakes and fakes from earlier steps, so
that the discriminator does not forget what the generator used to produce and the two do not
oscillate. The pool keeps up to `size` images; for each incoming image, while the pool is not
full it is stored and returned; afterwards, with probability 1/2 it is returned as is, otherwise
it replaces a random stored image and the stored one is returned.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    """Up to `size` earlier fakes; `size` 0 turns the pool off (query returns its input).

    The pool draws from its own generator (seeded by `seed`); the generator's state and the
    stored images are its `state_dict`, so a resumed run queries exactly what an uninterrupted
    one would.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: Tensor) -> Tensor:
        """images (B, C, H, W), detached fakes -> (B, C, H, W): a mix of them and stored ones."""
        if self.size == 0:
            return images
        chosen = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                chosen.append(image)
            else:
                index = int(torch.randint(self.size, (), generator=self.generator).item())
                chosen.append(self.images[index].clone())
                self.images[index] = image.clone()
        return torch.cat(chosen)

    def state_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "images": [image.cpu() for image in self.images],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, object], device: torch.device | None = None) -> None:
        self.size = int(state["size"])
        self.images = [image.to(device) if device is not None else image for image in state["images"]]
        self.generator.set_state(state["generator"])
