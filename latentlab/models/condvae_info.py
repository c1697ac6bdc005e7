"""The conditional VAE with adversarial information factorization (CondVAE-info).

Creswell et al. 2017 (IFcVAE-GAN without its GAN part), a baseline of Klys et al. 2018. The
encoder q(z|x) does *not* see the label; a classifier head E_y(x) predicts it; the decoder
reads [z, onehot(y)]; an auxiliary network A(z) -> y tries to read the label from z, and the
encoder is trained to make it fail:

    L_enc = -E_q(z|x)[log p(x|z,y)] + beta * KL(q(z|x) || N(0, I))
            + class_weight * CE(E_y(x), y) - aux_weight * CE(A(z), y)       (eqs. 4 and 6)
    L_aux = CE(A(z), y)                                                     (eq. 5, min over A)

One training step follows Algorithm 1 of Creswell et al.: from one forward pass, first the
encoder, classifier head and decoder take a step on L_enc, then A takes a step on L_aux with z
detached. The two optimizers own disjoint parameters.

Choices, and how they differ from the paper:

* the decoder reads the *true* label during training (as in Klys et al.'s description of
  CondVAE-info); IFcVAE-GAN decodes with the head's prediction y_hat. At edit time both use the
  target label.
* ``beta`` is the KL weight that Creswell et al. call alpha; ``class_weight`` is their rho; eq. 6
  puts weight 1 on L_aux, our ``aux_weight`` (default 1) makes it explicit. Adam replaces RMSprop.
* cross entropy over ``num_classes`` values replaces the binary cross entropy (identical for 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_labels, check_learning_rate
from ..distributions import DiagonalGaussian
from ..nets.small import MLP, MLPDecoder, MLPEncoder
from ..nets.faces import FaceClassifier, face_networks
from .base import Batch, LabelDecoderModel, split_batch
from .registry import FACE_LIKELIHOOD, register_face_model


class CondVAEInfo(LabelDecoderModel):
    """q(z|x), classifier head E_y(x), p(x|z,y) and an auxiliary adversary A(z) on its own optimizer.

    Args:
        encoder: module ``x -> DiagonalGaussian`` over z (no condition).
        decoder: module ``(z, onehot(y)) -> likelihood parameters``.
        classifier: module ``x -> logits`` over the ``num_classes`` labels (the head E_y).
        auxiliary: module ``z -> logits`` (the adversary A).
        num_classes: number of label values.
        beta: KL weight (Creswell et al.'s alpha).
        class_weight: weight of the head's cross entropy (their rho).
        aux_weight: weight of -L_aux in the encoder loss (1 in their eq. 6; 0 switches factorization off).
        likelihood, decoder_std: the reconstruction likelihood, as in :class:`~latentlab.VAE`.
        learning_rate: Adam learning rate of both optimizers.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        classifier: nn.Module,
        auxiliary: nn.Module,
        *,
        num_classes: int = 2,
        beta: float = 1.0,
        class_weight: float = 1.0,
        aux_weight: float = 1.0,
        likelihood: str = "gaussian",
        decoder_std: float = 1.0,
        learning_rate: float = 1e-3,
    ):
        super().__init__()
        check_learning_rate(learning_rate)
        self.check_label_networks(num_classes, decoder=decoder)
        if getattr(encoder, "condition_dim", 0) != 0:
            raise ValueError("the CondVAE-info encoder must not see the label: build it with condition_dim=0")
        if min(beta, class_weight, aux_weight) < 0:
            raise ValueError("beta, class_weight and aux_weight must be non-negative")
        self.encoder, self.decoder, self.classifier, self.auxiliary = encoder, decoder, classifier, auxiliary
        self.num_classes, self.learning_rate = num_classes, learning_rate
        self.beta, self.class_weight, self.aux_weight = beta, class_weight, aux_weight
        self.set_likelihood(likelihood, decoder_std)

    @classmethod
    def mlp(
        cls, input_dim: int, latent_dim: int, *, num_classes: int = 2, hidden_dims: Sequence[int] = (64, 64), **kwargs
    ) -> CondVAEInfo:
        """CondVAE-info for vectors: MLP encoder, decoder, head and auxiliary network."""
        return cls(
            MLPEncoder(input_dim, latent_dim, hidden_dims),
            MLPDecoder(latent_dim, input_dim, tuple(reversed(hidden_dims)), condition_dim=num_classes),
            MLP(input_dim, hidden_dims, num_classes),
            MLP(latent_dim, hidden_dims, num_classes),
            num_classes=num_classes,
            **kwargs,
        )

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        """q(z|x); the label, if given, is not used (the encoder never sees it)."""
        if y is not None:
            check_labels(y, self.num_classes, len(x))
        return {"z": self.encoder(x)}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = split_batch(batch, "CondVAEInfo")
        y = check_labels(y, self.num_classes, len(x))
        q_z = self.encoder(x)
        z = q_z.rsample()
        out = self.decoder(z, F.one_hot(y, self.num_classes).float())
        recon = -self.reconstruction_log_likelihood(x, out).mean()
        kl = q_z.kl_standard_normal().mean()
        head = F.cross_entropy(self.classifier(x), y)  # L_class
        aux_through_z = F.cross_entropy(self.auxiliary(z), y)  # L_aux as the encoder sees it
        loss = recon + self.beta * kl + self.class_weight * head - self.aux_weight * aux_through_z  # eq. 6
        aux = F.cross_entropy(self.auxiliary(z.detach()), y)  # L_aux as A sees it: z fixed
        return {"loss": loss, "recon": recon, "kl": kl, "class": head, "aux": aux, "elbo": -(recon + kl)}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        model = [*self.encoder.parameters(), *self.decoder.parameters(), *self.classifier.parameters()]
        return {
            "model": torch.optim.Adam(model, lr=self.learning_rate),
            "auxiliary": torch.optim.Adam(self.auxiliary.parameters(), lr=self.learning_rate),
        }

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        terms = self.loss_terms(batch)
        # 1. encoder, head and decoder minimise L_enc (which *maximises* L_aux through z)
        self.update(optimizers["model"], terms["loss"])
        # 2. the auxiliary network minimises L_aux on detached z; zeroing first drops the
        #    gradient step 1 left on A, which pointed the wrong way for A
        self.update(optimizers["auxiliary"], terms["aux"])
        return {name: float(value.detach()) for name, value in terms.items()}

    has_classifier = True

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y|x) of the head, whose argmax is the label prediction y_hat."""
        return F.log_softmax(self.classifier(x), dim=-1)


@register_face_model("condvae_info")
def _face_condvae_info(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets, condition_dim=classes)
    head = FaceClassifier(size, classes, **nets)
    auxiliary = MLP(latent, (256, 256), classes)
    return CondVAEInfo(encoder, decoder, head, auxiliary, num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs})
