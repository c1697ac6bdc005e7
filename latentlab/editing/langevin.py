"""Conditional sampling from p(z|y) with Langevin Monte Carlo (IntroVAC, sec. 4.3).

A VAC's linear classifier is a model of p_w(y|z); with the prior p(z) = N(0, I) the posterior is
p(z|y) proportional to p_w(y|z) p(z), the Gibbs distribution of the energy

    U(z) = -log p_w(y|z) - log p(z) = -log p_w(y|z) + ||z||^2 / 2 + const.

The (unadjusted) Langevin iteration

    z_{k+1} = z_k - a * grad U(z_k) + sqrt(2a) * eps_k,     eps_k ~ N(0, I)                 (eq. 8)

converges to it. As the paper does, many chains start from the prior and run a fixed number of
steps (a = 2e-4, 5000 steps); the decoded samples that the model's own encoder and classifier
do not assign to the requested labels are rejected. The energy involves only the classifier, so
the chains cost almost nothing; decoding happens once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_binary_labels


@dataclass
class LangevinSamples:
    """Final chain states, their decoded images, and which of them were accepted."""

    z: torch.Tensor
    images: torch.Tensor
    accepted: torch.Tensor  # bool (num_chains,)

    @property
    def acceptance_rate(self) -> float:
        return float(self.accepted.float().mean())

    @property
    def accepted_images(self) -> torch.Tensor:
        return self.images[self.accepted]


def langevin_conditional_samples(
    model,
    y: torch.Tensor | list | tuple,
    *,
    num_chains: int = 64,
    steps: int = 5000,
    step_size: float = 2e-4,
    seed: int | None = 0,
    reject: bool = True,
) -> LangevinSamples:
    """Sample z ~ p(z|y) for one label vector ``y`` (k values) with ``num_chains`` Langevin chains.

    ``model`` is a :class:`~latentlab.models.VAC` or :class:`~latentlab.models.IntroVAC` (anything
    with ``device``, ``latent_dim``, ``num_labels``, ``log_p_y_given_z``, ``decode`` and
    ``attribute_probabilities``). With ``reject=True`` a sample is accepted when the model, reading
    its decoded image, gives every attribute of ``y`` a probability above 1/2; otherwise all are accepted.
    """
    if num_chains < 1 or steps < 0 or step_size <= 0:
        raise ValueError(f"need num_chains >= 1, steps >= 0, step_size > 0; got {num_chains}, {steps}, {step_size}")
    device = model.device
    target = check_binary_labels(torch.as_tensor(y).reshape(1, -1), model.num_labels, name="y").to(device)
    target = target.expand(num_chains, -1)
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()

    def noise() -> torch.Tensor:
        return torch.randn(num_chains, model.latent_dim, generator=generator, device=device)

    was_training = model.training
    model.eval()
    z = noise()  # z_0 ~ p(z)
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        energy = -model.log_p_y_given_z(z, target) + 0.5 * z.pow(2).sum(1)  # U(z) per chain
        (grad,) = torch.autograd.grad(energy.sum(), z)  # chains are independent: one sum, separate gradients
        z = z - step_size * grad + (2 * step_size) ** 0.5 * noise()  # eq. 8
    z = z.detach()
    with torch.no_grad():
        images = model.decode({"z": z})
        if reject:
            probs = model.attribute_probabilities(images)
            accepted = torch.where(target.bool(), probs, 1 - probs).gt(0.5).all(1)
        else:
            accepted = torch.ones(num_chains, dtype=torch.bool, device=device)
    model.train(was_training)
    return LangevinSamples(z.cpu(), images.cpu(), accepted.cpu())
