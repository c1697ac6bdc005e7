"""Diagonal Gaussians, closed-form KL divergences and the likelihoods behind reconstruction losses.

Conventions: every function works on the last dimension(s) of its inputs and *sums* over
the event dimensions, returning one value per example. Losses take the batch mean later.

Reconstruction losses are log-likelihoods in disguise. For ``D`` pixels:

* MSE is a Gaussian likelihood with fixed standard deviation ``sigma``:
  ``-log N(x; mu, sigma^2 I) = ||x - mu||^2 / (2 sigma^2) + D/2 log(2 pi sigma^2)``.
* L1 is a Laplace likelihood with fixed scale ``b``:
  ``-log Laplace(x; mu, b) = ||x - mu||_1 / b + D log(2 b)``.
* BCE is a Bernoulli likelihood on pixels in [0, 1] (the "continuous" reading used by
  most VAE code): ``-log Bern(x; sigmoid(l)) = BCE_with_logits(l, x)``.

So "weighting the MSE by beta_AE" is the same as choosing a decoder standard deviation;
the functions below make that explicit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def reparameterize(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Sample ``z = mean + exp(log_var / 2) * eps`` with ``eps ~ N(0, I)`` (Kingma & Welling 2014, eq. 10).

    The randomness sits in ``eps`` so gradients flow to ``mean`` and ``log_var``.
    """
    return mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)


def kl_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL( N(mean, diag(exp(log_var))) || N(0, I) ), summed over the last dimension.

    Closed form (Kingma & Welling 2014, appendix B):
    ``1/2 * sum( exp(log_var) + mean^2 - 1 - log_var )``.
    """
    return 0.5 * torch.sum(torch.exp(log_var) + mean.pow(2) - 1.0 - log_var, dim=-1)


def kl_diagonal_gaussians(
    mean_q: torch.Tensor, log_var_q: torch.Tensor, mean_p: torch.Tensor, log_var_p: torch.Tensor
) -> torch.Tensor:
    """KL( N(mean_q, diag(var_q)) || N(mean_p, diag(var_p)) ), summed over the last dimension.

    ``1/2 * sum( log var_p - log var_q + (var_q + (mean_q - mean_p)^2) / var_p - 1 )``.
    Used for label-dependent priors such as CSVAE's p(w|y) and CCVAE's p(z_c|y).
    """
    var_ratio = torch.exp(log_var_q - log_var_p)
    mahalanobis = (mean_q - mean_p).pow(2) * torch.exp(-log_var_p)
    return 0.5 * torch.sum(var_ratio + mahalanobis - 1.0 - (log_var_q - log_var_p), dim=-1)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_var))), summed over the last dimension."""
    return -0.5 * torch.sum(LOG_2PI + log_var + (x - mean).pow(2) * torch.exp(-log_var), dim=-1)


def _sum_event(values: torch.Tensor, event_dims: int) -> torch.Tensor:
    if event_dims == 0:
        return values
    return values.flatten(start_dim=values.dim() - event_dims).sum(dim=-1)


def gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor = 1.0, event_dims: int = 1
) -> torch.Tensor:
    """log N(x; mean, std^2 I) summed over the last ``event_dims`` dimensions (MSE as a likelihood).

    ``std`` may be a float or a tensor that broadcasts against ``x`` (a learned scale).
    """
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    log_prob = -0.5 * ((x - mean) / std).pow(2) - torch.log(std) - 0.5 * LOG_2PI
    return _sum_event(log_prob, event_dims)


def laplace_log_likelihood(
    x: torch.Tensor, loc: torch.Tensor, scale: float | torch.Tensor = 1.0, event_dims: int = 1
) -> torch.Tensor:
    """log Laplace(x; loc, scale) summed over the last ``event_dims`` dimensions (L1 as a likelihood)."""
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    log_prob = -(x - loc).abs() / scale - torch.log(2 * scale)
    return _sum_event(log_prob, event_dims)


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor, event_dims: int = 1) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over the last ``event_dims`` dimensions (BCE as a likelihood).

    ``x`` may be any value in [0, 1] (grey pixels); the expression is the negative binary
    cross entropy, computed from logits for numerical stability.
    """
    log_prob = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return _sum_event(log_prob, event_dims)


LIKELIHOODS = ("gaussian", "laplace", "bernoulli")


def log_likelihood(
    kind: str, x: torch.Tensor, decoded: torch.Tensor, scale: float | torch.Tensor = 1.0, event_dims: int = 1
) -> torch.Tensor:
    """Dispatch to the likelihood named ``kind``: ``decoded`` is the mean, the location or the logits."""
    if kind == "gaussian":
        return gaussian_log_likelihood(x, decoded, scale, event_dims)
    if kind == "laplace":
        return laplace_log_likelihood(x, decoded, scale, event_dims)
    if kind == "bernoulli":
        return bernoulli_log_likelihood(x, decoded, event_dims)
    raise ValueError(f"unknown likelihood {kind!r}; use one of {', '.join(LIKELIHOODS)}")


@dataclass
class DiagonalGaussian:
    """A batch of diagonal Gaussians ``N(mean, diag(exp(log_var)))``: what every encoder returns."""

    mean: torch.Tensor
    log_var: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.shape != self.log_var.shape:
            raise ValueError(
                f"mean and log_var must have the same shape, got {tuple(self.mean.shape)} "
                f"and {tuple(self.log_var.shape)}"
            )

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.log_var)

    def rsample(self) -> torch.Tensor:
        """A reparameterised sample (gradients reach mean and log_var)."""
        return reparameterize(self.mean, self.log_var)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return gaussian_log_density(z, self.mean, self.log_var)

    def kl_standard_normal(self) -> torch.Tensor:
        return kl_standard_normal(self.mean, self.log_var)

    def kl(self, other: DiagonalGaussian) -> torch.Tensor:
        return kl_diagonal_gaussians(self.mean, self.log_var, other.mean, other.log_var)

    def detach(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.mean.detach(), self.log_var.detach())
