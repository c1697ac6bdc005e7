"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed and Welling (2014): the baseline for CCVAE.

Generative model p(y) p(z) p(x | y, z) with p(y) uniform and p(z) = N(0, I); inference
networks q(z | x, y) and q(y | x). The label is a latent variable when it is missing:

    labelled (eq. 6):    log p(x, y) >= L(x, y) = E_q(z|x,y)[log p(x|y,z)] - KL(q(z|x,y) || p(z)) + log p(y)
    unlabelled (eq. 7):  log p(x)    >= U(x)    = sum_y q(y|x) L(x, y) + H(q(y|x))
    objective (eq. 9):   J = sum_labelled L(x, y) + sum_unlabelled U(x) + alpha * sum_labelled log q(y|x)

The sum over y is done exactly, all classes in one batched pass: the decoder runs once per class
(the cost of M2: ``num_classes`` times a VAE's decoder per unlabelled image); an encoder with a
``for_every_condition(x, conditions)`` method (:class:`~latentlab.nets.ConvEncoder`) computes its
label-free convolutions once, any other runs on the repeated batch. Without the alpha term, q(y|x) would learn
only from unlabelled data; alpha is ``classifier_weight``, per labelled example. Kingma et al. set
alpha = 0.1 N for the mean over labelled data, i.e. 0.1 N / N_labelled per labelled example (50 for
100 labels among 50 000); Pyro's tutorial uses 46. ``beta`` weighs the KL (1 gives the bound).
The KL is in closed form: q(z|x,y) is Gaussian and nothing else depends on the sample.

An edit is a label switch: encode with the true label, decode the same z with the target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_learning_rate
from ..distributions import DiagonalGaussian
from ..nets.faces import FaceClassifier, face_networks
from .base import Batch, LabelDecoderModel, split_partial_batch
from .registry import FACE_LIKELIHOOD, register_face_model


class M2(LabelDecoderModel):
    """q(y|x), q(z|x,y) and p(x|y,z), trained on labelled and unlabelled examples at once.

    Args:
        encoder: module ``(x, onehot(y)) -> DiagonalGaussian`` over z (built with ``condition_dim=num_classes``).
        decoder: module ``(z, onehot(y)) -> likelihood parameters``.
        classifier: module ``x -> logits`` (q(y|x)).
        num_classes: number of label values.
        classifier_weight: alpha of eq. 9, per labelled example.
        beta: weight of the KL term.
        likelihood, decoder_std: the reconstruction likelihood, as in :class:`~latentlab.VAE`.
        learning_rate: Adam learning rate.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        classifier: nn.Module,
        *,
        num_classes: int = 10,
        classifier_weight: float = 50.0,
        beta: float = 1.0,
        likelihood: str = "bernoulli",
        decoder_std: float = 1.0,
        learning_rate: float = 1e-3,
    ):
        super().__init__()
        check_learning_rate(learning_rate)
        self.check_label_networks(num_classes, encoder=encoder, decoder=decoder)
        if min(classifier_weight, beta) < 0:
            raise ValueError("classifier_weight and beta must be non-negative")
        self.encoder, self.decoder, self.classifier = encoder, decoder, classifier
        self.num_classes, self.classifier_weight, self.beta = num_classes, classifier_weight, beta
        self.learning_rate = learning_rate
        self.set_likelihood(likelihood, decoder_std)

    @staticmethod
    def kingma_classifier_weight(num_labelled: int, num_unlabelled: int, labelled_share: float | None = None) -> float:
        """alpha per labelled example that weighs log q(y|x) against the unlabelled bound as Kingma et al. do.

        Their alpha = 0.1 N multiplies the *mean* over labelled data, so per labelled example it is
        0.1 N / N_l (50 for 100 labels among 50 000). When batches repeat the labelled examples until
        they are ``labelled_share`` s of the examples (:func:`~latentlab.data.semi_supervised`), each is
        seen more often, and the same balance between the classification term and the unlabelled
        bound needs alpha = 0.1 (N / N_u) (1 - s) / s per occurrence.
        """
        if num_labelled <= 0 or num_unlabelled < 0:
            raise ValueError(f"need num_labelled > 0 and num_unlabelled >= 0, got {num_labelled} and {num_unlabelled}")
        total = num_labelled + num_unlabelled
        share = num_labelled / total if labelled_share is None else max(labelled_share, num_labelled / total)
        if num_unlabelled == 0 or share >= 1:
            return 0.1 * total / num_labelled  # every example labelled: Kingma's weight on the mean
        return 0.1 * (total / num_unlabelled) * (1 - share) / share

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        """q(z|x,y); without ``y`` the classifier's most probable label stands in for it."""
        if y is None:
            y = self.class_log_probs(x).argmax(-1)
        return {"z": self.encoder(x, self.one_hot(y, len(x)))}

    def labelled_bound(self, x: torch.Tensor, y: torch.Tensor, q_z: DiagonalGaussian | None = None) -> dict[str, torch.Tensor]:
        """L(x, y) of eq. 6 per example, with its reconstruction and KL parts (``q_z``: q(z|x,y) if already computed)."""
        condition = self.one_hot(y, len(x))
        q_z = self.encoder(x, condition) if q_z is None else q_z
        log_px = self.reconstruction_log_likelihood(x, self.decoder(q_z.rsample(), condition))
        kl = q_z.kl_standard_normal()
        return {"bound": log_px - self.beta * kl - math.log(self.num_classes), "log_px": log_px, "kl": kl}

    def unlabelled_bound(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """U(x) of eq. 7 per example: L(x, y) for every class, weighted by q(y|x), plus the entropy of q(y|x)."""
        n, k = len(x), self.num_classes
        every_label = torch.arange(k, device=x.device).repeat_interleave(n)  # x_0..x_n-1 with y=0, then y=1, ...
        every_x = x.repeat(k, *([1] * (x.dim() - 1)))
        encode_all = getattr(self.encoder, "for_every_condition", None)  # shares the label-free part of the encoder
        q_z = encode_all(x, torch.eye(k, device=x.device, dtype=x.dtype)) if encode_all is not None else None
        parts = self.labelled_bound(every_x, every_label, q_z)
        log_q_y = self.class_log_probs(x)  # (n, k)
        q_y = log_q_y.exp()
        per_class = {name: value.view(k, n).T for name, value in parts.items()}  # (n, k)
        entropy = -(q_y * log_q_y).sum(-1)
        return {
            "bound": (q_y * per_class["bound"]).sum(-1) + entropy,
            "log_px": (q_y * per_class["log_px"]).sum(-1),
            "kl": (q_y * per_class["kl"]).sum(-1),
        }

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """-J / batch size (eq. 9): labelled examples give L(x, y) + alpha log q(y|x), unlabelled ones U(x)."""
        x, y, labelled = split_partial_batch(batch, self.num_classes)
        parts, classification = [], x.new_zeros(())
        if bool(labelled.any()):
            parts.append(self.labelled_bound(x[labelled], y[labelled]))
            classification = F.cross_entropy(self.classifier(x[labelled]), y[labelled], reduction="sum")
        if not bool(labelled.all()):
            parts.append(self.unlabelled_bound(x[~labelled]))
        bound = torch.cat([p["bound"] for p in parts])
        n = len(x)
        return {
            "loss": -bound.sum() / n + self.classifier_weight * classification / n,
            "recon": -torch.cat([p["log_px"] for p in parts]).mean(),
            "kl": torch.cat([p["kl"] for p in parts]).mean(),
            "classifier": classification / labelled.sum().clamp_min(1),
            "labelled": labelled.float().mean(),
        }

    has_classifier = True

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y|x) for every class."""
        return F.log_softmax(self.classifier(x), dim=-1)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Conditional generation: z ~ N(0, I), or the rows of ``style`` (shared style), decoded with each label."""
        z = torch.randn(len(y), self.latent_dim, device=self.device) if style is None else style.to(self.device)
        return self.decode({"z": z}, y.to(self.device))

    @torch.no_grad()
    def edit(self, x: torch.Tensor, y: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Label switch: z from q(z|x,y) (y = the prediction when None), decoded with ``target``."""
        self.eval()
        x = x.to(self.device)
        return self.decode(
            {"z": self.encode(x, None if y is None else y.to(self.device))["z"].mean}, target.to(self.device)
        )


@register_face_model("m2")
def _face_m2(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets, condition_dim=classes, encoder_condition_dim=classes)
    return M2(
        encoder, decoder, FaceClassifier(size, classes, **nets), num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs}
    )
