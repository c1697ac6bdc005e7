"""The VAE: loss terms by hand, training improves the ELBO, gradients reach the right places."""

import math

import pytest
import torch
from torch import nn

from latentlab import CSVAE, CVAE, VAE, CondVAEInfo, fit
from latentlab.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


class FixedEncoder(nn.Module):
    """Returns given posterior parameters so the loss can be computed by hand."""

    latent_dim = 1

    def __init__(self, mean, log_var):
        super().__init__()
        self.mean, self.log_var = mean, log_var

    def forward(self, x):
        from latentlab.distributions import DiagonalGaussian

        return DiagonalGaussian(self.mean.expand(len(x), 1), self.log_var.expand(len(x), 1))


def test_loss_terms_match_hand_computation():
    # log_var very negative: the sample equals the mean, so the reconstruction term is deterministic
    encoder = FixedEncoder(torch.tensor([[0.5]]), torch.tensor([[-60.0]]))
    decoder = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        decoder.weight.copy_(torch.tensor([[2.0], [-1.0]]))
    vae = VAE(encoder, decoder, beta=4.0, likelihood="gaussian", decoder_std=0.5)
    x = torch.tensor([[1.5, 0.0]])
    terms = vae.loss_terms((x,))
    # decoded mean = (1.0, -0.5); -log N(x; mean, 0.25 I) = sum (x-mean)^2 / (2*0.25) + 2 * log(0.5 * sqrt(2 pi))
    recon = (0.5**2 + 0.5**2) / 0.5 + 2 * (math.log(0.5) + 0.5 * math.log(2 * math.pi))
    kl = 0.5 * (math.exp(-60.0) + 0.25 - 1 + 60.0)
    assert terms["recon"].item() == pytest.approx(recon, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(recon + 4.0 * kl, rel=1e-5)
    assert terms["elbo"].item() == pytest.approx(-(recon + kl), rel=1e-5)


def test_bernoulli_decode_returns_probabilities():
    vae = VAE(MLPEncoder(6, 2), MLPDecoder(2, 6), likelihood="bernoulli")
    out = vae.decode({"z": torch.randn(5, 2) * 10})
    assert out.shape == (5, 6) and out.min() >= 0 and out.max() <= 1


def test_vae_trains_and_its_elbo_improves():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(512, 2, generator=g)
    x = torch.cat([z, z[:, :1] * z[:, 1:], torch.tanh(z)], dim=1) + 0.05 * torch.randn(512, 5, generator=g)
    vae = VAE(MLPEncoder(5, 2, (32,)), MLPDecoder(2, 5, (32,)), decoder_std=0.2, learning_rate=3e-3)
    before = vae.elbo(x, num_samples=8).mean().item()
    history = fit(vae, x, epochs=15, batch_size=64, progress=False)
    after = vae.elbo(x, num_samples=8).mean().item()
    assert after > before + 30, (before, after)  # about -55 -> -6 nats
    assert history["elbo"][-1] > history["elbo"][0]
    iwae = vae.importance_weighted_bound(x, num_samples=64).mean().item()
    assert iwae >= after - 0.5  # the importance-weighted bound is at least as tight as the ELBO


def test_gradients_of_the_loss_reach_encoder_decoder_and_learned_scale_only():
    vae = VAE(MLPEncoder(3, 2, (8,)), MLPDecoder(2, 3, (8,)), learn_decoder_std=True)
    vae.loss_terms((torch.randn(10, 3),))["loss"].backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    fixed = VAE(MLPEncoder(3, 2), MLPDecoder(2, 3))
    assert "decoder_log_std" not in dict(fixed.named_parameters())


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_conv_vae_shapes(size, channels):
    vae = VAE(ConvEncoder(size, channels, 8), ConvDecoder(size, channels, 8), likelihood="bernoulli")
    x = torch.rand(4, channels, size, size)
    (q,) = vae.encode(x).values()
    assert q.mean.shape == (4, 8)
    assert vae.decode({"z": q.mean}).shape == x.shape
    assert vae.sample(3).shape == (3, channels, size, size)
    assert torch.isfinite(vae.loss_terms((x,))["loss"])


def test_model_arguments_are_validated():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAE(MLPEncoder(2, 1), MLPDecoder(1, 2), likelihood="mse")
    with pytest.raises(ValueError, match="beta must be non-negative"):
        VAE(MLPEncoder(2, 1), MLPDecoder(1, 2), beta=-1)
    with pytest.raises(NotImplementedError, match="no label to edit"):
        VAE(MLPEncoder(2, 1), MLPDecoder(1, 2)).edit(torch.zeros(1, 2), torch.zeros(1), torch.ones(1))


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: VAE(MLPEncoder(2, 1), MLPDecoder(1, 2), **kw),
        lambda **kw: CVAE.mlp(2, 1, **kw),
        lambda **kw: CondVAEInfo.mlp(2, 1, **kw),
        lambda **kw: CSVAE.mlp(2, 1, **kw),
    ],
    ids=["VAE", "CVAE", "CondVAEInfo", "CSVAE"],
)
def test_every_model_checks_its_likelihood(build):
    with pytest.raises(ValueError, match="likelihood must be one of gaussian, laplace, bernoulli, got 'mse'"):
        build(likelihood="mse")
    with pytest.raises(ValueError, match="decoder_std must be positive, got 0"):
        build(decoder_std=0)
    model = build(likelihood="laplace", decoder_std=0.5)
    assert model.likelihood == "laplace" and torch.isclose(model.decoder_log_std.exp(), torch.tensor(0.5))
    assert "decoder_log_std" not in dict(model.named_parameters())  # a fixed scale is a buffer
