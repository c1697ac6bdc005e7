"""The characteristic capturing VAE (CCVAE; Joy, Schmon, Torr, Siddharth, Rainforth, ICLR 2021), multi-class.

The latent splits into z = (z_c, z_style). The label y lives *only* in z_c, through a
class-conditional prior and a classifier that reads nothing else:

    p(x, y, z) = p(x | z) p(z_c | y) p(z_style) p(y)       p(z_c | y=k) = N(mu_k, diag(sigma_k^2)), learned
    q(z, y | x) = q(z | x) q(y | z_c)                      q(y | z_c) = softmax(classifier(z_c))

The decoder never sees y: changing the class means moving z_c, with the style untouched.

Supervised objective (Joy et al. 2021, eq. 4), one sample z ~ q(z|x) per example:

    log p(x, y) >= E_q(z|x)[ q(y|z_c) / q(y|x) * log( p(x|z) p(z|y) / (q(y|z_c) q(z|x)) ) ]
                   + log q(y|x) + log p(y)
    with q(y|x) = E_q(z|x)[q(y|z_c)] ~= 1/K sum_k q(y|z_c^(k))        (Monte Carlo, K = classifier_samples)

Unsupervised objective (eq. 5), with y summed over the classes rather than sampled, as the first
author advises for a categorical label (thwjoy/ccvae issue #1):

    log p(x) >= E_q(z|x)[ log p(x|z) + log p(z_style) - log q(z|x)
                          + sum_y q(y|z_c) (log p(z_c|y) + log p(y) - log q(y|z_c)) ]

How we compute it, and why:

* ``beta`` weighs the latent terms log p(z|y) - log q(z|x) (the KL part), as in the MNIST study
  of Benyahia et al. 2024; ``beta=1`` gives the bounds above.
* The latent log-ratio is the single-sample estimate at the drawn z, as the authors' code does
  through Pyro traces; a closed-form KL would not be exact here, because the weight q(y|z_c)/q(y|x)
  and the enumeration weights q(y|z_c) depend on the same sample.
* q(y|z_c) inside both bounds reads a *detached* z_c ("to reduce variance", authors' code), so the
  encoder learns where to put z_c from p(z_c|y) and from the q(y|x) term; the classifier still gets
  gradients from every term. The Monte Carlo q(y|x) is not detached.
* p(y) is uniform over the classes.
* **The bound needs log p(x|z) < 0.** A constant c added to log p(x|z) leaves the bound's value
  but adds -c w grad log q(y|x) to its gradient (only the Monte Carlo q(y|x) carries the encoder's
  gradient through the weight), which for a positive log-density pushes the encoder to make its
  own classifier wrong. ``loss_terms`` warns; the book's implementation notes show it measured.

Semi-supervised batches mark unlabelled examples with ``UNLABELLED`` (-1); each example contributes
its own bound, and the loss is minus their batch mean.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_features, check_labels, check_learning_rate
from ..distributions import DiagonalGaussian, gaussian_log_density
from ..nets.faces import face_networks
from .base import Batch, LatentVariableModel, split_partial_batch
from .registry import FACE_LIKELIHOOD, register_face_model
from .space import Control, SliderSpace, with_default


class ClassConditionalPrior(nn.Module):
    """p(z_c | y=k) = N(mean_k, diag(scale_k^2)): a learned mean and scale per class.

    Means start as independent N(0, 1) draws so the classes begin apart; scales start at 1
    (stored through a softplus, clamped at 1e-3 as in the authors' code, so they stay positive).
    """

    def __init__(self, num_classes: int, characteristic_dim: int):
        super().__init__()
        self.mean = nn.Parameter(torch.randn(num_classes, characteristic_dim))
        self.raw_scale = nn.Parameter(torch.full((num_classes, characteristic_dim), math.log(math.e - 1.0)))

    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale).clamp_min(1e-3)

    def forward(self, y: torch.Tensor) -> DiagonalGaussian:
        """The prior of each label in ``y`` (class indices)."""
        return DiagonalGaussian(self.mean[y], 2 * torch.log(self.scale()[y]))

    def log_prob_all(self, z_c: torch.Tensor) -> torch.Tensor:
        """log p(z_c | y=k) for every class k: shape (batch, num_classes)."""
        log_var = 2 * torch.log(self.scale())
        return gaussian_log_density(z_c[:, None, :], self.mean[None], log_var[None])


class CCVAE(LatentVariableModel):
    """q(z|x) over (z_c, z_style), p(x|z), the conditional prior p(z_c|y) and the classifier q(y|z_c).

    Args:
        encoder: module ``x -> DiagonalGaussian`` over ``characteristic_dim + style_dim`` coordinates;
            the first ``characteristic_dim`` are z_c.
        decoder: module ``z -> likelihood parameters`` reading all of z (and never y).
        num_classes: number of label values (10 for digits).
        characteristic_dim: size of z_c (default: one coordinate per class).
        classifier: module ``z_c -> logits``; default a linear map, so the class is a linear read-out of z_c.
        beta: weight of the latent log-ratio (the KL terms); 1 gives the paper's bounds.
        classifier_samples: Monte Carlo samples K of z_c for q(y|x) (100 in the authors' code).
        likelihood, decoder_std: the reconstruction likelihood, as in :class:`~latentlab.VAE`.
        learning_rate: Adam learning rate of the networks.
        prior_learning_rate: Adam learning rate of the class priors p(z_c|y) (default: 100 x ``learning_rate``).
            At the authors' one shared rate the priors lag behind the codes of their class, so
            sampling and editing, which read the priors, fail while classification works (the
            book's implementation notes give the measurements).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        num_classes: int = 10,
        characteristic_dim: int | None = None,
        classifier: nn.Module | None = None,
        beta: float = 1.0,
        classifier_samples: int = 100,
        likelihood: str = "bernoulli",
        decoder_std: float = 1.0,
        learning_rate: float = 1e-3,
        prior_learning_rate: float | None = None,
    ):
        super().__init__()
        check_learning_rate(learning_rate)
        if prior_learning_rate is not None:
            check_learning_rate(prior_learning_rate, "prior_learning_rate")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        characteristic_dim = num_classes if characteristic_dim is None else characteristic_dim
        latent_dim = getattr(encoder, "latent_dim", None)
        if latent_dim is not None and not 0 < characteristic_dim < latent_dim:
            raise ValueError(
                f"characteristic_dim must lie between 1 and the encoder's latent_dim - 1 = {latent_dim - 1} "
                f"(z_c and a style part), got {characteristic_dim}; build the encoder with a larger latent_dim"
            )
        if beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        if classifier_samples < 1:
            raise ValueError(f"classifier_samples must be at least 1, got {classifier_samples}")
        self.encoder, self.decoder = encoder, decoder
        self.classifier = classifier if classifier is not None else nn.Linear(characteristic_dim, num_classes)
        self.prior_c = ClassConditionalPrior(num_classes, characteristic_dim)
        self.num_classes, self.characteristic_dim = num_classes, characteristic_dim
        self.beta, self.classifier_samples, self.learning_rate = beta, classifier_samples, learning_rate
        self.prior_learning_rate = 100 * learning_rate if prior_learning_rate is None else prior_learning_rate
        self.set_likelihood(likelihood, decoder_std)
        self._warned_positive_log_px = False

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    @property
    def style_dim(self) -> int:
        return self.latent_dim - self.characteristic_dim

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam, with its own learning rate for the class priors (see ``prior_learning_rate``)."""
        prior = list(self.prior_c.parameters())
        networks = [p for p in self.parameters() if all(p is not q for q in prior)]
        groups = [{"params": networks}, {"params": prior, "lr": self.prior_learning_rate}]
        return {"model": torch.optim.Adam(groups, lr=self.learning_rate)}

    # ------------------------------------------------------------------ the distributions

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_c, z_style) from a full latent vector."""
        return z[..., : self.characteristic_dim], z[..., self.characteristic_dim :]

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        """q(z|x), split into ``z_c`` and ``z_style``; the label, if given, is not used."""
        q = self.encoder(x)
        (mean_c, mean_s), (log_var_c, log_var_s) = self.split(q.mean), self.split(q.log_var)
        return {"z_c": DiagonalGaussian(mean_c, log_var_c), "z_style": DiagonalGaussian(mean_s, log_var_s)}

    def decode(self, latents: dict[str, torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z) for z = (z_c, z_style); y is not read: the class lives in z_c."""
        z_c = check_features(latents["z_c"], self.characteristic_dim, name="z_c")
        z_style = check_features(latents["z_style"], self.style_dim, name="z_style")
        return self.to_data_space(self.decoder(torch.cat([z_c, z_style], dim=-1)))

    def log_q_y_given_zc(self, z_c: torch.Tensor) -> torch.Tensor:
        """log q(y|z_c) for every class: shape (..., num_classes)."""
        return F.log_softmax(self.classifier(z_c), dim=-1)

    def log_q_y_given_x(self, q_z: DiagonalGaussian, y: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Monte Carlo log q(y|x) = log 1/K sum_k q(y|z_c^(k)), z_c^(k) ~ q(z_c|x) reparameterised (eq. 4)."""
        num_samples = self.classifier_samples if num_samples is None else num_samples
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        (mean_c, _), (log_var_c, _) = self.split(q_z.mean), self.split(q_z.log_var)
        z_c = mean_c + torch.exp(0.5 * log_var_c) * torch.randn(num_samples, *mean_c.shape, device=mean_c.device)
        log_q = self.log_q_y_given_zc(z_c)  # (K, batch, classes)
        picked = log_q.gather(-1, y.expand(num_samples, -1)[..., None])[..., 0]
        return torch.logsumexp(picked, dim=0) - math.log(num_samples)

    # ------------------------------------------------------------------ the two bounds

    def _log_q_z_and_log_p_style(self, z: torch.Tensor, q_z: DiagonalGaussian) -> tuple[torch.Tensor, torch.Tensor]:
        """log q(z|x) at the sample, and log p(z_style) under N(0, I)."""
        _, z_style = self.split(z)
        log_p_style = gaussian_log_density(z_style, torch.zeros_like(z_style), torch.zeros_like(z_style))
        return q_z.log_prob(z), log_p_style

    def labelled_bound(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The labelled bound of eq. 4 per example, with its parts (every tensor has shape (batch,))."""
        q_z = self.encoder(x)
        z = q_z.rsample()
        z_c, _ = self.split(z)
        log_px = self.reconstruction_log_likelihood(x, self.decoder(z))
        log_qz, log_p_style = self._log_q_z_and_log_p_style(z, q_z)
        log_pz = self.prior_c(y).log_prob(z_c) + log_p_style  # log p(z|y)
        log_qy_zc = self.log_q_y_given_zc(z_c.detach()).gather(-1, y[:, None])[:, 0]
        log_qy_x = self.log_q_y_given_x(q_z, y)
        log_py = -math.log(self.num_classes)
        weight = torch.exp(log_qy_zc - log_qy_x)  # q(y|z_c) / q(y|x)
        bound = weight * (log_px + self.beta * (log_pz - log_qz) - log_qy_zc) + log_qy_x + log_py
        return {"bound": bound, "log_px": log_px, "kl": log_qz - log_pz, "log_qy_x": log_qy_x, "weight": weight}

    def unlabelled_bound(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unlabelled bound of eq. 5 per example, y summed over all classes."""
        q_z = self.encoder(x)
        z = q_z.rsample()
        z_c, _ = self.split(z)
        log_px = self.reconstruction_log_likelihood(x, self.decoder(z))
        log_qz, log_p_style = self._log_q_z_and_log_p_style(z, q_z)
        log_q_y = self.log_q_y_given_zc(z_c.detach())  # (batch, classes)
        q_y = log_q_y.exp()
        log_p_zc = self.prior_c.log_prob_all(z_c)  # (batch, classes)
        log_py = -math.log(self.num_classes)
        expected_log_pz = (q_y * log_p_zc).sum(-1) + log_p_style  # E_q(y|z_c)[log p(z|y)]
        label_terms = (q_y * (log_py - log_q_y)).sum(-1)  # E_q(y|z_c)[log p(y) - log q(y|z_c)]
        bound = log_px + self.beta * (expected_log_pz - log_qz) + label_terms
        return {"bound": bound, "log_px": log_px, "kl": log_qz - expected_log_pz}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Minus the batch mean of each example's bound: eq. 4 where labelled, eq. 5 where not."""
        x, y, labelled = split_partial_batch(batch, self.num_classes)
        parts = []
        if bool(labelled.any()):
            parts.append(self.labelled_bound(x[labelled], y[labelled]))
        if not bool(labelled.all()):
            parts.append(self.unlabelled_bound(x[~labelled]))
        bound = torch.cat([p["bound"] for p in parts])
        log_px = torch.cat([p["log_px"] for p in parts])
        mean_log_px = float(log_px.detach().mean())
        if not self._warned_positive_log_px and mean_log_px > 0:
            self._warned_positive_log_px = True
            warnings.warn(
                f"CCVAE: log p(x|z) is positive ({mean_log_px:.4g} per example), so the supervised bound's "
                "weight q(y|z_c)/q(y|x) pushes the encoder to make its own classifier wrong (see the CCVAE "
                "docstring). Use a likelihood whose log-density stays negative: bernoulli, or a laplace/gaussian "
                "decoder_std of 1 (the authors' Laplace(., 1)).",
                stacklevel=2,
            )
        kl = torch.cat([p["kl"] for p in parts])
        return {
            "loss": -bound.mean(),
            "recon": -log_px.mean(),
            "kl": kl.mean(),
            "labelled": labelled.float().mean(),
        }

    # ------------------------------------------------------------------ reading and intervening

    has_classifier = True

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y | z_c = posterior mean): the model's own classifier, deterministic (as the authors' ``classify``)."""
        return self.log_q_y_given_zc(self.encode(x)["z_c"].mean)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Conditional generation: z_c ~ p(z_c|y), z_style ~ N(0, I) or the rows of ``style`` (shared style)."""
        y = check_labels(y, self.num_classes).to(self.device)
        z_c = self.prior_c(y).rsample()
        if style is None:
            style = torch.randn(len(y), self.style_dim, device=self.device)
        return self.decode({"z_c": z_c, "z_style": style.to(self.device)})

    @torch.no_grad()
    def characteristic_transport(self, z_c: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Move z_c from class ``source`` to class ``target``, keeping its standardised offset from the class mean.

        z_c' = mean_t + (z_c - mean_s) * scale_t / scale_s: the map that carries p(z_c|source) onto
        p(z_c|target) coordinate by coordinate. A code at its class mean lands on the target mean.
        """
        scale = self.prior_c.scale()
        mean = self.prior_c.mean
        return mean[target] + (z_c - mean[source]) * scale[target] / scale[source]

    @torch.no_grad()
    def edit(self, x: torch.Tensor, y: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Characteristic intervention: transport z_c to the target class, keep z_style, decode.

        ``y`` is the current class; pass None to use the model's own prediction.
        """
        self.eval()
        x = x.to(self.device)
        target = check_labels(target, self.num_classes, len(x)).to(self.device)
        source = (
            self.predict(x).to(self.device) if y is None else check_labels(y, self.num_classes, len(x)).to(self.device)
        )
        codes = self.encode(x)
        z_c = self.characteristic_transport(codes["z_c"].mean, source, target)
        return self.decode({"z_c": z_c, "z_style": codes["z_style"].mean})

    @torch.no_grad()
    def swap_characteristic(self, x_style: torch.Tensor, x_characteristic: torch.Tensor) -> torch.Tensor:
        """Decode the z_c of ``x_characteristic`` with the z_style of ``x_style`` (pairwise, same batch size)."""
        self.eval()
        style, characteristic = self.encode(x_style.to(self.device)), self.encode(x_characteristic.to(self.device))
        return self.decode({"z_c": characteristic["z_c"].mean, "z_style": style["z_style"].mean})

    @torch.no_grad()
    def traverse(self, x: torch.Tensor, dim: int, values: torch.Tensor) -> torch.Tensor:
        """Decode one image with characteristic coordinate ``dim`` set to each of ``values``: (len(values), *image)."""
        if not 0 <= dim < self.characteristic_dim:
            raise ValueError(f"dim must index z_c, 0..{self.characteristic_dim - 1}, got {dim}")
        self.eval()
        codes = self.encode(x[:1].to(self.device))
        z_c = codes["z_c"].mean.repeat(len(values), 1)
        z_c[:, dim] = values.to(self.device)
        return self.decode({"z_c": z_c, "z_style": codes["z_style"].mean.expand(len(values), -1)})

    def controls(self) -> list[Control]:
        """Each characteristic coordinate, over the span of the class priors' means +/- 3 scales."""
        mean, scale = self.prior_c.mean.detach(), self.prior_c.scale().detach()
        low, high = (mean - 3 * scale).min(0).values, (mean + 3 * scale).max(0).values
        return [Control(f"z_c[{i}]", float(low[i]), float(high[i])) for i in range(self.characteristic_dim)]

    sliders_need_reference = False

    def slider_space(self, x, y=None, **unused) -> SliderSpace:
        """Each characteristic coordinate z_c[i], over :meth:`controls` (the image's z_style kept)."""
        codes = {name: q.mean for name, q in self.encode(x).items()}
        axes = [with_default(axis, own) for axis, own in zip(self.controls(), codes["z_c"][0].tolist())]
        style = codes["z_style"]
        return SliderSpace(axes, lambda z_c: self.decode({"z_c": z_c.to(style), "z_style": style.expand(len(z_c), -1)}),
                           "characteristic coordinates z_c[i] (the image's z_style kept)")


@register_face_model("ccvae")
def _face_ccvae(size, latent, classes, nets, kwargs):
    kwargs.setdefault("learning_rate", 1e-4)  # the official CelebA setting; 1e-3 drove q(z|x)'s KL to NaN on faces
    # The official Laplace(., 1), not the other face models' scale 0.1: CCVAE's bound needs log p(x|z) < 0
    # (see the class docstring); at scale 0.1 its own classifier ended up inverted on faces (accuracy 0).
    kwargs.setdefault("decoder_std", 1.0)
    encoder, decoder = face_networks(size, latent, **nets)
    return CCVAE(encoder, decoder, num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs})
