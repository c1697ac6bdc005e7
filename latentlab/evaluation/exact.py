"""Linear-Gaussian latent models: the one place where log p(x), p(z|x) and the ELBO are exact.

The generative model (probabilistic PCA, Tipping & Bishop 1999), optionally with a label::

    z ~ N(0, I_k)
    x | z, y ~ N(W z + U onehot(y) + b, sigma^2 I_d)        (U = 0: no label in the decoder)
    y | z ~ Bernoulli(Phi(a^T z + c))                         (probit link: p(y|x) stays exact)

Everything below is closed form, so the book can check each bound against the truth:

* evidence        log p(x | y) = log N(x; b + U y, W W^T + sigma^2 I)
* posterior       p(z | x, y)  = N(M^-1 W^T (x - b - U y), sigma^2 M^-1),  M = W^T W + sigma^2 I
* ELBO of a diagonal q = N(m, diag(s^2)):
      E_q[log p(x|z,y)] = log N(x; W m + b + U y, sigma^2 I) - tr(W diag(s^2) W^T) / (2 sigma^2)
      ELBO = E_q[log p(x|z,y)] - KL(q || N(0, I))
* label evidence  p(y=1 | x) = Phi((a^T mu + c) / sqrt(1 + a^T Sigma a)) for p(z|x) = N(mu, Sigma),
  so log p(x, y) = log p(x) + log p(y | x) is exact too.

All computations run in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal, Normal

from ..distributions import kl_standard_normal

_STANDARD_NORMAL = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))


@dataclass
class LinearGaussianModel:
    """p(z) = N(0, I), p(x|z,y) = N(W z + U onehot(y) + b, sigma^2 I), optional probit label p(y|z).

    Attributes:
        weight: W, shape (data_dim, latent_dim).
        bias: b, shape (data_dim,).
        noise_std: sigma.
        label_weight: U, shape (data_dim, num_classes), or None (the decoder ignores y).
        label_direction, label_offset: a and c of the probit label model p(y=1|z) = Phi(a^T z + c).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    noise_std: float
    label_weight: torch.Tensor | None = None
    label_direction: torch.Tensor | None = None
    label_offset: float = 0.0

    @classmethod
    def random(
        cls,
        data_dim: int,
        latent_dim: int,
        noise_std: float = 0.5,
        *,
        decoder_classes: int = 0,
        probit_label: bool = False,
        seed: int = 0,
    ) -> LinearGaussianModel:
        """Random W and b, plus U when ``decoder_classes`` > 0 (a CVAE-style decoder) and a when
        ``probit_label`` (a label read from z); reproducible from ``seed``."""
        g = torch.Generator().manual_seed(seed)
        rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
        return cls(
            weight=rand(data_dim, latent_dim),
            bias=rand(data_dim),
            noise_std=noise_std,
            label_weight=rand(data_dim, decoder_classes) if decoder_classes else None,
            label_direction=rand(latent_dim) * 1.5 if probit_label else None,
            label_offset=0.0,
        )

    @classmethod
    def fit_maximum_likelihood(cls, x: torch.Tensor, latent_dim: int) -> LinearGaussianModel:
        """Tipping & Bishop's (1999) closed-form maximum-likelihood fit to data ``x`` (rotation R = I):
        b = mean(x), sigma^2 = mean of the discarded eigenvalues of the sample covariance,
        W = U_k (Lambda_k - sigma^2 I)^(1/2)."""
        x = x.to(torch.float64)
        if x.dim() != 2 or not 0 < latent_dim < x.shape[1]:
            raise ValueError(f"need x of shape (n, d) and 0 < latent_dim < d, got {tuple(x.shape)} and {latent_dim}")
        eigvals, eigvecs = torch.linalg.eigh(torch.cov(x.T, correction=0))
        eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)  # descending
        var = eigvals[latent_dim:].mean()
        weight = eigvecs[:, :latent_dim] * torch.sqrt(eigvals[:latent_dim] - var)
        return cls(weight, x.mean(0), var.sqrt().item())

    @property
    def data_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    def _offset(self, y: torch.Tensor | None) -> torch.Tensor:
        if y is None or self.label_weight is None:
            return self.bias
        return self.bias + self.label_weight[:, y.long()].T

    # --------------------------------------------------------------- sampling and densities

    def sample(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Draw ``(x, z, y)``. ``y`` comes from the probit label model when there is one, else
        uniformly over the decoder's classes when the decoder sees a label, else it is None."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=torch.float64)
        y = None
        if self.label_direction is not None:
            p1 = _STANDARD_NORMAL.cdf(z @ self.label_direction + self.label_offset)
            y = (torch.rand(n, generator=g, dtype=torch.float64) < p1).long()
        elif self.label_weight is not None:
            y = torch.randint(0, self.label_weight.shape[1], (n,), generator=g)
        noise = torch.randn(n, self.data_dim, generator=g, dtype=torch.float64) * self.noise_std
        return z @ self.weight.T + self._offset(y) + noise, z, y

    def marginal(self, y: torch.Tensor | None = None) -> MultivariateNormal:
        """p(x | y) as a full-covariance Gaussian."""
        covariance = self.weight @ self.weight.T + self.noise_std**2 * torch.eye(self.data_dim, dtype=torch.float64)
        return MultivariateNormal(self._offset(y), covariance_matrix=covariance)

    def log_evidence(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) (or log p(x | y) when the decoder sees the label)."""
        return self.marginal(y).log_prob(x)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact p(z | x [, y]) = N(mean, covariance): returns mean (n, k) and the shared covariance (k, k).

        ``y`` here is the label the *decoder* sees (U). A probit label is not conditioned on:
        p(z | x, y) under the probit model is not Gaussian (see ``label_log_prob_given_x``)."""
        var = self.noise_std**2
        m = self.weight.T @ self.weight + var * torch.eye(self.latent_dim, dtype=torch.float64)
        m_inv = torch.linalg.inv(m)
        mean = (x - self._offset(y)) @ self.weight @ m_inv.T
        return mean, var * m_inv

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | z [, y]) per row."""
        mean = z @ self.weight.T + self._offset(y)
        return Normal(mean, self.noise_std).log_prob(x).sum(-1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1)

    # --------------------------------------------------------------- bounds in closed form

    def elbo(
        self, x: torch.Tensor, q_mean: torch.Tensor, q_log_var: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Closed-form ELBO of q(z|x) = N(q_mean, diag(exp(q_log_var))) (see the module docstring)."""
        var = self.noise_std**2
        mean_x = q_mean @ self.weight.T + self._offset(y)
        at_mean = Normal(mean_x, self.noise_std).log_prob(x).sum(-1)
        trace = (torch.exp(q_log_var) * (self.weight**2).sum(0)).sum(-1)  # tr(W S W^T), S diagonal
        return at_mean - trace / (2 * var) - kl_standard_normal(q_mean, q_log_var)

    def kl_to_posterior(
        self, x: torch.Tensor, q_mean: torch.Tensor, q_log_var: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """KL( q(z|x) || p(z|x) ), the exact gap between log p(x) and the ELBO, via torch.distributions."""
        post_mean, post_cov = self.posterior(x, y)
        q = MultivariateNormal(q_mean, covariance_matrix=torch.diag_embed(torch.exp(q_log_var)))
        p = MultivariateNormal(post_mean, covariance_matrix=post_cov.expand(len(x), -1, -1))
        return torch.distributions.kl_divergence(q, p)

    # --------------------------------------------------------------- the label

    def label_log_prob_given_z(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(y | z) under the probit label model."""
        self._require_label()
        logit = z @ self.label_direction + self.label_offset
        return torch.where(y.bool(), _log_ndtr(logit), _log_ndtr(-logit))

    def label_log_prob_given_x(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(y | x): the probit integrates against the Gaussian posterior in closed form."""
        self._require_label()
        mean, cov = self.posterior(x)
        a = self.label_direction
        t = (mean @ a + self.label_offset) / torch.sqrt(1 + a @ cov @ a)
        return torch.where(y.bool(), _log_ndtr(t), _log_ndtr(-t))

    def log_evidence_with_label(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact log p(x, y) = log p(x) + log p(y | x) (the decoder must ignore y: U = None)."""
        if self.label_weight is not None:
            raise ValueError("log p(x, y) here assumes x depends on y only through z; build the model without label_weight")
        return self.log_evidence(x) + self.label_log_prob_given_x(y, x)

    def _require_label(self) -> None:
        if self.label_direction is None:
            raise ValueError("this model has no label; build it with probit_label=True (or set label_direction)")


def _log_ndtr(t: torch.Tensor) -> torch.Tensor:
    """log Phi(t), accurate in the tails."""
    return torch.special.log_ndtr(t)

