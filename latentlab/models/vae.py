"""The variational autoencoder (Kingma & Welling 2014) with a beta on the KL (Higgins et al. 2017).

Objective per example (the negative of eq. 3 of Kingma & Welling with a beta):

    loss(x) = -E_q(z|x)[log p(x|z)] + beta * KL(q(z|x) || N(0, I))

with one reparameterised sample of z. With ``beta = 1`` the negative loss is the ELBO.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_learning_rate, check_tensor
from ..distributions import DiagonalGaussian
from ..nets.faces import face_networks
from .base import Batch, Control, LatentVariableModel
from .registry import FACE_LIKELIHOOD, register_face_model


class VAE(LatentVariableModel):
    """A VAE around any encoder (x -> DiagonalGaussian) and decoder (z -> likelihood parameters).

    Args:
        encoder: module mapping x to a ``DiagonalGaussian`` over z.
        decoder: module mapping z to the likelihood's raw parameters (mean, location or logits).
        beta: weight of the KL term (1 gives the ELBO).
        likelihood: ``"gaussian"`` (MSE), ``"laplace"`` (L1) or ``"bernoulli"`` (BCE).
        decoder_std: standard deviation of the Gaussian / scale of the Laplace likelihood.
        learn_decoder_std: learn one shared log-scale instead of fixing ``decoder_std``.
        learning_rate: Adam learning rate used by ``configure_optimizers``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        beta: float = 1.0,
        likelihood: str = "gaussian",
        decoder_std: float = 1.0,
        learn_decoder_std: bool = False,
        learning_rate: float = 1e-3,
    ):
        super().__init__()
        check_learning_rate(learning_rate)
        if beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        self.encoder, self.decoder = encoder, decoder
        self.beta, self.learning_rate = beta, learning_rate
        self.set_likelihood(likelihood, decoder_std, learn_decoder_std)

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        return {"z": self.encoder(x)}

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """Raw likelihood parameters for z (logits for Bernoulli)."""
        return self.decoder(z)

    def decode(self, latents: dict[str, torch.Tensor] | torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z) in data space."""
        z = latents["z"] if isinstance(latents, dict) else latents
        out = self.decoder_output(z)
        return self.to_data_space(out)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example, summed over every data dimension."""
        return self.reconstruction_log_likelihood(x, self.decoder_output(z))

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = check_tensor(batch[0], "x")
        q_z = self.encoder(x)
        z = q_z.rsample()
        recon = -self.log_likelihood(x, z).mean()  # -E_q[log p(x|z)], one sample
        kl = q_z.kl_standard_normal().mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """The ELBO per example, averaging the reconstruction term over ``num_samples`` draws."""
        q_z = self.encoder(x)
        expected_ll = torch.stack([self.log_likelihood(x, q_z.rsample()) for _ in range(num_samples)]).mean(0)
        return expected_ll - q_z.kl_standard_normal()

    @torch.no_grad()
    def importance_weighted_bound(self, x: torch.Tensor, num_samples: int = 64) -> torch.Tensor:
        """IWAE bound (Burda et al. 2016): log mean_k p(x, z_k) / q(z_k|x), tighter than the ELBO as k grows."""
        q_z = self.encoder(x)
        log_weights = []
        for _ in range(num_samples):
            z = q_z.rsample()
            log_prior = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
            log_weights.append(self.log_likelihood(x, z) + log_prior - q_z.log_prob(z))
        return torch.logsumexp(torch.stack(log_weights), 0) - math.log(num_samples)

    @torch.no_grad()
    def sample(self, n: int, style: torch.Tensor | None = None) -> torch.Tensor:
        """Decode ``n`` draws from the prior N(0, I) (or the codes ``style``, one row each): without labels, a count."""
        z = torch.randn(n, self.latent_dim, device=self.device) if style is None else style.to(self.device)
        return self.decode(z)

    def controls(self) -> list[Control]:
        return [Control(f"z[{i}]", -3.0, 3.0) for i in range(self.latent_dim)]


@register_face_model("vae", needs_labels=False)
def _face_vae(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets)
    return VAE(encoder, decoder, **{**FACE_LIKELIHOOD, **kwargs})
