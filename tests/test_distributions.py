"""Closed forms against Monte Carlo, likelihoods against torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Laplace, Normal, kl_divergence

from latentlab import distributions as D


def _random_gaussian(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64) * 0.5


def test_kl_standard_normal_matches_monte_carlo():
    mean, log_var = _random_gaussian((3, 4), 1)
    z = D.reparameterize(mean.expand(200_000, 3, 4), log_var.expand(200_000, 3, 4))
    log_q = D.gaussian_log_density(z, mean, log_var)
    log_p = D.gaussian_log_density(z, torch.zeros_like(mean), torch.zeros_like(log_var))
    samples = log_q - log_p
    mc, stderr = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    closed = D.kl_standard_normal(mean, log_var)
    assert torch.all((mc - closed).abs() < 5 * stderr + 1e-3), (mc, closed)


def test_kl_between_diagonal_gaussians_matches_monte_carlo_and_torch():
    mq, lq = _random_gaussian((5, 3), 2)
    mp, lp = _random_gaussian((5, 3), 3)
    closed = D.kl_diagonal_gaussians(mq, lq, mp, lp)
    reference = kl_divergence(Normal(mq, torch.exp(0.5 * lq)), Normal(mp, torch.exp(0.5 * lp))).sum(-1)
    torch.testing.assert_close(closed, reference)
    z = D.reparameterize(mq.expand(200_000, 5, 3), lq.expand(200_000, 5, 3))
    samples = D.gaussian_log_density(z, mq, lq) - D.gaussian_log_density(z, mp, lp)
    stderr = samples.std(0) / math.sqrt(len(samples))
    assert torch.all((samples.mean(0) - closed).abs() < 5 * stderr + 1e-3)


def test_kl_to_standard_normal_is_the_special_case():
    mean, log_var = _random_gaussian((4, 6), 4)
    zeros = torch.zeros_like(mean)
    torch.testing.assert_close(D.kl_standard_normal(mean, log_var), D.kl_diagonal_gaussians(mean, log_var, zeros, zeros))
    assert torch.allclose(D.kl_standard_normal(zeros, zeros), torch.zeros(4, dtype=torch.float64))


def test_gaussian_laplace_bernoulli_match_torch_distributions():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(7, 2, 3, 3, generator=g)
    mean = torch.randn(7, 2, 3, 3, generator=g)
    torch.testing.assert_close(
        D.gaussian_log_likelihood(x, mean, 0.3, event_dims=3), Normal(mean, 0.3).log_prob(x).sum((1, 2, 3))
    )
    torch.testing.assert_close(
        D.laplace_log_likelihood(x, mean, 0.7, event_dims=3), Laplace(mean, 0.7).log_prob(x).sum((1, 2, 3))
    )
    binary = (x > 0.5).float()
    torch.testing.assert_close(
        D.bernoulli_log_likelihood(binary, mean, event_dims=3), Bernoulli(logits=mean).log_prob(binary).sum((1, 2, 3))
    )


def test_mse_is_a_scaled_gaussian_log_likelihood():
    x, mean = torch.rand(4, 10), torch.rand(4, 10)
    sigma = 0.25
    neg_ll = -D.gaussian_log_likelihood(x, mean, sigma)
    sse = ((x - mean) ** 2).sum(-1)
    torch.testing.assert_close(neg_ll, sse / (2 * sigma**2) + 10 / 2 * math.log(2 * math.pi * sigma**2))


def test_gaussian_log_density_and_dispatch():
    mean, log_var = _random_gaussian((3, 2), 6)
    z = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(
        D.gaussian_log_density(z, mean, log_var), Normal(mean, torch.exp(0.5 * log_var)).log_prob(z).sum(-1)
    )
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        D.log_likelihood("poisson", z, mean)


def test_reparameterize_passes_gradients_to_mean_and_log_var():
    mean = torch.zeros(8, 2, requires_grad=True)
    log_var = torch.zeros(8, 2, requires_grad=True)
    D.reparameterize(mean, log_var).pow(2).sum().backward()
    assert mean.grad is not None and log_var.grad is not None
    assert log_var.grad.abs().sum() > 0


def test_diagonal_gaussian_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        D.DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 4))
