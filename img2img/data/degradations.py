"""Degradations that turn high-resolution batches into low-resolution inputs.

They run on the batch, on whatever device it is on, after the data loader: a (B, 3, H, W)
batch in [0, 1] becomes (B, 3, H/scale, W/scale) in [0, 1].

- ``bicubic``: the classic super-resolution benchmark degradation (``bicubic_downscale``).
- ``realworld``: the Real-ESRGAN pipeline (Wang et al., "Real-ESRGAN: Training Real-World Blind
  Super-Resolution with Pure Synthetic Data", ICCVW 2021): blur, resize, noise, JPEG, each with
  its own random parameters for every sample, and with ``second_order_prob`` a second pass of
  the same kinds (an image that was saved, shared and saved again).

Both ``bicubic_downscale`` and ``bicubic_upscale`` are
``torch.nn.functional.interpolate(mode="bicubic", antialias=True, align_corners=False)``.
With ``antialias=True`` PyTorch uses the Keys cubic kernel with a = -0.5 (the kernel of MATLAB's
``imresize`` and Pillow's ``BICUBIC``) and, when shrinking, stretches it by the scale so it
low-passes before sampling; the results agree with Pillow's ``Image.resize(..., BICUBIC)`` to
within one 8-bit level on smooth images. The "bicubic" validation baseline upscales with
``bicubic_upscale``, so baseline and degradation use the same kernel.
"""

from __future__ import annotations

import math
import zlib

import kornia
import torch
import torch.nn.functional as F

from img2img.registry import Registry

DEGRADATIONS = Registry("degradation")

RESIZE_MODES = ("area", "bilinear", "bicubic", "nearest")


