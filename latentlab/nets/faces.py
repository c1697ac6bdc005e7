"""Networks for 32, 64 and 128 px face images (CelebA-style, RGB, channels first).

Two families, both ending at a 4x4 feature map, so the same conventions as :mod:`latentlab.nets`
hold: encoders return a :class:`~latentlab.distributions.DiagonalGaussian` through a
:class:`~latentlab.nets.GaussianHead` and accept an optional ``condition`` concatenated to the
flattened features; decoders take ``(z, condition=None)`` and return *raw* likelihood
parameters (no sigmoid: the model's likelihood reads them as Bernoulli logits or as
Gaussian/Laplace means).

Residual nets (IntroVAE, Huang et al. 2018; used by IntroVAC, Maggipinto et al.)
---------------------------------------------------------------------------------
IntroVAC's 128 px encoder: a 5x5 stem and residual blocks with 32, 64, 128, 256, 512 channels,
each followed by 2x2 average pooling, then a linear layer to the mean and log-variance
(latent 256 in the paper). The decoder mirrors it with nearest-neighbour upsampling. Stage
shapes of :class:`ResidualEncoder` (default widths, ``C x H x W`` after each stage)::

    128 px: 3x128x128 -> stem 32x64x64 -> 64x32x32 -> 128x16x16 -> 256x8x8 -> 512x4x4 -> block 512x4x4
     64 px: 3x64x64   -> stem 64x32x32 -> 128x16x16 -> 256x8x8 -> 512x4x4 -> block 512x4x4
     32 px: 3x32x32   -> stem 128x16x16 -> 256x8x8 -> 512x4x4 -> block 512x4x4

There are log2(image_size / 4) pooling stages; the default widths are the *last* that many of
(32, 64, 128, 256, 512), so the 4x4 bottleneck always has 512 channels and the flattened
features are 8192 wide. :class:`ResidualDecoder` runs the same shapes backwards (each
resolution gets the encoder's width there), adds a block at full resolution where the encoder
has its stem (128 px: 512x4x4 -> 256x8x8 -> ... -> 32x64x64 -> 32x128x128), and ends in a 5x5
convolution to 3 channels.

Why average pooling and nearest upsampling (the IntroVAE design) instead of strided and
transposed convolutions: a stride-2 transposed convolution covers the output unevenly and
leaves checkerboard artifacts (Odena et al. 2016, "Deconvolution and checkerboard
artifacts"); upsampling first and then applying an ordinary convolution spreads every input
pixel evenly. Average pooling is the matching smooth (low-pass) downsampler, and keeping all
convolutions at stride 1 lets the same residual block serve both directions.

DCGAN nets (Radford et al. 2015; used by Creswell et al.'s information factorization paper)
--------------------------------------------------------------------------------------------
The ablation study of "Conditional autoencoders with adversarial information factorization"
(and the author's code, ToniCreswell/attribute-cVAEGAN: 64x64 CelebA, nz=100) uses DCGAN
nets. :class:`DCGANEncoder`: stride-2 4x4 convolutions, BatchNorm on all but the first,
LeakyReLU(0.2), down to 4x4 (64 px: 64x32x32 -> 128x16x16 -> 256x8x8 -> 512x4x4).
:class:`DCGANDecoder`: a linear map to 512x4x4 (equivalent to DCGAN's 4x4 transposed
convolution from a 1x1 input), then stride-2 4x4 transposed convolutions with BatchNorm and
ReLU, the last one raw.

Discriminator and classifier
----------------------------
:class:`Discriminator` (IFcVAE-GAN's real/fake critic) and :class:`FaceClassifier` (the
independent attribute judge) reuse either trunk and add a linear head; both return logits.
The discriminator's first layer has no BatchNorm, following DCGAN: normalising the raw
pixels of a batch would remove the batch statistics (brightness, contrast) that tell real
from generated images, and Radford et al. report that BatchNorm on the discriminator input
(and the generator output) made training oscillate and become unstable.

All modules accept ``torch.channels_last`` inputs and run under
``torch.autocast("cpu", dtype=torch.bfloat16)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_face_image_size, check_features, check_images
from ..distributions import DiagonalGaussian
from .small import GaussianHead, _with_condition

__all__ = [
    "WIDTHS",
    "CLASSIFIER_WIDTHS",
    "KINDS",
    "num_stages",
    "default_channels",
    "ResidualBlock",
    "ResidualTrunk",
    "DCGANTrunk",
    "ResidualEncoder",
    "ResidualDecoder",
    "DCGANEncoder",
    "DCGANDecoder",
    "Discriminator",
    "FaceClassifier",
    "face_networks",
]

#: IntroVAC's widths at 128 px; smaller images use the last ones (the bottleneck stays 512 wide)
WIDTHS = (32, 64, 128, 256, 512)
#: half widths: the attribute classifier must train on a CPU
CLASSIFIER_WIDTHS = (16, 32, 64, 128, 256)
KINDS = ("residual", "dcgan")
BOTTLENECK = 4  # every trunk stops at a 4x4 feature map


# ----------------------------------------------------------------------------- validation


def _check_kind(kind: str, who: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"{who}: unknown kind {kind!r}; use one of {', '.join(map(repr, KINDS))}")
    return kind


def _check_positive(value: object, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")
    return value


def _check_condition_dim(value: object, who: str, name: str = "condition_dim") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{who}: {name} must be a non-negative integer (0 for no condition), got {value!r}")
    return value


def num_stages(image_size: int) -> int:
    """Halvings from ``image_size`` down to the 4x4 bottleneck: 3, 4, 5 for 32, 64, 128 px."""
    image_size = check_face_image_size(image_size, "num_stages")
    return (image_size // BOTTLENECK).bit_length() - 1


def default_channels(image_size: int, widths: Sequence[int] = WIDTHS) -> tuple[int, ...]:
    """The last ``num_stages(image_size)`` of ``widths``: one width per downsampling stage."""
    return tuple(widths[-num_stages(image_size):])


def _resolve_channels(
    image_size: int, channels: Sequence[int] | None, who: str, widths: Sequence[int] = WIDTHS
) -> tuple[int, ...]:
    image_size = check_face_image_size(image_size, who)
    if channels is None:
        return default_channels(image_size, widths)
    channels = tuple(channels)
    n = num_stages(image_size)
    if len(channels) != n:
        raise ValueError(
            f"{who} at {image_size} px needs {n} channel widths (one per halving, "
            f"{image_size} -> {BOTTLENECK}), got {len(channels)}: {channels}; "
            f"the default is {default_channels(image_size, widths)}"
        )
    for width in channels:
        _check_positive(width, "every channel width", who)
    return channels


# ----------------------------------------------------------------------------- building blocks


class ResidualBlock(nn.Module):
    """IntroVAE's residual block: conv3x3-BN-LeakyReLU-conv3x3-BN-LeakyReLU, plus a skip.

    ``activate_before_skip=True`` (default) is the order of the IntroVAE and IntroVAC authors'
    code: the last LeakyReLU(0.2) acts on the residual branch, *then* the skip is added, so
    ``out = skip(x) + act(BN(conv2(...)))`` (the papers draw the block without saying). ``False``
    gives the classic ResNet order, ``act(skip(x) + BN(conv2(...)))``: the same parameters but
    another function (up to 0.8 apart per output in train mode), so weights trained in one order
    do not transfer to the other. The skip is the identity when the width is unchanged and a 1x1
    convolution otherwise. ``scale`` sets the inner width, ``int(out_channels * scale)`` (1.0 in
    the papers). Convolutions before BatchNorm carry no bias: BatchNorm's shift replaces it.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: float = 1.0, activate_before_skip: bool = True):
        super().__init__()
        mid_channels = max(1, int(out_channels * scale))
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.act1 = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.skip = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )
        self.act2 = nn.LeakyReLU(0.2)
        self.activate_before_skip = activate_before_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.activate_before_skip:
            return self.skip(x) + self.act2(h)
        return self.act2(h + self.skip(x))


