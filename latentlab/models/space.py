"""What a slider moves: a model's axes for one image, and the decoder of any setting of them.

Each model family builds its own :class:`SliderSpace` in ``LatentVariableModel.slider_space``
(VAC's attribute directions, CSVAE's w, CCVAE's z_c, the label a label-decoder model is given);
a model with one unlabelled latent ``z`` falls back on the top principal directions of the codes
of reference images. The views (live widgets, static HTML) live in :mod:`latentlab.editing.sliders`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Control:
    """One latent coordinate or direction a slider may move: a name and a sensible range."""

    name: str
    low: float
    high: float
    default: float = 0.0


@dataclass
class SliderSpace:
    """The axes a reader may move for one input image, and the decoder of any setting of them.

    ``axes[i].default`` is the image's own value, so ``render(defaults)`` is its reconstruction.
    ``decode_values`` maps a (N, len(axes)) tensor of settings to N images.
    """

    axes: list[Control]
    decode_values: Callable[[torch.Tensor], torch.Tensor]
    kind: str  # which coordinates these are, in words

    @property
    def defaults(self) -> torch.Tensor:
        return torch.tensor([axis.default for axis in self.axes])

    @torch.no_grad()
    def render(self, values: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Decode settings ``values`` ((len(axes),) or (N, len(axes))): images (N, C, H, W) in [0, 1] on the CPU."""
        values = torch.as_tensor(values, dtype=torch.float32)
        if values.dim() == 1:
            values = values[None]
        if values.dim() != 2 or values.shape[1] != len(self.axes):
            raise ValueError(
                f"values must be (N, {len(self.axes)}), one per axis ({', '.join(a.name for a in self.axes)}); "
                f"got shape {tuple(values.shape)}"
            )
        return self.decode_values(values).clamp(0, 1).cpu()

    def traverse(self, axis: int, values: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Images with every axis at its default except ``axis``, set to each of ``values`` in turn."""
        if not 0 <= axis < len(self.axes):
            raise ValueError(f"axis must be 0..{len(self.axes) - 1}, got {axis}")
        values = torch.as_tensor(values, dtype=torch.float32)
        settings = self.defaults.repeat(len(values), 1)
        settings[:, axis] = values
        return self.render(settings)


def with_default(axis: Control, default: float) -> Control:
    """``axis`` starting at ``default``, its range widened if the image's own value lies outside it."""
    return replace(axis, default=default, low=min(axis.low, default), high=max(axis.high, default))


@dataclass(frozen=True)
class PrincipalDirections:
    """PCA of posterior means: ``directions`` (k, d) unit rows, ``scales`` (k,) standard deviations along them."""

    mean: torch.Tensor
    directions: torch.Tensor
    scales: torch.Tensor
    explained: torch.Tensor  # share of the codes' total variance along each direction

    def to(self, device: torch.device) -> PrincipalDirections:
        return PrincipalDirections(*(t.to(device) for t in (self.mean, self.directions, self.scales, self.explained)))


@torch.no_grad()
def principal_directions(model, reference: torch.Tensor, num_directions: int = 3,
                         batch_size: int = 500) -> PrincipalDirections:
    """The top ``num_directions`` principal directions of the posterior means of ``reference`` images."""
    if len(reference) <= num_directions:
        raise ValueError(f"reference needs more than num_directions={num_directions} images, got {len(reference)}")
    model.eval()
    codes = torch.cat([model.encode(chunk.to(model.device))["z"].mean.cpu() for chunk in reference.split(batch_size)])
    if not 1 <= num_directions <= codes.shape[1]:
        raise ValueError(f"num_directions must be 1..{codes.shape[1]} (the latent dimension), got {num_directions}")
    mean = codes.mean(0)
    _, singular, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    variance = singular.pow(2) / (len(codes) - 1)
    return PrincipalDirections(mean, vh[:num_directions], variance[:num_directions].sqrt(),
                               variance[:num_directions] / variance.sum())


def principal_space(model, x: torch.Tensor, reference: torch.Tensor | PrincipalDirections | None,
                    num_directions: int) -> SliderSpace:
    """Sliders along the top principal directions of the codes, in standard deviations (a model with one ``z``)."""
    codes = {name: q.mean for name, q in model.encode(x).items()}
    if set(codes) != {"z"}:
        raise ValueError(f"no sliders are defined for {type(model).__name__} (latents {sorted(codes)})")
    if reference is None:
        raise ValueError(
            f"{type(model).__name__} has no labelled subspace: pass reference=<images> (a few hundred) and its "
            "sliders move along the top principal directions of their codes"
        )
    pcs = reference if isinstance(reference, PrincipalDirections) else principal_directions(
        model, reference, num_directions)
    pcs = pcs.to(model.device)
    mu = codes["z"]
    own = ((mu - pcs.mean) @ pcs.directions.T / pcs.scales)[0]  # the image's coordinates, in standard deviations
    axes = [with_default(Control(f"PC{i + 1} ({float(share):.0%} of variance)", -3.0, 3.0), float(own[i]))
            for i, share in enumerate(pcs.explained)]

    def decode(values: torch.Tensor) -> torch.Tensor:
        return model.decode({"z": mu + ((values.to(mu) - own) * pcs.scales) @ pcs.directions})
    return SliderSpace(axes, decode, "top principal directions of the codes, in standard deviations")
