"""IntroVAC: the introspective Variational Classifier (Maggipinto, Terzi & Susto, 2020).

VAC (:mod:`latentlab.models.vac`) whose linear classifier gets one more logit, C_fake, that tells
real images from the decoder's. The encoder and classifier together act as the discriminator, so
no extra network is needed (sec. 3.1). With Z_r ~ q(z|X), dt() = detach:

    X_rr = G(dt(Z_r)),  X_g = G(Z_g), Z_g ~ N(0, I)
    L^r_EC(X_rr)    = -log C_fake(E(dt(X_rr)))                                        (eq. 6)
    L^r_G(X_rr, Y)  = -[Y log C_class(E(X_rr)) + (1 - Y) log(1 - C_class(E(X_rr)))]
                      - log(1 - C_fake(E(X_rr)))                                       (eq. 6)
    L^g_EC(X_g)     = -log C_fake(E(dt(X_g)))                                          (eq. 7)
    L^g_G(X_g)      = -log(1 - C_fake(E(X_g)))                                         (eq. 7)

One training step is Algorithm 1 of the paper:

1. encoder and classifier (Phi, w) take an Adam step on
   b_AE L_AE + b_CL L_CL + b_reg L_reg + b_EC (L^r_EC(X_rr) + L^g_EC(X_g)); the images are
   detached, so no gradient of the EC terms reaches the decoder;
2. the decoder (theta) takes an Adam step on the gradient it holds from step 1's backward pass
   (b_AE grad L_AE: the algorithm zeroes gradients only at the end of the loop) plus that of
   b_G (L^r_G(X_rr, Y) + L^g_G(X_g)), which passes through the *updated* encoder and classifier
   but moves only theta.

E(.) is the posterior mean and C reads it (as in the authors' code).

**One rule for the class term.** Real images (in L_CL) and reconstructions (in L^r_G) are both
asked to carry their labels and to read as real, so one loss serves both,
:meth:`IntroVAC.classification_loss`. By default it is eq. 6 as printed: the attribute BCE,
averaged over the k attributes, *plus* the fake logit's BCE against 'real'. The authors' code
instead averages one BCE over all k + 1 columns, which weights the attribute term by k/(k+1) and
the real/fake term by 1/(k+1) (both halved for one attribute); ``fake_in_attribute_mean=True``
gives that rule, in both places. The editing chapter trains Eye both ways.

**Less work, the same update.** X_rr = G(dt(Z_r)) is the reconstruction of step 1: the decoder
has not moved since, so decoding dt(Z_r) again (the authors' code does) gives the same images and
the same decoder gradient; the pass of step 1 is kept (its graph retained) and read in step 2. Each
step differentiates with respect to its own players only (``own_parameters_only``): in step 1 the
decoder passes L_AE's gradient to the encoder without computing its weight gradients (and the
introspective terms are differentiated first, so their graph, two encoder passes, is freed before
step 2 rather than retained with the rest: less memory held, less time at large batches); step 2 then
differentiates b_AE L_AE + b_G (L^r_G + L^g_G) with respect to theta, which is Algorithm 1's sum of
the two gradients with one backward pass through G(Z_r) instead of two; the encoder, which step 2
only passes through, computes no weight gradients.

From the authors' public code, where the paper is silent: the first ``warmup_epochs`` (5) epochs
train a plain VAC; the learning rates halve at epochs 60, 90 and 120. One departure: the code
re-creates its optimizers when the warm-up ends (and its schedulers then step the discarded ones,
so the code's decay never reaches the new optimizers); here the optimizers and their decay carry
on. The code's b_reg default is 0.1; the paper's 3 is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_binary_labels
from .base import Batch, bce_against, split_batch
from .registry import register_face_model
from .vac import VAC, attribute_face_builder


class IntroVAC(VAC):
    """VAC + a 'fake' logit and the two-step introspective update of Algorithm 1.

    Args (beyond :class:`~latentlab.models.VAC`'s):
        generator_weight: b_G, weight of the decoder's adversarial terms (5).
        introspection_weight: b_EC, weight of the encoder+classifier's adversarial terms (0.01).
        warmup_epochs: epochs of plain VAC training first (5 in the authors' code).
        fake_in_attribute_mean: average the class BCE over the k attribute logits and the fake logit
            together (the authors' code) instead of eq. 6's attribute mean plus fake term (default).
    Defaults are the paper's: lr 2e-4 halved at epochs 60/90/120 (of 150), batch 64.
    """

    extra_logits = 1  # C_fake, the last logit
    resume_may_change = (*VAC.resume_may_change, "epoch")  # the current epoch: state, not a setting

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        generator_weight: float = 5.0,
        introspection_weight: float = 0.01,
        warmup_epochs: int = 5,
        fake_in_attribute_mean: bool = False,
        lr_milestones: Sequence[int] = (60, 90, 120),
        **vac_args,
    ):
        super().__init__(encoder, decoder, lr_milestones=lr_milestones, **vac_args)
        if min(generator_weight, introspection_weight) < 0 or warmup_epochs < 0:
            raise ValueError("generator_weight, introspection_weight and warmup_epochs must be non-negative")
        self.generator_weight, self.introspection_weight = generator_weight, introspection_weight
        self.warmup_epochs = warmup_epochs
        self.fake_in_attribute_mean = bool(fake_in_attribute_mean)
        self.epoch = 0

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def fake_logit(self, x: torch.Tensor) -> torch.Tensor:
        """C_fake(E(x)): the logit that x is a decoded, not a real, image."""
        return self.classifier(self.encoder(x).mean)[:, -1]

    def classification_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The class term for images that should carry labels y and read as real: L_CL (real images, eq. 5)
        and the first part of L^r_G (reconstructions, eq. 6), by the one rule of the module docstring."""
        if self.fake_in_attribute_mean:  # the authors' code: one mean over the k + 1 columns
            return F.binary_cross_entropy_with_logits(logits, torch.cat([y, y.new_zeros(len(y), 1)], 1))
        return F.binary_cross_entropy_with_logits(logits[:, : self.num_labels], y) + bce_against(logits[:, -1], 0.0)

    def introspection_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Lines 3-9 of Algorithm 1: the VAC terms, X_rr and X_g, and the encoder+classifier loss.

        ``x_rr`` is step 1's reconstruction G(Z_r): equal to G(dt(Z_r)), whose gradient with respect
        to theta it also has; the encoder terms read it detached.
        """
        terms = self.vac_terms(x, y)
        del terms["z"]
        x_rr = terms.pop("x_r")  # G(dt(Z_r)) in value: the decoder has not moved since it was decoded
        x_g = self.decode({"z": torch.randn(len(x), self.latent_dim, device=x.device, dtype=x_rr.dtype)})
        ec_rec = bce_against(self.fake_logit(x_rr.detach()), 1.0)  # L^r_EC, eq. 6
        ec_gen = bce_against(self.fake_logit(x_g.detach()), 1.0)  # L^g_EC, eq. 7
        terms["vac"] = terms.pop("loss")
        introspection = self.introspection_weight * (ec_rec + ec_gen)
        terms["loss"] = terms["vac"] + introspection  # line 9
        terms.update(ec_rec=ec_rec, ec_gen=ec_gen, x_rr=x_rr, x_g=x_g, introspection=introspection)
        return terms

    def generator_loss(self, x_rr: torch.Tensor, x_g: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Line 12 of Algorithm 1: b_G (L^r_G(X_rr, Y) + L^g_G(X_g)), read by the current encoder and classifier."""
        g_rec = self.classification_loss(self.classifier(self.encoder(x_rr).mean), y)  # L^r_G: right class, 'real'
        g_gen = bce_against(self.fake_logit(x_g), 0.0)  # L^g_G, eq. 7
        return {"g_rec": g_rec, "g_gen": g_gen, "generator": self.generator_weight * (g_rec + g_gen)}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every term of one step at the current parameters (no update; the decoder's loss is ``generator``)."""
        x, y = split_batch(batch, "IntroVAC")
        y = check_binary_labels(y, self.num_labels, len(x))
        terms = self.introspection_terms(x, y)
        terms.update(self.generator_loss(terms.pop("x_rr"), terms.pop("x_g"), y))
        return terms

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        if self.epoch < self.warmup_epochs:
            return self.vac_step(batch, optimizers)
        x, y = split_batch(batch, "IntroVAC")
        y = check_binary_labels(y, self.num_labels, len(x))
        terms = self.introspection_terms(x, y)
        x_rr, x_g = terms.pop("x_rr"), terms.pop("x_g")
        # lines 10-11: Phi and w step on line 9's loss, in two backward passes: the introspective terms' graph
        # (two encoder passes) is freed at once, the VAC terms' (with X_rr and L_AE) stays for step 2
        encoder = optimizers["encoder"]
        encoder.zero_grad(set_to_none=True)
        terms.pop("introspection").backward(inputs=self.own_parameters(encoder))
        self.update(encoder, terms["vac"], retain_graph=True, accumulate=True, own_parameters_only=True)
        # lines 12-14: theta steps on b_AE grad L_AE (line 9's share, the algorithm keeps it) plus the generator
        # loss's, read through the updated E and C: one backward pass for both, theta's gradients only
        generator = self.generator_loss(x_rr, x_g, y)
        self.update(optimizers["decoder"], self.ae_weight * terms["ae"] + generator["generator"],
                    own_parameters_only=True)
        terms.update(generator)
        return {name: float(value.detach()) for name, value in terms.items()}


register_face_model("introvac", several_attributes=True, warms_up=True)(attribute_face_builder(IntroVAC))
