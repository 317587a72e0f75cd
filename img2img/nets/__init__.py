"""Generators and discriminators, found by name.

Importing this package registers every architecture and preset in `NETS`:

- super-resolution generators (input [0, 1]): `SRVGGNet` (srvgg_compact, srvgg_small,
  srvgg_tiny), `RRDBNet` (rrdb_esrgan, rrdb_small, rrdb_tiny);
- translation generators (input and tanh output in [-1, 1]): `UNetGenerator` (unet_128,
  unet_256, unet_tiny), `ResnetGenerator` (resnet_6blocks, resnet_9blocks, resnet_tiny, and the
  fast style-transfer nets resnet_style and resnet_style_small);
- inpainting generator (photo in [-1, 1] plus a {0, 1} hole mask, tanh output): `InpaintUNet`
  (inpaint_unet, inpaint_unet_tiny);
- arbitrary style transfer (content and style in [0, 1]): `AdaINNet` (adain, adain_tiny), a
  frozen VGG19 encoder, AdaIN and a trained decoder;
- CycleGAN pairs: `CycleGenerators` (G: A -> B, F: B -> A) and `CycleDiscriminators` (D_Y,
  D_X), each one module for the engine;
- noise-to-image generators (z ~ N(0, I), optional class labels, tanh output in [-1, 1]) and
  their discriminators (logits (B, 1)): `DCGANGenerator`/`DCGANDiscriminator` (dcgan_generator,
  dcgan_discriminator, *_tiny) and `ResGANGenerator`/`ResGANDiscriminator` (resgan_generator,
  resgan_discriminator, *_tiny), for face generation;
- discriminators (raw logits): `PatchGAN` (patchgan_70, patchgan_tiny), `PixelGAN` (pixelgan),
  `MultiScalePatchGAN` (multiscale_patchgan, multiscale_patchgan_tiny), `UNetDiscriminator`
  (unet_discriminator, unet_discriminator_tiny).

Example:
    >>> import torch
    >>> from img2img.nets import build_net
    >>> net = build_net("srvgg_tiny", scale=2)
    >>> net(torch.rand(1, 3, 7, 5)).shape
    torch.Size([1, 3, 14, 10])
"""

from img2img.nets import adain, cycle, discriminators, gan, inpaint, resnet, rrdb, srvgg, unet
from img2img.nets.registry import NETS, build_net, rebuild_net

__all__ = ["NETS", "adain", "build_net", "cycle", "discriminators", "gan", "inpaint", "rebuild_net", "resnet", "rrdb", "srvgg", "unet"]
