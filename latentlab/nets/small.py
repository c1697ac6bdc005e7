"""Building blocks: encoders that return diagonal Gaussians, decoders that return likelihood parameters.

Every encoder takes an optional ``condition`` (for example a one-hot label) that is
concatenated to its input features; every decoder takes one concatenated to the latent.
Decoders return *raw* parameters (the mean, the Laplace location or the Bernoulli logits);
the model's likelihood decides how to read them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_features, check_images
from ..distributions import DiagonalGaussian


def _with_condition(h: torch.Tensor, condition: torch.Tensor | None, condition_dim: int) -> torch.Tensor:
    if condition_dim == 0:
        if condition is not None:
            raise ValueError("this network was built with condition_dim=0 but received a condition")
        return h
    if condition is None:
        raise ValueError(f"this network expects a condition of width {condition_dim} (e.g. a one-hot label)")
    condition = check_features(condition, condition_dim, name="condition")
    if condition.shape[0] != h.shape[0]:
        raise ValueError(
            f"condition has {condition.shape[0]} rows but the batch has {h.shape[0]}; pass one per example"
        )
    return torch.cat([h, condition.to(h.dtype)], dim=1)


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last)."""

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU):
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)


class GaussianHead(nn.Module):
    """Features -> DiagonalGaussian(mean, log_var) through one linear map."""

    def __init__(self, in_dim: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.linear = nn.Linear(in_dim, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        mean, log_var = self.linear(h).chunk(2, dim=-1)
        return DiagonalGaussian(mean, log_var)


class MLPEncoder(nn.Module):
    """q(z | x [, condition]) for vectors: an MLP ending in a Gaussian head.

    ``hidden_dims=()`` gives a linear encoder (used for the exact linear-Gaussian checks).
    """

    def __init__(self, input_dim: int, latent_dim: int, hidden_dims: Sequence[int] = (64, 64), condition_dim: int = 0):
        super().__init__()
        self.input_dim, self.latent_dim, self.condition_dim = input_dim, latent_dim, condition_dim
        width = hidden_dims[-1] if hidden_dims else input_dim + condition_dim
        self.body = (
            nn.Sequential(MLP(input_dim + condition_dim, hidden_dims[:-1], hidden_dims[-1]), nn.ReLU())
            if hidden_dims
            else nn.Identity()
        )
        self.head = GaussianHead(width, latent_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> DiagonalGaussian:
        x = check_features(x, self.input_dim)
        return self.head(self.body(_with_condition(x, condition, self.condition_dim)))


class MLPDecoder(nn.Module):
    """p(x | z [, condition]) for vectors: returns the likelihood's raw parameters."""

    def __init__(self, latent_dim: int, output_dim: int, hidden_dims: Sequence[int] = (64, 64), condition_dim: int = 0):
        super().__init__()
        self.latent_dim, self.output_dim, self.condition_dim = latent_dim, output_dim, condition_dim
        self.net = MLP(latent_dim + condition_dim, hidden_dims, output_dim)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        z = check_features(z, self.latent_dim, name="z")
        return self.net(_with_condition(z, condition, self.condition_dim))


_CONV_SIZES = (28, 32)


def _check_image_size(image_size: int) -> int:
    if image_size not in _CONV_SIZES:
        raise ValueError(
            f"the small conv networks take {' or '.join(map(str, _CONV_SIZES))} px images, got {image_size}; "
            "resize the images, or use the residual networks for 64/128 px"
        )
    return image_size // 4  # two stride-2 convolutions


def _conv_features(channels: int, widths: tuple[int, int]) -> nn.Sequential:
    """Two stride-2 4x4 convolutions with ReLU, flattened: the shared front end of the small conv nets."""
    return nn.Sequential(
        nn.Conv2d(channels, widths[0], 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(widths[0], widths[1], 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
    )


class ConvEncoder(nn.Module):
    """q(z | x [, condition]) for small images (28x28 or 32x32): two stride-2 convs and an MLP."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        latent_dim: int,
        condition_dim: int = 0,
        widths: tuple[int, int] = (32, 64),
        hidden_dim: int = 256,
    ):
        super().__init__()
        self.image_shape = (channels, image_size, image_size)
        self.latent_dim, self.condition_dim = latent_dim, condition_dim
        side = _check_image_size(image_size)
        self.features = _conv_features(channels, widths)
        self.fc = nn.Sequential(nn.Linear(widths[1] * side * side + condition_dim, hidden_dim), nn.ReLU())
        self.head = GaussianHead(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> DiagonalGaussian:
        x = check_images(x, self.image_shape)
        h = _with_condition(self.features(x), condition, self.condition_dim)
        return self.head(self.fc(h))

    def for_every_condition(self, x: torch.Tensor, conditions: torch.Tensor) -> DiagonalGaussian:
        """q(z | x, c) for every row c of ``conditions`` (k, condition_dim) and every image: k * n rows,
        condition-major (all images with c_0, then with c_1, ...), equal to ``self(x.repeat(k), c's)``.

        The convolutions do not read the condition, so they run once instead of k times: most of
        the cost of M2's exact sum over labels."""
        x = check_images(x, self.image_shape)
        k, n = len(conditions), len(x)
        h = self.features(x).repeat(k, 1)
        return self.head(self.fc(_with_condition(h, conditions.repeat_interleave(n, dim=0), self.condition_dim)))


class ConvDecoder(nn.Module):
    """p(x | z [, condition]) for small images: an MLP and two stride-2 transposed convs."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        latent_dim: int,
        condition_dim: int = 0,
        widths: tuple[int, int] = (64, 32),
        hidden_dim: int = 256,
    ):
        super().__init__()
        self.image_shape = (channels, image_size, image_size)
        self.latent_dim, self.condition_dim = latent_dim, condition_dim
        self.side = _check_image_size(image_size)
        self.widths = widths
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + condition_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, widths[0] * self.side * self.side),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(widths[0], widths[1], 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(widths[1], channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        z = check_features(z, self.latent_dim, name="z")
        h = self.fc(_with_condition(z, condition, self.condition_dim))
        return self.deconv(h.view(-1, self.widths[0], self.side, self.side))


class ConvClassifier(nn.Module):
    """x -> logits over ``num_classes`` for small images: the conv front end of :class:`ConvEncoder` and an MLP.

    Serves as M2's q(y|x), as a classifier trained on the labelled images alone, and as the
    independent judge that scores generated and edited images.
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        num_classes: int,
        widths: tuple[int, int] = (32, 64),
        hidden_dim: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.image_shape = (channels, image_size, image_size)
        self.num_classes = num_classes
        side = _check_image_size(image_size)
        self.features = _conv_features(channels, widths)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(widths[1] * side * side, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(check_images(x, self.image_shape)))
