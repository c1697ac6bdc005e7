"""The information-factorization conditional VAE-GAN, IFcVAE-GAN (Creswell et al. 2017).

An encoder E_phi(x) gives q(z|x) (it never sees the label) and, through a classifier head E_y on
the same features, a label prediction y_hat; the decoder D_theta reads [z, y]; a discriminator
C_chi tells real images from decoded ones; an auxiliary network A_psi tries to read y from z.
All losses are per-example means (the paper's L_bce = 1/M sum):

    L_rec   = BCE(D(z_hat, y_hat), x)                           (summed over channels, mean over pixels)
    L_KL    = KL(q(z|x) || N(0, I))                             (mean over latent dimensions)
    L_class = CE(E_y(x), y)
    L_gan   = 1/3 [BCE(C(x), 1) + BCE(C(D(z_hat, y_hat)), 0) + BCE(C(D(z, y)), 0)],  z ~ N(0, I)
    L_aux   = CE(A(z_hat), y)                                                   (eq. 5)

    theta minimises L_dec = L_rec - delta L_gan                                   (eq. 3)
    phi   minimises L_IFcVAE-GAN = L_rec + alpha L_KL + rho L_class - delta L_gan - L_aux   (eqs. 4, 6)
    chi   minimises L_gan;  psi minimises L_aux (on detached z)

One training step is Algorithm 1: one forward pass through every network, then each of the four
RMSprop optimizers steps on its own loss, every gradient taken at the same (pre-step) parameters
(:meth:`~latentlab.models.base.LatentVariableModel.update_simultaneously`). An edit flips the
label switch (sec. 3.3): decode the posterior mean of z with onehot(target).

Choices, and how they differ from the paper:

* L_bce is read as the *positive* cross entropy. The printed definition,
  1/M sum a log b + (1-a) log(1-b), drops the minus sign; only with it does "the discriminator
  minimises L_gan" make the discriminator tell real from fake, and "the encoder maximises L_aux"
  make it hide y from A.
* Every term is a batch mean, as the paper defines L_bce (1/M sum over the batch). The
  reconstruction BCE is summed over colour channels and divided by the image area, and L_KL by
  the latent size: per image, that is the author's public code. Its batch reduction is not: that
  code *sums* L_rec, L_KL and the GAN terms over the batch but averages L_class and L_aux, so
  there rho and the L_aux weight act batch-size times (64x at its batch of 64) more weakly against
  L_rec than here. ``class_weight=rho / 64, aux_weight=1 / 64`` gives the code's balance; the
  editing chapter trains both and reports which edits better. Cross entropy over ``num_classes``
  replaces the binary one (the same for 2 classes); ``aux_weight`` makes eq. 6's weight 1 on L_aux
  explicit (0: the "without L_aux" ablation).
* ``rho`` defaults to 1.0, the value sec. 4.4 states for the residual-net experiment whose numbers
  (MSE 0.011, 98% / 100%) Table 3 repeats; Table 3's caption says 0.1, apparently carried over from
  Table 1 (the DCGAN ablation: rho = 0.1, delta = 0.1, alpha = 0.2). The defaults are sec. 4.4's
  weights whatever the nets: the low KL weight is the regime of the paper's comparison with the
  cVAE-GAN.
* ``detach_label_features=True``: the head reads detached encoder features, as in the author's
  public code, so L_class shapes only the head, not the features z is computed from. The head
  still receives L_rec's (and the GAN term's) gradient through y_hat, which is part of phi's loss.
* ``generator_loss="non_saturating"`` replaces -delta L_gan in the decoder's and encoder's losses by
  delta * 1/2 [BCE(C(x_hat), 1) + BCE(C(x_prior), 1)] (fakes labelled real, as the author's code
  does): the same fixed point, but strong gradients while the discriminator wins easily.
  ``"minimax"`` (default) is eqs. 3-4 as printed; its gradient vanishes once C rejects every fake.
* ``decode_with="label"`` decodes the true one-hot y during training: the naive cVAE-GAN baseline
  of Bao et al. (with ``aux_weight=0``); the head is still trained, for reporting its accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_labels, check_learning_rate
from ..distributions import DiagonalGaussian
from ..nets.small import MLP
from ..nets.faces import Discriminator, face_networks
from .base import Batch, LabelDecoderModel, bce_against, split_batch
from .registry import register_face_model

DECODE_WITH = ("prediction", "label")
GENERATOR_LOSSES = ("minimax", "non_saturating")
#: model variants of the paper's comparisons (Tables 1-3), as constructor settings
VARIANTS = {
    "ifcvae_gan": {},
    "without_aux": {"aux_weight": 0.0},
    "cvae_gan": {"aux_weight": 0.0, "decode_with": "label"},
}


class IFcVAEGAN(LabelDecoderModel):
    """q(z|x) with a label head, p(x|z,y), a discriminator C(x) and an auxiliary adversary A(z).

    Args:
        encoder: ``x -> DiagonalGaussian`` over z built without a condition, exposing
            ``features(x) -> (N, feature_dim)`` and ``head(features) -> DiagonalGaussian``
            (:class:`~latentlab.nets.faces.ResidualEncoder`, :class:`~latentlab.nets.faces.DCGANEncoder`).
        decoder: ``(z, condition) -> Bernoulli logits`` with a condition of width ``num_classes``.
        label_head: ``features -> num_classes logits``, the encoder's classifier E_y.
        auxiliary: ``z -> num_classes logits``, the adversary A.
        discriminator: ``image -> 1 logit`` (real vs decoded), C.
        num_classes: number of label values.
        kl_weight, class_weight, gan_weight: alpha, rho, delta of eqs. 3-4 (sec. 4.4's values).
        aux_weight: weight of -L_aux in the encoder's loss (eq. 6: 1; 0: without L_aux).
        decode_with: ``"prediction"`` (softmax of the head, Algorithm 1) or ``"label"`` (true one-hot).
        detach_label_features: train the head on detached encoder features (the author's code).
        generator_loss: ``"minimax"`` (eqs. 3-4) or ``"non_saturating"`` (the author's code).
        learning_rate: RMSprop learning rate of all four optimizers (the author's code: 2e-4).
        discriminator_momentum: RMSprop momentum of the discriminator (sec. 4.4: 0.5).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        label_head: nn.Module,
        auxiliary: nn.Module,
        discriminator: nn.Module,
        *,
        num_classes: int = 2,
        kl_weight: float = 0.005,
        class_weight: float = 1.0,
        gan_weight: float = 0.005,
        aux_weight: float = 1.0,
        decode_with: str = "prediction",
        detach_label_features: bool = True,
        generator_loss: str = "minimax",
        learning_rate: float = 2e-4,
        discriminator_momentum: float = 0.5,
    ):
        super().__init__()
        self.check_label_networks(num_classes, decoder=decoder)
        if getattr(encoder, "condition_dim", 0) != 0:
            raise ValueError("the IFcVAE-GAN encoder must not see the label: build it with condition_dim=0")
        if not (hasattr(encoder, "features") and hasattr(encoder, "head")):
            raise ValueError(
                "the IFcVAE-GAN encoder must expose features(x) and head(features) so the label head can share "
                "its features; use latentlab.nets.faces.ResidualEncoder or DCGANEncoder"
            )
        weights = dict(kl_weight=kl_weight, class_weight=class_weight, gan_weight=gan_weight, aux_weight=aux_weight)
        for name, value in weights.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative number (0 turns its term off), got {value!r}")
        if decode_with not in DECODE_WITH:
            raise ValueError(f"decode_with must be one of {', '.join(map(repr, DECODE_WITH))}, got {decode_with!r}")
        if generator_loss not in GENERATOR_LOSSES:
            known = ", ".join(map(repr, GENERATOR_LOSSES))
            raise ValueError(f"generator_loss must be one of {known}, got {generator_loss!r}")
        check_learning_rate(learning_rate)
        if not 0 <= discriminator_momentum < 1:
            raise ValueError(f"discriminator_momentum must be in [0, 1), got {discriminator_momentum!r}")
        self.encoder, self.decoder, self.label_head = encoder, decoder, label_head
        self.auxiliary, self.discriminator = auxiliary, discriminator
        self.num_classes = num_classes
        self.kl_weight, self.class_weight, self.gan_weight = kl_weight, class_weight, gan_weight
        self.aux_weight, self.decode_with, self.generator_loss = aux_weight, decode_with, generator_loss
        self.detach_label_features = detach_label_features
        self.learning_rate, self.discriminator_momentum = learning_rate, discriminator_momentum
        self.set_likelihood("bernoulli", 1.0)  # decoder outputs are logits; decode() returns sigmoid images

    @classmethod
    def for_faces(
        cls,
        image_size: int,
        latent_dim: int,
        *,
        num_classes: int = 2,
        nets: str = "dcgan",
        channels: Sequence[int] | None = None,
        variant: str = "ifcvae_gan",
        **kwargs,
    ) -> IFcVAEGAN:
        """IFcVAE-GAN for RGB faces: encoder, decoder and discriminator of one ``nets`` kind
        (:func:`~latentlab.nets.faces.face_networks`), a linear label head on the encoder's
        features and an MLP auxiliary network.

        ``variant``: ``"ifcvae_gan"`` (the model), ``"without_aux"`` (``aux_weight=0``) or
        ``"cvae_gan"`` (``aux_weight=0, decode_with="label"``: Bao et al.'s naive cVAE-GAN).
        Other keyword arguments go to the constructor (e.g. Table 1's DCGAN weights
        ``kl_weight=0.2, gan_weight=0.1, class_weight=0.1``).
        """
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
        clash = {k: kwargs[k] for k in VARIANTS[variant] if k in kwargs and kwargs[k] != VARIANTS[variant][k]}
        if clash:
            raise ValueError(f"variant {variant!r} fixes {VARIANTS[variant]}; drop {clash} or choose another variant")
        encoder, decoder = face_networks(
            image_size, latent_dim, kind=nets, channels=channels, condition_dim=num_classes
        )
        return cls(
            encoder,
            decoder,
            nn.Linear(encoder.feature_dim, num_classes),
            MLP(latent_dim, (256, 256), num_classes),
            Discriminator(image_size, channels, kind=nets),
            num_classes=num_classes,
            **{**kwargs, **VARIANTS[variant]},
        )

    # ------------------------------------------------------------------ the interface

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        """q(z|x); the label, if given, is checked but not used (the encoder never sees it)."""
        if y is not None:
            check_labels(y, self.num_classes, len(x))
        return {"z": self.encoder(x)}

    has_classifier = True

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log softmax of the head E_y(x): the encoder's own attribute classifier."""
        return F.log_softmax(self.label_head(self.encoder.features(x)), dim=-1)

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every loss of Algorithm 1 from one forward pass; ``"loss"`` is the encoder's, eq. 6."""
        x, y = split_batch(batch, "IFcVAEGAN")
        y = check_labels(y, self.num_classes, len(x))
        y_onehot = F.one_hot(y, self.num_classes).float()
        # forward pass (Algorithm 1, lines 4-8)
        features = self.encoder.features(x)
        q_z = self.encoder.head(features)
        z_hat = q_z.rsample()
        label_logits = self.label_head(features.detach() if self.detach_label_features else features)
        y_hat = F.softmax(label_logits, dim=-1) if self.decode_with == "prediction" else y_onehot
        x_hat = self.decoder(z_hat, y_hat)  # line 7: logits of the reconstruction
        z_prior = torch.randn_like(z_hat)  # line 5: z ~ p(z)
        x_prior = self.decoder(z_prior, y_onehot)  # a prior sample with the batch's labels: L_gan's third term
        # the losses
        recon = -self.reconstruction_log_likelihood(x, x_hat).mean() / (x.shape[-2] * x.shape[-1])  # L_rec
        kl = q_z.kl_standard_normal().mean() / z_hat.shape[-1]  # L_KL
        label = F.cross_entropy(label_logits, y)  # L_class
        images = (x, torch.sigmoid(x_hat), torch.sigmoid(x_prior))  # C judges images in [0, 1]
        real, fake_rec, fake_prior = (self.discriminator(image) for image in images)
        gan = (bce_against(real, 1.0) + bce_against(fake_rec, 0.0) + bce_against(fake_prior, 0.0)) / 3  # L_gan (eq. 3)
        if self.generator_loss == "minimax":
            fool = -gan  # eqs. 3-4: the generator maximises the discriminator's loss
        else:
            fool = (bce_against(fake_rec, 1.0) + bce_against(fake_prior, 1.0)) / 2  # fakes labelled real
        aux_through_z = F.cross_entropy(self.auxiliary(z_hat), y)  # L_aux as the encoder sees it (eq. 5)
        decoder_loss = recon + self.gan_weight * fool  # eq. 3
        encoder_loss = (
            recon + self.kl_weight * kl + self.class_weight * label + self.gan_weight * fool  # eq. 4
            - self.aux_weight * aux_through_z  # eq. 6
        )
        aux = F.cross_entropy(self.auxiliary(z_hat.detach()), y)  # L_aux as A sees it: z fixed
        mse = (torch.sigmoid(x_hat) - x).pow(2).mean().detach()  # the paper's reported reconstruction error
        return {"loss": encoder_loss, "recon": recon, "kl": kl, "class": label, "gan": gan, "aux": aux,
                "decoder": decoder_loss, "encoder": encoder_loss, "mse": mse}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Four RMSprop optimizers, one per player of Algorithm 1 (theta, phi, chi, psi)."""
        lr = self.learning_rate
        return {
            "decoder": torch.optim.RMSprop(self.decoder.parameters(), lr=lr),
            "encoder": torch.optim.RMSprop([*self.encoder.parameters(), *self.label_head.parameters()], lr=lr),
            "discriminator": torch.optim.RMSprop(
                self.discriminator.parameters(), lr=lr, momentum=self.discriminator_momentum
            ),
            "auxiliary": torch.optim.RMSprop(self.auxiliary.parameters(), lr=lr),
        }

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """Algorithm 1, lines 11-14: every gradient from the same forward pass, then all four steps."""
        terms = self.loss_terms(batch)
        self.update_simultaneously([
            (optimizers["decoder"], terms["decoder"]),  # line 11
            (optimizers["encoder"], terms["encoder"]),  # line 12
            (optimizers["discriminator"], terms["gan"]),  # line 13: min L_gan (the paper's +grad of -BCE)
            (optimizers["auxiliary"], terms["aux"]),  # line 14
        ])
        return {name: float(value.detach()) for name, value in terms.items()}


def _register_variant(name: str, variant: str) -> None:
    """IFcVAE-GAN (or one of its ablations) with the face networks: residual unless ``nets="dcgan"``."""

    def build(size, latent, classes, nets, kwargs):
        return IFcVAEGAN.for_faces(
            size, latent, num_classes=classes, nets=nets["kind"], channels=nets["channels"], variant=variant, **kwargs
        )

    register_face_model(name)(build)


for _name, _variant in (("ifcvae_gan", "ifcvae_gan"), ("ifcvae_gan_without_aux", "without_aux"), ("cvae_gan", "cvae_gan")):
    _register_variant(_name, _variant)
