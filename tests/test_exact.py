"""The linear-Gaussian model is the ground truth of the ELBO chapter: check it independently."""

import math

import torch

from latentlab.evaluation.exact import LinearGaussianModel


def test_log_evidence_matches_monte_carlo_over_the_prior():
    model = LinearGaussianModel.random(3, 2, noise_std=0.8, seed=0)
    x, _, _ = model.sample(5, seed=1)
    z = torch.randn(400_000, 1, 2, dtype=torch.float64)
    log_terms = model.log_likelihood(x, z)  # (samples, examples)
    mc = torch.logsumexp(log_terms, 0) - math.log(len(log_terms))
    assert torch.allclose(mc, model.log_evidence(x), atol=0.05)


def test_gap_between_evidence_and_elbo_is_kl_to_posterior():
    model = LinearGaussianModel.random(6, 3, noise_std=0.4, decoder_classes=2, seed=2)
    x, _, _ = model.sample(8, seed=3)
    y = torch.tensor([0, 1] * 4)
    q_mean = torch.randn(8, 3, dtype=torch.float64)
    q_log_var = torch.randn(8, 3, dtype=torch.float64) * 0.3
    gap = model.log_evidence(x, y) - model.elbo(x, q_mean, q_log_var, y)
    torch.testing.assert_close(gap, model.kl_to_posterior(x, q_mean, q_log_var, y))
    assert torch.all(gap > 0)


def test_exact_label_evidence_matches_monte_carlo():
    model = LinearGaussianModel.random(4, 2, noise_std=0.5, probit_label=True, seed=4)
    x, _, y = model.sample(6, seed=5)
    mean, cov = model.posterior(x)
    z = mean + torch.randn(200_000, 6, 2, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    mc = torch.logsumexp(model.label_log_prob_given_z(y, z), 0) - math.log(len(z))
    torch.testing.assert_close(mc, model.label_log_prob_given_x(y, x), atol=5e-3, rtol=0)


def test_maximum_likelihood_fit_beats_the_generating_model_on_its_data():
    truth = LinearGaussianModel.random(6, 2, noise_std=0.4, seed=9)
    x, _, _ = truth.sample(3000, seed=10)
    fitted = LinearGaussianModel.fit_maximum_likelihood(x, 2)
    assert fitted.log_evidence(x).mean() >= truth.log_evidence(x).mean()
    assert abs(fitted.noise_std - 0.4) < 0.03
    # nudging any parameter lowers the likelihood: the closed form is a maximum
    for nudged in (
        LinearGaussianModel(fitted.weight * 1.05, fitted.bias, fitted.noise_std),
        LinearGaussianModel(fitted.weight, fitted.bias + 0.05, fitted.noise_std),
        LinearGaussianModel(fitted.weight, fitted.bias, fitted.noise_std * 1.05),
    ):
        assert nudged.log_evidence(x).mean() < fitted.log_evidence(x).mean()


def test_cvae_style_model_samples_labels_it_decodes():
    model = LinearGaussianModel.random(4, 2, decoder_classes=3, seed=1)
    x, z, y = model.sample(500, seed=2)
    assert set(y.tolist()) == {0, 1, 2}
    residual = x - z @ model.weight.T - model.bias - model.label_weight[:, y].T
    assert residual.std() < 0.6  # only the noise is left (noise_std 0.5)
