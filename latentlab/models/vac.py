"""The Variational Classifier, VAC (Maggipinto, Terzi & Susto, 2020: the model IntroVAC builds on).

A VAE whose latent code also predicts the labels through a *linear* logistic classifier
C(z) = sigmoid(W z): x and y are assumed independent given z, so the ELBO of p(x, y) is

    L(x, y) = E_q(z|x)[log p(x|z)] + E_q(z|x)[log p_w(y|z)] - KL(q(z|x) || N(0, I))      (eq. 4)

and training minimises (eq. 5, with the paper's weights)

    b_AE * L_AE(x, x_r) + b_CL * L_CL(y, C(z)) + b_reg * L_reg(z),    z ~ q(z|x), x_r = G(z)

with L_AE the L1 distance (sec. 4.1: sharper than the MSE of the derivation), L_CL binary cross
entropy, L_reg the KL term. Each row w_i of the classifier is the normal of the hyperplane that
separates attribute i, so an attribute is edited by moving the posterior mean along it (sec. 4.2):

    z_aug = mu(x) +/- delta * w_i / ||w_i||

Choices, following the authors' public code where the paper is silent:

* every loss is a mean: L1 over pixels, BCE over attributes, KL over latent dimensions and the
  batch (so the weights 100 / 10 / 3 balance per-element quantities);
* the classifier has no bias (the hyperplanes pass through the prior's mean) and reads the
  *sampled* z during training;
* the decoder's output goes through a sigmoid (images in [0, 1]);
* Adam with weight decay 1e-5, the encoder and classifier on one optimizer and the decoder on
  another (per-parameter Adam, so this equals the code's three optimizers); VAC alone trains
  without learning-rate decay (600 epochs in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_binary_labels, check_learning_rate, check_same_shape
from ..distributions import DiagonalGaussian
from ..nets.faces import face_networks
from .base import Batch, LatentVariableModel, split_batch
from .registry import register_face_model
from .space import Control, SliderSpace


class VAC(LatentVariableModel):
    """VAE + linear classifier on z; ``num_labels`` binary attributes, one direction w_i each.

    Args:
        encoder: module ``x -> DiagonalGaussian`` over z (it never sees the labels).
        decoder: module ``z -> image logits`` (a sigmoid maps them to [0, 1]).
        num_labels: k binary attributes (1 for Eye or Facial, 2 for EyeFacial).
        attribute_names: names of the k attributes (for sliders and tables).
        ae_weight, class_weight, kl_weight: the paper's b_AE, b_CL, b_reg (100, 10, 3).
        edit_delta: default distance moved along w_i/||w_i|| by :meth:`edit` (3 for Eye in the paper).
        learning_rate, weight_decay: Adam's (2e-4 and 1e-5 in the paper and its code).
        lr_milestones, lr_gamma: epochs at which every learning rate is multiplied by ``lr_gamma``.
    """

    #: extra logits of the classifier beyond the k attributes (IntroVAC adds the 'fake' logit)
    extra_logits = 0
    #: names and the default edit distance change neither the objective nor the optimizers
    resume_may_change = (*LatentVariableModel.resume_may_change, "attribute_names", "edit_delta")

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        num_labels: int = 1,
        attribute_names: Sequence[str] | None = None,
        ae_weight: float = 100.0,
        class_weight: float = 10.0,
        kl_weight: float = 3.0,
        edit_delta: float = 3.0,
        learning_rate: float = 2e-4,
        weight_decay: float = 1e-5,
        lr_milestones: Sequence[int] = (),
        lr_gamma: float = 0.5,
    ):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {num_labels}")
        if getattr(encoder, "condition_dim", 0) != 0:
            raise ValueError(f"the {type(self).__name__} encoder must not see the labels: build it with condition_dim=0")
        if min(ae_weight, class_weight, kl_weight) < 0 or edit_delta <= 0:
            raise ValueError("ae_weight, class_weight and kl_weight must be non-negative and edit_delta positive")
        check_learning_rate(learning_rate)
        names = list(attribute_names) if attribute_names is not None else [f"attribute {i}" for i in range(num_labels)]
        if len(names) != num_labels:
            raise ValueError(f"attribute_names has {len(names)} names for num_labels={num_labels}")
        self.encoder, self.decoder = encoder, decoder
        self.classifier = nn.Linear(encoder.latent_dim, num_labels + self.extra_logits, bias=False)
        self.num_labels, self.attribute_names = num_labels, names
        self.num_classes = 2 if num_labels == 1 else None  # class indices make sense for one attribute only
        self.ae_weight, self.class_weight, self.kl_weight = ae_weight, class_weight, kl_weight
        self.edit_delta = edit_delta
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.lr_milestones, self.lr_gamma = tuple(lr_milestones), lr_gamma

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    def input_range(self, x: torch.Tensor) -> tuple[tuple[float, float], str] | None:
        """[0, 1] whatever the data's shape: the decoder's output goes through a sigmoid."""
        return super().input_range(x) if x.dim() == 4 else (
            (0.0, 1.0),
            f"{type(self).__name__}'s decoder ends in a sigmoid, so it can only reconstruct values in [0, 1]; "
            "rescale the data, e.g. (x - x.min()) / (x.max() - x.min())",
        )

    # ------------------------------------------------------------------ the model

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        """q(z|x); labels, if given, are ignored (the encoder never sees them)."""
        return {"z": self.encoder(x)}

    def decode(self, latents: dict[str, torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z): images in [0, 1]."""
        return torch.sigmoid(self.decoder(latents["z"]))

    def attribute_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The k attribute logits W z (without IntroVAC's 'fake' logit)."""
        return self.classifier(z)[:, : self.num_labels]

    def log_p_y_given_z(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p_w(y|z) summed over the k attributes, per example (the Langevin energy's label term)."""
        y = check_binary_labels(y, self.num_labels, len(z)).to(z.device)
        return -F.binary_cross_entropy_with_logits(self.attribute_logits(z), y, reduction="none").sum(1)

    def directions(self) -> torch.Tensor:
        """Unit normals w_i / ||w_i|| of the k separating hyperplanes, (k, latent_dim)."""
        w = self.classifier.weight[: self.num_labels]
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def classification_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_CL: binary cross entropy of the k attribute logits against y, averaged over attributes and batch."""
        return F.binary_cross_entropy_with_logits(logits[:, : self.num_labels], y)

    def vac_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms of eq. 5 on one batch, plus z_r = z ~ q(z|x) and x_r = G(z_r) for IntroVAC's later steps."""
        q_z = self.encoder(x)
        z = q_z.rsample()
        x_r = self.decode({"z": z})
        check_same_shape(x_r, x)  # l1_loss would broadcast a wrong width and train
        ae = F.l1_loss(x_r, x)  # L_AE, mean over pixels
        classification = self.classification_loss(self.classifier(z), y)  # L_CL
        kl = q_z.kl_standard_normal().mean() / self.latent_dim  # L_reg, mean over dimensions and batch
        loss = self.ae_weight * ae + self.class_weight * classification + self.kl_weight * kl  # eq. 5
        return {"loss": loss, "ae": ae, "class": classification, "kl": kl, "z": z, "x_r": x_r}

    def vac_batch_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Eq. 5's terms on a batch ``(x, y)``: VAC's loss, and IntroVAC's during its warm-up."""
        x, y = split_batch(batch, type(self).__name__)
        terms = self.vac_terms(x, check_binary_labels(y, self.num_labels, len(x)))
        del terms["z"], terms["x_r"]
        return terms

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.vac_batch_terms(batch)

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        def adam(params):
            return torch.optim.Adam(params, lr=self.learning_rate, weight_decay=self.weight_decay)

        return {
            "encoder": adam([*self.encoder.parameters(), *self.classifier.parameters()]),
            "decoder": adam(self.decoder.parameters()),
        }

    def configure_schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, object]:
        if not self.lr_milestones:
            return {}
        return {
            name: torch.optim.lr_scheduler.MultiStepLR(opt, list(self.lr_milestones), gamma=self.lr_gamma)
            for name, opt in optimizers.items()
        }

    def vac_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One Adam step of every parameter on eq. 5: one backward pass fills both optimizers' gradients."""
        terms = self.vac_batch_terms(batch)
        optimizers["decoder"].zero_grad(set_to_none=True)
        self.update(optimizers["encoder"], terms["loss"])
        self.apply_gradients(optimizers["decoder"])
        return {name: float(value.detach()) for name, value in terms.items()}

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        return self.vac_step(batch, optimizers)

    # ------------------------------------------------------------------ reading and editing

    @property
    def has_classifier(self) -> bool:
        return self.num_labels == 1  # several attributes: attribute_probabilities

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log p_w(y|mu(x)) over the two values of the single attribute (defined for num_labels = 1)."""
        if self.num_labels != 1:
            raise ValueError("class_log_probs is for one attribute; use attribute_probabilities for several")
        logit = self.attribute_logits(self.encoder(x).mean)
        return torch.cat([F.logsigmoid(-logit), F.logsigmoid(logit)], 1)

    @torch.no_grad()
    def attribute_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """C(mu(x)): the probability of each attribute, (N, k)."""
        return torch.sigmoid(self.attribute_logits(self.encoder(x).mean))

    @torch.no_grad()
    def move(self, x: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """Decode mu(x) + sum_i deltas[:, i] * w_i / ||w_i||; ``deltas`` is (N, k) or (k,) (sec. 4.2)."""
        return self._decode_moved(self.encoder(x).mean, deltas)

    def _decode_moved(self, mu: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        deltas = torch.as_tensor(deltas, dtype=mu.dtype, device=mu.device).expand(len(mu), self.num_labels)
        return self.decode({"z": mu + deltas @ self.directions()})

    @torch.no_grad()
    def edit(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, delta: float | str | None = None,
        *, confidence: float = 0.9, max_delta: float = 10.0, num_steps: int = 20,
    ) -> torch.Tensor:
        """Add (+delta) or remove (-delta) each attribute where ``target`` differs from ``y``.

        ``delta="auto"``: the automatic procedure the paper suggests (sec. 4.2): walk each image
        along its directions in ``num_steps`` steps up to ``max_delta`` and stop at the first
        distance where the model's own encoder and classifier, reading the *decoded* image, give every
        target attribute a probability of at least ``confidence`` (images that never get there move
        the full ``max_delta``).
        """
        y = check_binary_labels(y, self.num_labels, len(x)).to(x.device)
        target = check_binary_labels(target, self.num_labels, len(x), name="target").to(x.device)
        signs = target - y  # +1 add, -1 remove, 0 keep
        if delta != "auto":
            return self.move(x, signs * (self.edit_delta if delta is None else float(delta)))
        mu = self.encoder(x).mean
        edited, done = torch.empty_like(x), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for step in range(1, num_steps + 1):
            candidate = self._decode_moved(mu, signs * (max_delta * step / num_steps))
            p = self.attribute_probabilities(candidate)
            take = ~done & (torch.where(target.bool(), p, 1 - p).ge(confidence).all(1) | (step == num_steps))
            edited[take], done = candidate[take], done | take
        return edited

    def controls(self) -> list[Control]:
        return [Control(f"delta {name}", -2 * self.edit_delta, 2 * self.edit_delta) for name in self.attribute_names]

    sliders_need_reference = False

    def one_label(self, y: object) -> torch.Tensor | None:
        return None if y is None else torch.as_tensor(y, device=self.device).reshape(1, -1)

    def slider_space(self, x, y=None, *, span=None, **unused) -> SliderSpace:
        """delta along each attribute direction w_i / ||w_i|| (sec. 4.2), over [-span, span] if given
        (default: ``controls``, +/- 2 ``edit_delta``)."""
        mu, directions = self.encoder(x).mean, self.directions()
        axes = self.controls()
        if span is not None:
            axes = [replace(axis, low=-span, high=span) for axis in axes]
        return SliderSpace(axes, lambda deltas: self.decode({"z": mu + deltas.to(mu) @ directions}),
                           "delta along each attribute direction w_i/||w_i||")


def attribute_face_builder(model_class: type[VAC]):
    """The face builder of VAC or a subclass (IntroVAC): k binary attributes (``num_labels``), so
    ``num_classes`` must be 2."""

    def build(size, latent, classes, nets, kwargs):
        if classes != 2:
            name = model_class.__name__.lower()
            raise ValueError(f"{name} models binary attributes (num_labels=k of them), so num_classes must be 2, got {classes}")
        encoder, decoder = face_networks(size, latent, **nets)
        return model_class(encoder, decoder, **kwargs)

    return build


register_face_model("vac", several_attributes=True)(attribute_face_builder(VAC))