class ResidualTrunk(nn.Module):
    """Image -> (N, channels[-1], 4, 4): the residual encoder without its head.

    ``stages[0]`` is the stem (5x5 conv, BN, LeakyReLU, 2x2 average pool); each later stage
    is a residual block that changes the width, then a 2x2 average pool; ``final`` is a
    width-preserving residual block at 4x4. ``first_norm=False`` drops the stem's BatchNorm
    (the discriminator's first layer, see the module docstring).
    """

    def __init__(self, image_size: int, channels: Sequence[int], in_channels: int = 3, first_norm: bool = True):
        super().__init__()
        channels = _resolve_channels(image_size, channels, "ResidualTrunk")
        stem: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 5, padding=2, bias=not first_norm)]
        if first_norm:
            stem.append(nn.BatchNorm2d(channels[0]))
        stem += [nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
        stages = [nn.Sequential(*stem)]
        for width_in, width_out in zip(channels[:-1], channels[1:]):
            stages.append(nn.Sequential(ResidualBlock(width_in, width_out), nn.AvgPool2d(2)))
        self.stages = nn.ModuleList(stages)
        self.final = ResidualBlock(channels[-1], channels[-1])
        self.channels = channels
        self.feature_dim = channels[-1] * BOTTLENECK * BOTTLENECK

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.final(x)


class DCGANTrunk(nn.Module):
    """Image -> (N, channels[-1], 4, 4) with stride-2 4x4 convolutions (DCGAN discriminator body).

    BatchNorm and LeakyReLU(0.2) after every convolution but the first, which has no
    BatchNorm (DCGAN practice; the first conv keeps its bias instead).
    """

    def __init__(self, image_size: int, channels: Sequence[int], in_channels: int = 3):
        super().__init__()
        channels = _resolve_channels(image_size, channels, "DCGANTrunk")
        stages = [nn.Sequential(nn.Conv2d(in_channels, channels[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2))]
        for width_in, width_out in zip(channels[:-1], channels[1:]):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(width_in, width_out, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width_out),
                    nn.LeakyReLU(0.2),
                )
            )
        self.stages = nn.ModuleList(stages)
        self.channels = channels
        self.feature_dim = channels[-1] * BOTTLENECK * BOTTLENECK

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


