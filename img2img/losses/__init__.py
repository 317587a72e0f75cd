"""Training losses: adversarial objectives, discriminator regularisers, pixel, perceptual
and style losses. Each returns an unweighted scalar; the task weights and names its terms."""

from img2img.losses.adversarial import (
    ADVERSARIAL_LOSSES,
    AdversarialLoss,
    HingeLoss,
    LSGANLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    build_adversarial_loss,
    feature_matching_loss,
)
from img2img.losses.perceptual import (
    DIRECTION_LAYERS,
    FEATURE_CRITERIA,
    STYLE_LAYERS,
    PerceptualLoss,
    StyleLoss,
    VGG19Features,
    feature_direction_distance,
    gram_matrix,
)
from img2img.losses.pixel import (
    PIXEL_LOSSES,
    charbonnier_loss,
    grid_loss,
    l1_loss,
    l2_loss,
    phase_deviation,
    total_variation,
)
from img2img.losses.regularizers import (
    PENALTIES,
    clip_weights,
    dragan_penalty,
    r1_penalty,
    wgan_gp_penalty,
)
from img2img.losses.vgg import (
    CAFFE_CONVENTION,
    TORCHVISION_CONVENTION,
    VGG19_LAYERS,
    InputConvention,
    VGG19Weights,
    load_vgg19_weights,
)

__all__ = [
    "ADVERSARIAL_LOSSES",
    "AdversarialLoss",
    "CAFFE_CONVENTION",
    "HingeLoss",
    "InputConvention",
    "LSGANLoss",
    "MinimaxLoss",
    "NonSaturatingLoss",
    "PENALTIES",
    "PIXEL_LOSSES",
    "PerceptualLoss",
    "STYLE_LAYERS",
    "StyleLoss",
    "TORCHVISION_CONVENTION",
    "VGG19Features",
    "VGG19Weights",
    "VGG19_LAYERS",
    "WassersteinLoss",
    "build_adversarial_loss",
    "charbonnier_loss",
    "clip_weights",
    "dragan_penalty",
    "feature_matching_loss",
    "gram_matrix",
    "grid_loss",
    "l1_loss",
    "l2_loss",
    "load_vgg19_weights",
    "phase_deviation",
    "r1_penalty",
    "total_variation",
    "wgan_gp_penalty",
]
