"""The conditional VAE (Sohn et al. 2015; Kingma et al. 2014, model M2 with y observed).

Objective per example: the negative conditional ELBO (Sohn et al. 2015, written for the CondVAE
by Klys et al. 2018), with a beta on the KL term:

    loss(x, y) = -E_q(z|x,y)[log p(x|z,y)] + beta * KL(q(z|x,y) || N(0, I))

The label enters encoder and decoder as a one-hot vector. An edit encodes with the true label
and decodes with the target label. Its known failure (Creswell et al. 2017, sec. 2.4): nothing
stops z from carrying the label too, and then the decoder may ignore the label it is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_learning_rate
from ..distributions import DiagonalGaussian
from ..nets.small import MLPDecoder, MLPEncoder
from ..nets.faces import face_networks
from .base import Batch, LabelDecoderModel, split_batch
from .registry import FACE_LIKELIHOOD, register_face_model


class CVAE(LabelDecoderModel):
    """q(z|x,y) and p(x|z,y) around any conditional encoder/decoder; prior N(0, I).

    Args:
        encoder: module ``(x, onehot(y)) -> DiagonalGaussian`` over z (e.g. ``MLPEncoder(..., condition_dim=num_classes)``).
        decoder: module ``(z, onehot(y)) -> likelihood parameters``.
        num_classes: number of label values (2 for a binary label).
        beta: weight of the KL term (1 gives the conditional ELBO).
        likelihood: ``"gaussian"``, ``"laplace"`` or ``"bernoulli"``.
        decoder_std: standard deviation (Gaussian) or scale (Laplace) of p(x|z,y).
        learning_rate: Adam learning rate.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        num_classes: int = 2,
        beta: float = 1.0,
        likelihood: str = "gaussian",
        decoder_std: float = 1.0,
        learning_rate: float = 1e-3,
    ):
        super().__init__()
        check_learning_rate(learning_rate)
        self.check_label_networks(num_classes, encoder=encoder, decoder=decoder)
        if beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        self.encoder, self.decoder = encoder, decoder
        self.num_classes, self.beta, self.learning_rate = num_classes, beta, learning_rate
        self.set_likelihood(likelihood, decoder_std)

    @classmethod
    def mlp(cls, input_dim: int, latent_dim: int, *, num_classes: int = 2, hidden_dims: Sequence[int] = (64, 64), **kwargs) -> CVAE:
        """A CVAE for vectors with MLP encoder and decoder."""
        encoder = MLPEncoder(input_dim, latent_dim, hidden_dims, condition_dim=num_classes)
        decoder = MLPDecoder(latent_dim, input_dim, tuple(reversed(hidden_dims)), condition_dim=num_classes)
        return cls(encoder, decoder, num_classes=num_classes, **kwargs)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        if y is None:
            raise ValueError("the CVAE encoder reads the label too: call encode(x, y)")
        return {"z": self.encoder(x, self.one_hot(y, len(x)))}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = split_batch(batch, "CVAE")
        condition = self.one_hot(y, len(x))
        q_z = self.encoder(x, condition)
        out = self.decoder(q_z.rsample(), condition)
        # -E_q[log p(x|z,y)] with one reparameterised sample
        recon = -self.reconstruction_log_likelihood(x, out).mean()
        kl = q_z.kl_standard_normal().mean()  # KL(q(z|x,y) || N(0, I)), closed form
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    @torch.no_grad()
    def sample(self, y: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """One draw z ~ N(0, I) per label in ``y`` (or the rows of ``style``), decoded with that label."""
        z = torch.randn(len(y), self.latent_dim, device=self.device) if style is None else style.to(self.device)
        return self.decode({"z": z}, y)


@register_face_model("cvae")
def _face_cvae(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets, condition_dim=classes, encoder_condition_dim=classes)
    return CVAE(encoder, decoder, num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs})