def _make_trunk(
    kind: str, image_size: int, channels: Sequence[int], in_channels: int, first_norm: bool = True
) -> nn.Module:
    if kind == "residual":
        return ResidualTrunk(image_size, channels, in_channels, first_norm=first_norm)
    return DCGANTrunk(image_size, channels, in_channels)  # never normalises its first layer


# ----------------------------------------------------------------------------- encoders


class _TrunkEncoder(nn.Module):
    """q(z | x [, condition]): trunk, flatten, optional condition, Gaussian head."""

    trunk: nn.Module

    def _build_head(self, image_size: int, in_channels: int, latent_dim: int, condition_dim: int) -> None:
        _check_condition_dim(condition_dim, type(self).__name__)
        self.image_shape = (in_channels, image_size, image_size)
        self.latent_dim, self.condition_dim = latent_dim, condition_dim
        self.channels = self.trunk.channels
        self.feature_dim = self.trunk.feature_dim
        self.head = GaussianHead(self.feature_dim + condition_dim, latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened 4x4 bottleneck features (N, feature_dim), before the head and the condition.

        IFcVAE-GAN's label head reads these; the FID fallback uses them as an embedding.
        """
        return self.trunk(check_images(x, self.image_shape)).flatten(1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> DiagonalGaussian:
        return self.head(_with_condition(self.features(x), condition, self.condition_dim))


class ResidualEncoder(_TrunkEncoder):
    """IntroVAE/IntroVAC residual encoder: x (N, in_channels, S, S) -> DiagonalGaussian(latent_dim).

    ``channels``: one width per pooling stage, log2(S/4) of them; default the last ones of
    (32, 64, 128, 256, 512). IntroVAC: 128 px, latent 256.
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int,
        channels: Sequence[int] | None = None,
        in_channels: int = 3,
        condition_dim: int = 0,
    ):
        super().__init__()
        who = "ResidualEncoder"
        _check_positive(latent_dim, "latent_dim", who)
        _check_positive(in_channels, "in_channels", who)
        self.trunk = ResidualTrunk(image_size, _resolve_channels(image_size, channels, who), in_channels)
        self._build_head(image_size, in_channels, latent_dim, condition_dim)


