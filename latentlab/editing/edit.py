"""Editing helpers shared by every model, through the model interface.

Models with labels edit with their own ``edit`` method. A model without labels (the plain VAE)
can still be given one, the attribute switch Klys et al. 2018 use for their VAE baseline:
move the posterior mean by the difference of the class means in latent space,
G(x) = decode(mu(x) - m_source + m_target).
"""

from __future__ import annotations

import torch

from ..checks import check_labels
from ..models.base import LatentVariableModel


def latent_shift_editor(model: LatentVariableModel, x: torch.Tensor, y: torch.Tensor, latent: str = "z"):
    """An ``edit(x, y, target)`` function that shifts the code ``latent`` by class-mean differences.

    The class means ``m_c`` are the average posterior means of the examples of ``x`` labelled c.
    """
    num_classes = int(y.max()) + 1
    y = check_labels(y, num_classes, len(x))
    with torch.no_grad():
        codes = model.encode(x)[latent].mean
    means = torch.stack([codes[y == c].mean(0) for c in range(num_classes)])
    if torch.isnan(means).any():
        raise ValueError("every class needs at least one example to define its mean code")

    @torch.no_grad()
    def edit(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y, target = check_labels(y, num_classes, len(x)), check_labels(target, num_classes, len(x), name="target")
        code = model.encode(x)[latent].mean - means[y] + means[target]
        return model.decode({latent: code})

    return edit