def _check_batch(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be a (B, 3, H, W) batch of RGB images, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got {x.dtype}")


def _check_divisible(hr: torch.Tensor, scale: int) -> None:
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of the scale {scale}; crop the "
            "high-resolution images to a multiple of it first"
        )


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscaling by an integer factor.

    Args:
        hr: (B, 3, H, W) in [0, 1], H and W multiples of ``scale``.
        scale: the downscaling factor.

    Returns:
        (B, 3, H/scale, W/scale) in [0, 1] (the kernel's overshoot is clamped away).

    Example:
        >>> bicubic_downscale(torch.rand(2, 3, 64, 64), 4).shape
        torch.Size([2, 3, 16, 16])
    """
    _check_batch(hr, "hr")
    _check_divisible(hr, scale)
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    lr = F.interpolate(hr, size=size, mode="bicubic", antialias=True, align_corners=False)
    return lr.clamp(0.0, 1.0)


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upscaling by an integer factor: the baseline every super-resolution model must beat.

    Same kernel as ``bicubic_downscale`` (see the module docstring).

    Args:
        lr: (B, 3, h, w) in [0, 1].
        scale: the upscaling factor.

    Returns:
        (B, 3, h*scale, w*scale) in [0, 1].
    """
    _check_batch(lr, "lr")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    size = (lr.shape[-2] * scale, lr.shape[-1] * scale)
    sr = F.interpolate(lr, size=size, mode="bicubic", antialias=True, align_corners=False)
    return sr.clamp(0.0, 1.0)


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Where random numbers are drawn: a generator only draws on its own device."""
    return generator.device if generator is not None else device


def _uniform(
    low: float, high: float, n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(n,) uniform draws, made on the generator's device and moved to ``device``."""
    draws = torch.rand(n, generator=generator, device=_draw_device(generator, device))
    return (low + (high - low) * draws).to(device)


def _bernoulli(
    p: float, n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(n,) bool: which samples take a step of probability ``p``."""
    return _uniform(0.0, 1.0, n, generator, device) < p


def gaussian_kernels(
    sigma_x: torch.Tensor, sigma_y: torch.Tensor, angle: torch.Tensor, kernel_size: int
) -> torch.Tensor:
    """Normalised anisotropic Gaussian kernels, one per sample.

    Args:
        sigma_x, sigma_y: (N,) standard deviations in pixels along the kernel's own axes.
        angle: (N,) rotation of those axes in radians.
        kernel_size: odd side of the kernels.

    Returns:
        (N, kernel_size, kernel_size), each summing to 1.
    """
    half = kernel_size // 2
    grid = torch.arange(-half, half + 1, device=sigma_x.device, dtype=sigma_x.dtype)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    # Coordinates in the frame of each kernel's principal axes.
    u = cos * x + sin * y
    v = -sin * x + cos * y
    exponent = (u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2
    kernels = torch.exp(-0.5 * exponent)
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    # align_corners only exists for the interpolating modes.
    corners = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x, size=size, mode=mode, **corners)


class BicubicDegradation:
    """The "bicubic" degradation: ``bicubic_downscale`` by ``scale``, no randomness.

    ``__call__(hr, generator=None)`` maps (B, 3, H, W) in [0, 1] to (B, 3, H/scale, W/scale).
    """

    def __init__(self, *, scale: int) -> None:
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = scale
        self.hparams = {"scale": scale}

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return bicubic_downscale(hr, self.scale)


class RealWorldDegradation:
    """A Real-ESRGAN-like degradation: blur, resize, noise, JPEG (twice, for some samples), 8-bit
    rounding.

    Every step is taken or skipped for each sample independently, with its own random
    parameters:

    1. blur (probability ``blur_prob``): a ``kernel_size`` Gaussian kernel with standard
       deviation in ``blur_sigma``; with probability ``anisotropic_prob`` its two axes get
       different deviations and a random rotation (an out-of-focus or shaken camera).
    2. resize to 1/scale with a mode drawn from ``resize_modes``. With probability
       ``intermediate_prob`` the image first goes to an intermediate size, ``intermediate_range``
       times the final one, with another random mode, which mixes blur and aliasing. Bilinear
       and bicubic run without antialiasing, as in Real-ESRGAN, so aliasing is part of what the
       model sees; "area" is the antialiased choice.
    3. noise (probability ``noise_prob``): Poisson (shot) noise with probability
       ``poisson_prob``, otherwise Gaussian noise with standard deviation in
       ``gaussian_noise_sigma``; with probability ``gray_noise_prob`` the same noise goes to all
       three channels (luminance noise) instead of each its own (colour noise). Poisson noise
       treats the image as counts of 255 photons per unit, scaled by a factor in
       ``poisson_scale``.
    4. JPEG (probability ``jpeg_prob``): compression at a quality in ``jpeg_quality`` with
       ``kornia.enhance.jpeg_codec_differentiable``.
    5. second order (probability ``second_order_prob``): the image at its final size goes
       through blur again (sigma in ``second_blur_sigma``, the other blur settings as above),
       a resize by a factor in ``second_resize_range`` with a random mode, noise as in step 3,
       then, in random order, JPEG as in step 4 and the resize back to the final size (a
       photo edited and re-saved, or a thumbnail blown up again).
    6. clamp to [0, 1] and round to 8-bit levels, as a saved image would be.

    With probability ``clean_prob`` a sample skips steps 1 to 5 and is only downscaled as by
    ``bicubic_downscale``: a model fine-tuned on degraded LR alone forgets clean LR (it
    smooths detail it takes for noise), and a share of clean samples keeps it. The draw for it
    comes after all the others, so ``clean_prob=0`` gives the same output as before it existed.

    Random draws come from the ``generator`` given to ``__call__`` (or torch's global one); a
    generator on the batch's device keeps the noise off the CPU. The same generator state gives
    the same output.

    ``__call__(hr, generator=None)`` maps (B, 3, H, W) in [0, 1], H and W multiples of
    ``scale``, to (B, 3, H/scale, W/scale) in [0, 1]. It runs without gradients.

    Example:
        >>> degrade = RealWorldDegradation(scale=4)
        >>> degrade(torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        *,
        scale: int,
        blur_prob: float = 0.8,
        blur_sigma: tuple[float, float] = (0.2, 3.0),
        anisotropic_prob: float = 0.5,
        kernel_size: int = 21,
        resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic"),
        intermediate_prob: float = 0.5,
        intermediate_range: tuple[float, float] = (0.5, 2.0),
        noise_prob: float = 0.7,
        gaussian_noise_sigma: tuple[float, float] = (1 / 255, 25 / 255),
        poisson_prob: float = 0.4,
        poisson_scale: tuple[float, float] = (0.05, 2.0),
        gray_noise_prob: float = 0.4,
        jpeg_prob: float = 0.8,
        jpeg_quality: tuple[float, float] = (30.0, 95.0),
        second_order_prob: float = 0.0,
        second_blur_sigma: tuple[float, float] = (0.2, 1.5),
        second_resize_range: tuple[float, float] = (0.3, 1.2),
        clean_prob: float = 0.0,
    ) -> None:
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        probabilities = {
            "blur_prob": blur_prob,
            "anisotropic_prob": anisotropic_prob,
            "intermediate_prob": intermediate_prob,
            "noise_prob": noise_prob,
            "poisson_prob": poisson_prob,
            "gray_noise_prob": gray_noise_prob,
            "jpeg_prob": jpeg_prob,
            "second_order_prob": second_order_prob,
            "clean_prob": clean_prob,
        }
        for name, p in probabilities.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        ranges = {
            "blur_sigma": blur_sigma,
            "intermediate_range": intermediate_range,
            "gaussian_noise_sigma": gaussian_noise_sigma,
            "poisson_scale": poisson_scale,
            "jpeg_quality": jpeg_quality,
            "second_blur_sigma": second_blur_sigma,
            "second_resize_range": second_resize_range,
        }
        for name, (low, high) in ranges.items():
            if not 0.0 < low <= high:
                raise ValueError(
                    f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}"
                )
        if jpeg_quality[1] > 100:
            raise ValueError(f"jpeg_quality must lie in (0, 100], got {jpeg_quality}")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least 3, got {kernel_size}")
        unknown = [m for m in resize_modes if m not in RESIZE_MODES]
        if not resize_modes or unknown:
            raise ValueError(
                f"resize_modes must be a non-empty choice from {RESIZE_MODES}, got {resize_modes}"
            )
        self.scale = scale
        self.blur_prob = blur_prob
        self.blur_sigma = tuple(blur_sigma)
        self.anisotropic_prob = anisotropic_prob
        self.kernel_size = kernel_size
        self.resize_modes = tuple(resize_modes)
        self.intermediate_prob = intermediate_prob
        self.intermediate_range = tuple(intermediate_range)
        self.noise_prob = noise_prob
        self.gaussian_noise_sigma = tuple(gaussian_noise_sigma)
        self.poisson_prob = poisson_prob
        self.poisson_scale = tuple(poisson_scale)
        self.gray_noise_prob = gray_noise_prob
        self.jpeg_prob = jpeg_prob
        self.jpeg_quality = tuple(jpeg_quality)
        self.second_order_prob = second_order_prob
        self.second_blur_sigma = tuple(second_blur_sigma)
        self.second_resize_range = tuple(second_resize_range)
        self.clean_prob = clean_prob
        # Every constructor argument, so RealWorldDegradation(**hparams) rebuilds this one.
        self.hparams = {
            "scale": scale,
            "kernel_size": kernel_size,
            "resize_modes": self.resize_modes,
            **probabilities,
            **{name: tuple(value) for name, value in ranges.items()},
        }

    @torch.no_grad()
    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(hr, "hr")
        _check_divisible(hr, self.scale)
        x = self._blur(hr.float(), generator, self.blur_sigma)
        x = self._resize_down(x, generator)
        x = self._noise(x, generator)
        x = self._jpeg(x, generator)
        if self.second_order_prob > 0.0:
            x = self._second_order(x, generator)
        if self.clean_prob > 0.0:
            clean = _bernoulli(self.clean_prob, x.shape[0], generator, x.device)
            if clean.any():
                x = torch.where(clean[:, None, None, None], bicubic_downscale(hr.float(), self.scale), x)
        return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0

    def _second_order(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Step 5 on the samples drawn for it; (B, 3, h, w) -> (B, 3, h, w)."""
        n, device = x.shape[0], x.device
        height, width = x.shape[-2:]
        take = _bernoulli(self.second_order_prob, n, generator, device)
        factors = _uniform(*self.second_resize_range, n, generator, device).tolist()
        where = _draw_device(generator, device)
        modes = torch.randint(len(self.resize_modes), (2, n), generator=generator, device=where).tolist()
        jpeg_first = _bernoulli(0.5, n, generator, device).tolist()
        # One filter call for the batch; only the samples taken use it.
        blurred = self._blur(x, generator, self.second_blur_sigma)
        if not take.any():
            return x
        out = x.clone()
        for i in torch.nonzero(take).flatten().tolist():
            size = (max(1, round(height * factors[i])), max(1, round(width * factors[i])))
            sample = self._noise(_resize(blurred[i : i + 1], size, self.resize_modes[modes[0][i]]), generator)
            if jpeg_first[i]:
                sample = _resize(self._jpeg(sample, generator), (height, width), self.resize_modes[modes[1][i]])
            else:
                sample = self._jpeg(_resize(sample, (height, width), self.resize_modes[modes[1][i]]), generator)
            out[i : i + 1] = sample
        return out

    def _blur(
        self, x: torch.Tensor, generator: torch.Generator | None, sigma_range: tuple[float, float]
    ) -> torch.Tensor:
        n, device = x.shape[0], x.device
        take = _bernoulli(self.blur_prob, n, generator, device)
        sigma_x = _uniform(*sigma_range, n, generator, device)
        sigma_y = _uniform(*sigma_range, n, generator, device)
        angle = _uniform(0.0, math.pi, n, generator, device)
        isotropic = ~_bernoulli(self.anisotropic_prob, n, generator, device)
        sigma_y = torch.where(isotropic, sigma_x, sigma_y)
        angle = torch.where(isotropic, torch.zeros_like(angle), angle)
        if not take.any():
            return x
        kernels = gaussian_kernels(sigma_x[take], sigma_y[take], angle[take], self.kernel_size)
        out = x.clone()
        out[take] = kornia.filters.filter2d(x[take], kernels.to(x.dtype), border_type="reflect")
        return out

    def _resize_down(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, device = x.shape[0], x.device
        height, width = x.shape[-2] // self.scale, x.shape[-1] // self.scale
        where = _draw_device(generator, device)
        modes = torch.randint(len(self.resize_modes), (2, n), generator=generator, device=where)
        modes = modes.tolist()
        via = _bernoulli(self.intermediate_prob, n, generator, device).tolist()
        factors = _uniform(*self.intermediate_range, n, generator, device).tolist()
        out = []
        # Each sample has its own intermediate size, so they are resized one at a time.
        for i in range(n):
            sample = x[i : i + 1]
            if via[i]:
                size = (max(1, round(height * factors[i])), max(1, round(width * factors[i])))
                sample = _resize(sample, size, self.resize_modes[modes[0][i]])
            out.append(_resize(sample, (height, width), self.resize_modes[modes[1][i]]))
        return torch.cat(out)

    def _noise(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, device = x.shape[0], x.device
        take = _bernoulli(self.noise_prob, n, generator, device)
        poisson = (_bernoulli(self.poisson_prob, n, generator, device) & take)[:, None, None, None]
        gaussian = take[:, None, None, None] & ~poisson
        gray = _bernoulli(self.gray_noise_prob, n, generator, device)[:, None, None, None]
        sigma = _uniform(*self.gaussian_noise_sigma, n, generator, device)[:, None, None, None]
        strength = _uniform(*self.poisson_scale, n, generator, device)[:, None, None, None]
        where = _draw_device(generator, device)
        noise = torch.zeros_like(x)
        if gaussian.any():
            draws = torch.randn(x.shape, generator=generator, device=where).to(device)
            noise = torch.where(gaussian, draws * sigma, noise)
        if poisson.any():
            clean = x.clamp(0.0, 1.0)
            # Grey shot noise is drawn on the luminance (in channel 0 of `base`).
            base = torch.where(gray, kornia.color.rgb_to_grayscale(clean).expand_as(clean), clean)
            counts = torch.poisson((base * 255.0).to(where), generator=generator).to(device)
            noise = torch.where(poisson, (counts / 255.0 - base) * strength, noise)
        # Grey noise: channel 0's noise for all three channels.
        noise = torch.where(gray, noise[:, :1].expand_as(noise), noise)
        return x + noise

    def _jpeg(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, device = x.shape[0], x.device
        take = _bernoulli(self.jpeg_prob, n, generator, device)
        quality = _uniform(*self.jpeg_quality, n, generator, device)
        if not take.any():
            return x
        out = x.clamp(0.0, 1.0)
        out[take] = kornia.enhance.jpeg_codec_differentiable(out[take], quality[take].to(x.dtype))
        return out


# The real-world evaluation protocol: Real-ESRGAN-like defaults, half the images degraded twice.
PROTOCOL_SECOND_ORDER_PROB = 0.5


def protocol_lr(hr: torch.Tensor, scale: int, name: str) -> torch.Tensor:
    """The real-world evaluation protocol's LR of one held-out image, the same in every run.

    `RealWorldDegradation` with its defaults and a second pass for half the images
    (`PROTOCOL_SECOND_ORDER_PROB`), drawn from a generator seeded by the CRC-32 of `name` (the
    image's relative path), so validation during training, `img2img eval` and the peer
    benchmark all score the same LR for the same photo.

    Args:
        hr: (1, 3, H, W) float in [0, 1], H and W multiples of `scale`.
        scale: the downscaling factor.
        name: the image's name, which seeds the draws.

    Returns:
        (1, 3, H / scale, W / scale) float32 in [0, 1], on 8-bit levels, on `hr`'s device.
    """
    degrade = RealWorldDegradation(scale=scale, second_order_prob=PROTOCOL_SECOND_ORDER_PROB)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8", "surrogateescape")))
    return degrade(hr.cpu(), generator).to(hr.device)


@DEGRADATIONS.register("bicubic")
def bicubic(*, scale: int) -> BicubicDegradation:
    """Plain antialiased bicubic downscaling."""
    return BicubicDegradation(scale=scale)


@DEGRADATIONS.register("realworld")
def realworld(*, scale: int, **options: object) -> RealWorldDegradation:
    """Random blur, resize, noise and JPEG; ``options`` are ``RealWorldDegradation`` arguments."""
    return RealWorldDegradation(scale=scale, **options)


def build_degradation(
    name: str, *, scale: int, **options: object
) -> BicubicDegradation | RealWorldDegradation:
    """Looks ``name`` up in ``DEGRADATIONS`` and builds it; the result maps
    ``(hr, generator=None) -> lr``.

    Example:
        >>> degrade = build_degradation("bicubic", scale=2)
        >>> degrade(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """
    return DEGRADATIONS.get(name)(scale=scale, **options)