class DCGANEncoder(_TrunkEncoder):
    """DCGAN encoder (Creswell et al.'s ablation nets): x (N, in_channels, S, S) -> DiagonalGaussian.

    ``channels``: one width per stride-2 convolution, log2(S/4) of them; default
    (64, 128, 256, 512) at 64 px, the last ones of (32, 64, 128, 256, 512) in general.
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int,
        channels: Sequence[int] | None = None,
        in_channels: int = 3,
        condition_dim: int = 0,
    ):
        super().__init__()
        who = "DCGANEncoder"
        _check_positive(latent_dim, "latent_dim", who)
        _check_positive(in_channels, "in_channels", who)
        self.trunk = DCGANTrunk(image_size, _resolve_channels(image_size, channels, who), in_channels)
        self._build_head(image_size, in_channels, latent_dim, condition_dim)


# ----------------------------------------------------------------------------- decoders


def _setup_decoder(decoder, who, image_size, latent_dim, channels, out_channels, condition_dim) -> list[int]:
    """Check a decoder's arguments, store its shapes on it, and return its channel widths (encoder order)."""
    _check_positive(latent_dim, "latent_dim", who)
    _check_positive(out_channels, "out_channels", who)
    _check_condition_dim(condition_dim, who)
    channels = _resolve_channels(image_size, channels, who)
    decoder.image_shape = (out_channels, image_size, image_size)
    decoder.latent_dim, decoder.condition_dim, decoder.channels = latent_dim, condition_dim, channels
    return channels


class ResidualDecoder(nn.Module):
    """The residual encoder mirrored: z (N, latent_dim) [+ condition] -> raw (N, out_channels, S, S).

    Linear to channels[-1] x 4 x 4 and ReLU, a residual block at 4x4, then one stage per
    doubling: nearest 2x upsampling and a residual block; a 5x5 convolution to
    ``out_channels`` last. ``channels`` is given in encoder order (small to large), and every
    resolution gets the width the encoder has there (128 px: 512 at 4x4, 256 at 8x8, ...,
    32 at 64x64, and 32 again at 128x128, mirroring the stem), as in IntroVAE, whose
    decoder changes width in the block *before* each upsampling.
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int,
        channels: Sequence[int] | None = None,
        out_channels: int = 3,
        condition_dim: int = 0,
    ):
        super().__init__()
        channels = _setup_decoder(self, "ResidualDecoder", image_size, latent_dim, channels, out_channels, condition_dim)
        self.fc = nn.Sequential(nn.Linear(latent_dim + condition_dim, channels[-1] * BOTTLENECK**2), nn.ReLU())
        self.initial = ResidualBlock(channels[-1], channels[-1])
        stages, width_in = [], channels[-1]
        for width_out in [*reversed(channels[:-1]), channels[0]]:
            # nearest upsampling then a stride-1 conv: no checkerboard (see the module docstring)
            upsample = nn.Upsample(scale_factor=2, mode="nearest")
            stages.append(nn.Sequential(upsample, ResidualBlock(width_in, width_out)))
            width_in = width_out
        self.stages = nn.ModuleList(stages)
        self.out = nn.Conv2d(channels[0], out_channels, 5, padding=2)  # raw: the likelihood reads it

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        z = check_features(z, self.latent_dim, name="z")
        h = self.fc(_with_condition(z, condition, self.condition_dim))
        h = self.initial(h.view(-1, self.channels[-1], BOTTLENECK, BOTTLENECK))
        for stage in self.stages:
            h = stage(h)
        return self.out(h)


class DCGANDecoder(nn.Module):
    """DCGAN generator as a decoder: z (N, latent_dim) [+ condition] -> raw (N, out_channels, S, S).

    A bias-free linear map to channels[-1] x 4 x 4 with BatchNorm and ReLU (the same function
    as DCGAN's 4x4 transposed convolution from a 1x1 input), then stride-2 4x4 transposed
    convolutions with BatchNorm and ReLU; the last one outputs ``out_channels`` with no
    BatchNorm and no activation. ``channels`` is given in encoder order (small to large).
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int,
        channels: Sequence[int] | None = None,
        out_channels: int = 3,
        condition_dim: int = 0,
    ):
        super().__init__()
        channels = _setup_decoder(self, "DCGANDecoder", image_size, latent_dim, channels, out_channels, condition_dim)
        self.fc = nn.Linear(latent_dim + condition_dim, channels[-1] * BOTTLENECK**2, bias=False)
        self.initial = nn.Sequential(nn.BatchNorm2d(channels[-1]), nn.ReLU())
        stages = []
        for width_in, width_out in zip(reversed(channels[1:]), reversed(channels[:-1])):
            stages.append(
                nn.Sequential(
                    nn.ConvTranspose2d(width_in, width_out, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width_out),
                    nn.ReLU(),
                )
            )
        # no BatchNorm on the generator output (DCGAN), and raw: the likelihood reads it
        stages.append(nn.ConvTranspose2d(channels[0], out_channels, 4, stride=2, padding=1))
        self.stages = nn.ModuleList(stages)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        z = check_features(z, self.latent_dim, name="z")
        h = self.fc(_with_condition(z, condition, self.condition_dim))
        h = self.initial(h.view(-1, self.channels[-1], BOTTLENECK, BOTTLENECK))
        for stage in self.stages:
            h = stage(h)
        return h


