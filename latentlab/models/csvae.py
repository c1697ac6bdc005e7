"""The conditional subspace VAE, CSVAE (Klys, Snell & Zemel, NeurIPS 2018).

The latent space is split into z and one low-dimensional subspace w_i per binary label y_i.
Generative model: p(x, y, w, z) = p(x|w,z) p(w|y) p(z) p(y), with p(z) = N(0, I) and a fixed
label-dependent prior p(w_i|y_i). Inference: q(z|x) (no label) and q(w|x,y). An adversary
q_delta(y|z) tries to read the labels from z; the encoders and decoder are pushed to leave it
at maximum entropy, which minimises (a bound on) the mutual information between z and y, so the
label information has to go to w.

Minimisation form of the paper's objective, per example (its terms M1, M2 and N, with the weights
beta1..beta5 the reimplementations attach to them):

    M1 = beta1 * -E_q[log p(x|w,z)] + beta2 * KL(q(w|x,y) || p(w|y)) + beta3 * KL(q(z|x) || N(0, I))
    M2 = beta4 * sum_y q_delta(y|z) log q_delta(y|z)        (negative entropy of the adversary, via z)
    loss = M1 + M2          minimised over the encoders and the decoder
    -N   = beta5 * -log q_delta(y|z)   (z detached)        minimised over the adversary only

(log p(y) is a constant and is left out.) For k labels the adversary outputs k independent
Bernoulli probabilities; the entropy and the cross entropy are summed over labels.

The prior p(w|y) is fixed, as in the paper: by default N(0, 0.1^2 I) for y_i = 1 and N(3, I) for
y_i = 0 (the reference notes' choice; the paper gives no numbers, and the public reimplementations
disagree on which label gets which), both settable. The weights beta1..beta5 = 20, 1, 0.2, 10, 1 are
the reimplementations' defaults. An edit is the paper's attribute switch G(x, p) = mu_theta(mu_phi(x), p):
keep the mean of q(z|x), set w to a point of the target label's prior. The book's implementation
notes list what was checked against which source.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_binary_labels, check_learning_rate
from ..distributions import DiagonalGaussian
from ..nets.small import MLP, MLPDecoder, MLPEncoder
from ..nets.faces import face_networks
from .base import Batch, LatentVariableModel, split_batch
from .registry import FACE_LIKELIHOOD, register_face_model
from .space import Control, SliderSpace, with_default


class CSVAE(LatentVariableModel):
    """CSVAE with fixed priors p(w|y) and an optional adversary q_delta(y|z) on its own optimizer.

    Args:
        z_encoder: module ``x -> DiagonalGaussian`` over z (never sees the labels).
        w_encoder: module ``(x, y) -> DiagonalGaussian`` over w, of width ``num_labels * w_dim``,
            with ``y`` the (batch, num_labels) 0/1 labels as floats.
        decoder: module ``cat([z, w]) -> likelihood parameters``.
        adversary: module ``z -> num_labels logits`` (q_delta); ``None`` trains without it (the ablation).
        num_labels: k, the number of binary labels (one subspace each).
        w_dim: dimension of each subspace w_i.
        beta1..beta5: weights of reconstruction, KL(w), KL(z), adversary entropy, adversary loss.
        w_prior_means, w_prior_stds: mean and standard deviation of p(w_i | y_i = 0) and (y_i = 1).
        likelihood, decoder_std: the reconstruction likelihood, as in :class:`~latentlab.VAE`.
        learning_rate: Adam learning rate of both optimizers.
    """

    settings_buffers = (*LatentVariableModel.settings_buffers, "w_prior_mean", "w_prior_log_var")

    def __init__(
        self,
        z_encoder: nn.Module,
        w_encoder: nn.Module,
        decoder: nn.Module,
        adversary: nn.Module | None,
        *,
        num_labels: int = 1,
        w_dim: int = 2,
        beta1: float = 20.0,
        beta2: float = 1.0,
        beta3: float = 0.2,
        beta4: float = 10.0,
        beta5: float = 1.0,
        w_prior_means: tuple[float, float] = (3.0, 0.0),
        w_prior_stds: tuple[float, float] = (1.0, 0.1),
        likelihood: str = "gaussian",
        decoder_std: float = 1.0,
        learning_rate: float = 1e-3,
    ):
        super().__init__()
        if num_labels < 1 or w_dim < 1:
            raise ValueError(f"need num_labels >= 1 and w_dim >= 1, got {num_labels} and {w_dim}")
        if getattr(z_encoder, "condition_dim", 0) != 0:
            raise ValueError("q(z|x) must not see the labels: build the z encoder with condition_dim=0")
        if getattr(w_encoder, "condition_dim", num_labels) != num_labels:
            raise ValueError(f"q(w|x,y) reads the labels: build the w encoder with condition_dim={num_labels}")
        if getattr(w_encoder, "latent_dim", num_labels * w_dim) != num_labels * w_dim:
            raise ValueError(f"the w encoder must output num_labels * w_dim = {num_labels * w_dim} dimensions")
        check_learning_rate(learning_rate)
        if min(beta1, beta2, beta3, beta4, beta5) < 0:
            raise ValueError("beta1..beta5 must be non-negative")
        if len(w_prior_means) != 2 or len(w_prior_stds) != 2 or min(w_prior_stds) <= 0:
            raise ValueError("w_prior_means and w_prior_stds give (y=0, y=1) values; the stds must be positive")
        self.z_encoder, self.w_encoder, self.decoder, self.adversary = z_encoder, w_encoder, decoder, adversary
        self.num_labels, self.w_dim, self.learning_rate = num_labels, w_dim, learning_rate
        self.beta1, self.beta2, self.beta3, self.beta4, self.beta5 = beta1, beta2, beta3, beta4, beta5
        self.register_buffer("w_prior_mean", torch.tensor(w_prior_means, dtype=torch.float32))
        self.register_buffer("w_prior_log_var", 2 * torch.log(torch.tensor(w_prior_stds, dtype=torch.float32)))
        self.set_likelihood(likelihood, decoder_std)

    @classmethod
    def mlp(
        cls,
        input_dim: int,
        z_dim: int,
        *,
        num_labels: int = 1,
        w_dim: int = 2,
        hidden_dims: Sequence[int] = (64, 64),
        adversary: bool = True,
        **kwargs,
    ) -> CSVAE:
        """A CSVAE for vectors with MLP encoders, decoder and adversary (``adversary=False``: the ablation)."""
        width = num_labels * w_dim
        return cls(
            MLPEncoder(input_dim, z_dim, hidden_dims),
            MLPEncoder(input_dim, width, hidden_dims, condition_dim=num_labels),
            MLPDecoder(z_dim + width, input_dim, tuple(reversed(hidden_dims))),
            MLP(z_dim, hidden_dims, num_labels) if adversary else None,
            num_labels=num_labels,
            w_dim=w_dim,
            **kwargs,
        )

    @property
    def latent_dim(self) -> int:
        return self.z_encoder.latent_dim

    def labels(self, y: object, batch_size: int | None = None) -> torch.Tensor:
        """Binary labels as a (batch, num_labels) float tensor; 1-D labels are accepted when num_labels = 1."""
        return check_binary_labels(y, self.num_labels, batch_size)

    def prior_w(self, y: torch.Tensor) -> DiagonalGaussian:
        """p(w|y) = prod_i N(mean[y_i], std[y_i]^2 I) for labels already checked by :meth:`labels`."""
        index = y.long().repeat_interleave(self.w_dim, dim=1)  # (batch, num_labels * w_dim)
        return DiagonalGaussian(self.w_prior_mean[index], self.w_prior_log_var[index])

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        """q(z|x) and, when the labels are given, q(w|x,y)."""
        q = {"z": self.z_encoder(x)}
        if y is not None:
            q["w"] = self.w_encoder(x, self.labels(y, len(x)))
        return q

    def decode(self, latents: dict[str, torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|w,z); the labels are not needed (they live in w)."""
        out = self.decoder(torch.cat([latents["z"], latents["w"]], dim=1))
        return self.to_data_space(out)

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = split_batch(batch, "CSVAE")
        y = self.labels(y, len(x))
        q_z, q_w = self.z_encoder(x), self.w_encoder(x, y)
        z, w = q_z.rsample(), q_w.rsample()
        out = self.decoder(torch.cat([z, w], dim=1))
        recon = -self.reconstruction_log_likelihood(x, out).mean()
        kl_w = q_w.kl(self.prior_w(y)).mean()  # KL(q(w|x,y) || p(w|y))
        kl_z = q_z.kl_standard_normal().mean()  # KL(q(z|x) || N(0, I))
        terms = {"recon": recon, "kl_w": kl_w, "kl_z": kl_z, "elbo": -(recon + kl_w + kl_z)}
        loss = self.beta1 * recon + self.beta2 * kl_w + self.beta3 * kl_z  # M1
        if self.adversary is not None:
            logits = self.adversary(z)  # q_delta(y|z) as the encoder sees it
            # sum_y q log q for each Bernoulli, from logits: p log p + (1 - p) log(1 - p)
            neg_entropy = torch.sigmoid(logits) * F.logsigmoid(logits) + torch.sigmoid(-logits) * F.logsigmoid(-logits)
            terms["neg_entropy"] = neg_entropy.sum(1).mean()
            loss = loss + self.beta4 * terms["neg_entropy"]  # + M2
            bce = F.binary_cross_entropy_with_logits(self.adversary(z.detach()), y, reduction="none")
            terms["adversary"] = self.beta5 * bce.sum(1).mean()  # -N, for the adversary's own step
        terms["loss"] = loss
        return terms

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        model = [*self.z_encoder.parameters(), *self.w_encoder.parameters(), *self.decoder.parameters()]
        optimizers = {"model": torch.optim.Adam(model, lr=self.learning_rate)}
        if self.adversary is not None:
            optimizers["adversary"] = torch.optim.Adam(self.adversary.parameters(), lr=self.learning_rate)
        return optimizers

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        terms = self.loss_terms(batch)
        # 1. encoders and decoder minimise M1 + M2 (M2 pushes the adversary's output towards 1/2)
        self.update(optimizers["model"], terms["loss"])
        if self.adversary is not None:
            # 2. the adversary maximises N on detached z; zeroing first drops what step 1 left on it
            self.update(optimizers["adversary"], terms["adversary"])
        return {name: float(value.detach()) for name, value in terms.items()}

    @torch.no_grad()
    def edit(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Keep the mean of q(z|x), replace w by the mean of p(w|target) (or a draw from it)."""
        self.labels(y, len(x))
        p_w = self.prior_w(self.labels(target, len(x)))
        w = p_w.rsample() if sample else p_w.mean
        return self.decode({"z": self.z_encoder(x).mean, "w": w})

    @torch.no_grad()
    def sample(self, y: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Decode w ~ p(w|y) and z ~ N(0, I) (or the rows of ``style``), one per row of ``y``."""
        w = self.prior_w(self.labels(y)).rsample()
        z = torch.randn(len(w), self.latent_dim, device=w.device) if style is None else style.to(w.device)
        return self.decode({"z": z, "w": w})

    sliders_need_reference = False

    def one_label(self, y: object) -> torch.Tensor | None:
        return None if y is None else torch.as_tensor(y, device=self.device).reshape(1, -1)

    def slider_space(self, x, y=None, *, names=None, **unused) -> SliderSpace:
        """Each coordinate of w, the labels' subspace, over the priors' means +/- 3 scales (the image's z kept)."""
        if y is None:
            raise ValueError("CSVAE's w encoder reads the labels: pass y, the image's 0/1 labels (one per attribute)")
        codes = {name: q.mean for name, q in self.encode(x, y).items()}
        std = (0.5 * self.w_prior_log_var).exp()
        low, high = float((self.w_prior_mean - 3 * std).min()), float((self.w_prior_mean + 3 * std).max())
        axes = []
        for i, own in enumerate(codes["w"][0].tolist()):
            label = f" ({names[i // self.w_dim]})" if names else ""
            axes.append(with_default(Control(f"w[{i}]{label}", low, high), own))
        z = codes["z"]
        return SliderSpace(axes, lambda w: self.decode({"z": z.expand(len(w), -1), "w": w.to(z)}),
                           "coordinates of w, the labels' subspace (the image's z kept)")

    def controls(self) -> list[Control]:
        low, high = float(self.w_prior_mean.min()) - 3, float(self.w_prior_mean.max()) + 3
        return [Control(f"z[{i}]", -3.0, 3.0) for i in range(self.latent_dim)] + [
            Control(f"w[{i}]", low, high) for i in range(self.num_labels * self.w_dim)
        ]


@register_face_model("csvae")
def _face_csvae(size, latent, classes, nets, kwargs):
    num_labels, w_dim = 1, kwargs.pop("w_dim", 2)  # one binary attribute, its own w subspace
    z_encoder, _ = face_networks(size, latent, **nets)
    w_encoder, _ = face_networks(size, w_dim * num_labels, **nets, encoder_condition_dim=num_labels)
    _, decoder = face_networks(size, latent + w_dim * num_labels, **nets)  # p(x | z, w) reads both parts
    adversary = MLP(latent, (256, 256), num_labels)
    return CSVAE(
        z_encoder, w_encoder, decoder, adversary, num_labels=num_labels, w_dim=w_dim, **{**FACE_LIKELIHOOD, **kwargs}
    )