# ----------------------------------------------------------------------------- critics


class _TrunkClassifier(nn.Module):
    """Image -> logits (N, num_outputs): trunk, flatten, dropout, linear."""

    trunk: nn.Module

    def _build_head(self, image_size: int, in_channels: int, num_outputs: int, dropout: float) -> None:
        self.image_shape = (in_channels, image_size, image_size)
        self.channels = self.trunk.channels
        self.feature_dim = self.trunk.feature_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_outputs))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened 4x4 bottleneck features (N, feature_dim), before the linear head."""
        return self.trunk(check_images(x, self.image_shape)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Discriminator(_TrunkClassifier):
    """Real/fake critic for IFcVAE-GAN: x (N, in_channels, S, S) -> raw logits (N, outputs).

    ``kind="dcgan"`` uses the DCGAN trunk, ``kind="residual"`` the residual encoder trunk;
    either way the first layer has no BatchNorm. ``outputs > 1`` gives extra logits (for
    example IntroVAC-style class + 'fake' logits).
    """

    def __init__(
        self,
        image_size: int,
        channels: Sequence[int] | None = None,
        in_channels: int = 3,
        outputs: int = 1,
        kind: str = "dcgan",
    ):
        super().__init__()
        who = "Discriminator"
        _check_kind(kind, who)
        _check_positive(outputs, "outputs", who)
        _check_positive(in_channels, "in_channels", who)
        self.kind, self.outputs = kind, outputs
        channels = _resolve_channels(image_size, channels, who)
        self.trunk = _make_trunk(kind, image_size, channels, in_channels, first_norm=False)
        self._build_head(image_size, in_channels, outputs, dropout=0.0)


class FaceClassifier(_TrunkClassifier):
    """Independent attribute classifier: x (N, in_channels, S, S) -> logits (N, num_outputs).

    Returns logits only: use BCE-with-logits for multi-label attributes, cross entropy for a
    categorical label. Default widths are halved (last ones of (16, 32, 64, 128, 256)) so it
    trains on a CPU; pass ``channels`` for the full widths.
    """

    def __init__(
        self,
        image_size: int,
        num_outputs: int,
        channels: Sequence[int] | None = None,
        kind: str = "residual",
        dropout: float = 0.0,
        in_channels: int = 3,
    ):
        super().__init__()
        who = "FaceClassifier"
        _check_kind(kind, who)
        _check_positive(num_outputs, "num_outputs", who)
        _check_positive(in_channels, "in_channels", who)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{who}: dropout must be in [0, 1), got {dropout!r}")
        self.kind, self.num_outputs = kind, num_outputs
        channels = _resolve_channels(image_size, channels, who, widths=CLASSIFIER_WIDTHS)
        self.trunk = _make_trunk(kind, image_size, channels, in_channels)
        self._build_head(image_size, in_channels, num_outputs, dropout)


# ----------------------------------------------------------------------------- pairs


def face_networks(
    image_size: int,
    latent_dim: int,
    *,
    kind: str = "residual",
    condition_dim: int = 0,
    encoder_condition_dim: int = 0,
    channels: Sequence[int] | None = None,
    image_channels: int = 3,
) -> tuple[nn.Module, nn.Module]:
    """A matching (encoder, decoder) pair of one ``kind`` ("residual" or "dcgan").

    The decoder reads ``condition_dim`` label values next to z; the encoder reads
    ``encoder_condition_dim`` (0 by default: IFcVAE-GAN's q(z|x) must not see y; a CVAE passes
    the label width here too). ``channels`` (encoder order) is shared by both.
    """
    _check_kind(kind, "face_networks")
    channels = _resolve_channels(image_size, channels, "face_networks")
    if kind == "residual":
        encoder: nn.Module = ResidualEncoder(image_size, latent_dim, channels, image_channels, encoder_condition_dim)
        decoder: nn.Module = ResidualDecoder(image_size, latent_dim, channels, image_channels, condition_dim)
    else:
        encoder = DCGANEncoder(image_size, latent_dim, channels, image_channels, encoder_condition_dim)
        decoder = DCGANDecoder(image_size, latent_dim, channels, image_channels, condition_dim)
    return encoder, decoder
