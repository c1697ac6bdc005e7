"""CCVAE and M2: both bounds by hand from their equations, the q(y|x) estimate, semi-supervised batches,
who gets gradients, interventions, metrics on hand-made inputs, and short fits on the real digits.

Hand computations follow the module docstrings (Joy et al. 2021, eq. 4 and 5; Kingma et al. 2014,
eq. 6, 7 and 9) with torch.distributions and log_softmax, never the models' own bound methods.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from latentlab import CCVAE, M2, Classifier, fit
from latentlab.checks import UNLABELLED
from latentlab.data import label_split, load_digits, semi_supervised
from latentlab.distributions import DiagonalGaussian
from latentlab.evaluation.metrics import classification_accuracy, conditional_generation_accuracy, style_preservation
from latentlab.models.base import LatentVariableModel
from latentlab.nets import MLP, ConvClassifier, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

DECODER_STD = 0.7
LOG_VAR_FIXED = -60.0  # the deterministic encoders' log-variance: a sample equals the mean in float32


class FixedVariance(nn.Module):
    """Wraps an encoder so it returns N(mean, e^-60): z = mean + 1e-13 * eps, which float32 rounds to the mean."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.latent_dim, self.condition_dim = inner.latent_dim, inner.condition_dim

    def forward(self, x, condition=None):
        mean = self.inner(x, condition).mean
        # the premise of "z is the mean": no coordinate so near 0 that 1e-13 survives the rounding
        assert bool((mean.abs() > 1e-4).all())
        return DiagonalGaussian(mean, torch.full_like(mean, LOG_VAR_FIXED))


def set_prior(model, mean, scale):
    """Set CCVAE's p(z_c|y=k) = N(mean_k, scale_k^2) through the softplus parametrisation."""
    mean, scale = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(scale, dtype=torch.float32)
    with torch.no_grad():
        model.prior_c.mean.copy_(mean)
        model.prior_c.raw_scale.copy_(torch.log(torch.expm1(scale)))  # softplus^-1


PRIOR_MEAN = [[1.5, 0.0, -0.5], [-1.0, 1.2, 0.3], [0.2, -1.3, 1.1]]
PRIOR_SCALE = [[0.6, 1.3, 0.9], [1.1, 0.7, 1.6], [0.8, 1.0, 0.5]]


def tiny_ccvae(*, beta=0.5, samples=7, deterministic=False, decoder=None):
    """x in R^6, z in R^5 = z_c (3) + z_style (2), three classes, Gaussian likelihood."""
    encoder = MLPEncoder(6, 5, (8,))
    model = CCVAE(
        FixedVariance(encoder) if deterministic else encoder,
        decoder if decoder is not None else MLPDecoder(5, 6, (8,)),
        num_classes=3,
        characteristic_dim=3,
        beta=beta,
        classifier_samples=samples,
        likelihood="gaussian",
        decoder_std=DECODER_STD,
    )
    set_prior(model, PRIOR_MEAN, PRIOR_SCALE)
    return model


def conv_m2(*, latent_dim, widths, hidden_dim):
    """M2 on 28x28 digits with the small conv networks (decoder widths mirrored)."""
    return M2(
        ConvEncoder(28, 1, latent_dim, condition_dim=10, widths=widths, hidden_dim=hidden_dim),
        ConvDecoder(28, 1, latent_dim, condition_dim=10, widths=widths[::-1], hidden_dim=hidden_dim),
        ConvClassifier(28, 1, 10, widths=widths, hidden_dim=hidden_dim),
        num_classes=10,
    )


def tiny_m2(*, beta=0.5, classifier_weight=2.5, deterministic=True):
    encoder = MLPEncoder(6, 2, (8,), condition_dim=3)
    return M2(
        FixedVariance(encoder) if deterministic else encoder,
        MLPDecoder(2, 6, (8,), condition_dim=3),
        MLP(6, (8,), 3),
        num_classes=3,
        beta=beta,
        classifier_weight=classifier_weight,
        likelihood="gaussian",
        decoder_std=DECODER_STD,
    )


# ----------------------------------------------------------------------------- CCVAE by hand


def prior_scale(model):
    return F.softplus(model.prior_c.raw_scale)


def hand_ccvae_supervised(model, x, y, eps, eps_k, detach=True):
    """Eq. 4 at z = mean + std * eps, with q(y|x) from the K draws z_c^(k) = mean_c + std_c * eps_k.

    q(y|z_c) reads a detached z_c (``detach``), as the module docstring says; q(y|x) does not.
    """
    q = model.encoder(x)
    mean, std = q.mean, torch.exp(0.5 * q.log_var)
    c = model.characteristic_dim
    z = mean + std * eps
    z_c, z_style = z[:, :c], z[:, c:]
    log_px = Normal(model.decoder(z), DECODER_STD).log_prob(x).sum(-1)
    log_pz = Normal(model.prior_c.mean[y], prior_scale(model)[y]).log_prob(z_c).sum(-1)
    log_pz = log_pz + Normal(0.0, 1.0).log_prob(z_style).sum(-1)
    log_qz = Normal(mean, std).log_prob(z).sum(-1)
    rows = torch.arange(len(x))
    log_qy_zc = F.log_softmax(model.classifier(z_c.detach() if detach else z_c), -1)[rows, y]
    z_k = mean[:, :c] + std[:, :c] * eps_k  # (K, batch, c)
    log_qy_zk = F.log_softmax(model.classifier(z_k), -1)[:, rows, y]  # (K, batch)
    log_qy_x = torch.logsumexp(log_qy_zk, 0) - math.log(len(eps_k))
    weight = torch.exp(log_qy_zc - log_qy_x)
    bound = weight * (log_px + model.beta * (log_pz - log_qz) - log_qy_zc) + log_qy_x - math.log(model.num_classes)
    return {"bound": bound, "weight": weight, "log_qy_x": log_qy_x, "log_px": log_px, "kl": log_qz - log_pz}


def hand_ccvae_unsupervised(model, x, eps):
    """Eq. 5 at z = mean + std * eps: every class k weighted by q(k|z_c). Also the argmax-only variant."""
    q = model.encoder(x)
    mean, std = q.mean, torch.exp(0.5 * q.log_var)
    c, k = model.characteristic_dim, model.num_classes
    z = mean + std * eps
    z_c, z_style = z[:, :c], z[:, c:]
    log_px = Normal(model.decoder(z), DECODER_STD).log_prob(x).sum(-1)
    log_qz = Normal(mean, std).log_prob(z).sum(-1)
    log_p_style = Normal(0.0, 1.0).log_prob(z_style).sum(-1)
    log_p_zc = Normal(model.prior_c.mean, prior_scale(model)).log_prob(z_c[:, None, :]).sum(-1)  # (batch, k)
    log_q = F.log_softmax(model.classifier(z_c), -1)
    q_y = log_q.exp()
    log_py = -math.log(k)
    terms = log_px[:, None] + model.beta * (log_p_zc + log_p_style[:, None] - log_qz[:, None]) + log_py - log_q
    best = q_y.argmax(-1)
    return {
        "bound": (q_y * terms).sum(-1),
        "weights": q_y,
        "argmax_only": terms[torch.arange(len(x)), best],
    }


def test_ccvae_supervised_bound_matches_eq4_by_hand():
    model = tiny_ccvae(beta=0.5, samples=7)
    x, y = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])
    torch.manual_seed(11)
    got = model.labelled_bound(x, y)
    torch.manual_seed(11)  # replay: first the reparameterised z, then the K draws of z_c for q(y|x)
    eps = torch.randn(4, 5)
    eps_k = torch.randn(7, 4, 3)
    want = hand_ccvae_supervised(model, x, y, eps, eps_k)
    for name in ("bound", "weight", "log_qy_x", "log_px", "kl"):
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-5), name
    # the weight q(y|z_c)/q(y|x) is not trivially 1 here, so the test sees it
    assert (want["weight"] - 1).abs().max() > 0.01
    # loss_terms: minus the batch mean of the same bound, under the same draws
    torch.manual_seed(11)
    loss = model.loss_terms((x, y))["loss"]
    assert loss.item() == pytest.approx(-want["bound"].mean().item(), rel=1e-5)


def test_ccvae_supervised_gradients_see_q_y_given_zc_through_a_detached_z_c():
    model = tiny_ccvae(beta=0.5, samples=7)
    x, y = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])

    def encoder_grads(bound):
        model.zero_grad()
        bound.sum().backward()
        return torch.cat([p.grad.flatten() for p in model.encoder.parameters()])

    torch.manual_seed(11)
    got = encoder_grads(model.labelled_bound(x, y)["bound"])
    hand = {}
    for detach in (True, False):
        torch.manual_seed(11)
        eps, eps_k = torch.randn(4, 5), torch.randn(7, 4, 3)
        hand[detach] = encoder_grads(hand_ccvae_supervised(model, x, y, eps, eps_k, detach=detach)["bound"])
    assert torch.allclose(got, hand[True], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, hand[False], rtol=1e-3, atol=1e-3)  # the detach is visible


def test_ccvae_q_y_given_x_converges_to_the_integral():
    # z_c is one-dimensional: log q(y|x) = log int softmax(W z + b)_y N(z; m, s^2) dz, by quadrature
    weight, bias = [[2.0], [-1.0], [0.5]], [0.0, 0.5, -0.3]
    classifier = nn.Linear(1, 3)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor(weight))
        classifier.bias.copy_(torch.tensor(bias))
    model = CCVAE(
        MLPEncoder(2, 2, ()), MLPDecoder(2, 2, ()), num_classes=3, characteristic_dim=1, classifier=classifier
    )
    m, s, y = torch.tensor([0.3, -1.0, 0.8]), torch.tensor([1.5, 0.4, 2.5]), torch.tensor([0, 1, 2])
    q_z = DiagonalGaussian(torch.stack([m, torch.zeros(3)], 1), torch.stack([2 * torch.log(s), torch.zeros(3)], 1))

    exact = []
    for mi, si, yi in zip(m.double(), s.double(), y):
        grid = torch.linspace(float(mi - 10 * si), float(mi + 10 * si), 20001, dtype=torch.float64)
        logits = grid[:, None] * torch.tensor(weight, dtype=torch.float64).T + torch.tensor(bias, dtype=torch.float64)
        density = torch.softmax(logits, -1)[:, yi] * torch.exp(Normal(mi, si).log_prob(grid))
        exact.append(math.log(float(torch.trapezoid(density, grid))))
    exact = torch.tensor(exact)

    def errors(k, reps):
        out = []
        for rep in range(reps):
            torch.manual_seed(100 + rep)
            out.append(model.log_q_y_given_x(q_z, y, num_samples=k).detach().double() - exact)
        return torch.stack(out)  # (reps, 3)

    few, many = errors(10, 200), errors(10000, 20)
    assert few.abs().mean() > many.abs().mean()
    assert many.abs().mean() < 0.01
    assert many.mean(0).abs().max() < 0.01
    # log of an average: Jensen makes the small-K estimate low on average (a check of the sign only)
    assert few.mean() < 0


def test_ccvae_unsupervised_bound_sums_over_every_class():
    model = tiny_ccvae(beta=0.5, deterministic=True)
    with torch.no_grad():  # a gentler classifier, so q(y|z_c) spreads over the classes
        model.classifier.weight.mul_(0.5)
    x = torch.randn(5, 6)
    torch.manual_seed(3)
    got = model.unlabelled_bound(x)["bound"]
    torch.manual_seed(3)
    want = hand_ccvae_unsupervised(model, x, torch.randn(5, 5))
    assert torch.allclose(want["weights"].sum(-1), torch.ones(5), atol=1e-6)
    assert want["weights"].max() < 0.95  # no class takes all the weight
    assert torch.allclose(got, want["bound"], rtol=1e-5, atol=1e-4)
    # a model that kept only the most probable class would be told apart
    assert ((want["argmax_only"] - want["bound"]).abs() > 0.1).all()


def test_ccvae_semi_supervised_batches():
    model = tiny_ccvae(beta=0.5, deterministic=True)
    x = torch.randn(5, 6)
    y = torch.tensor([2, UNLABELLED, 0, UNLABELLED, 1])
    labelled = y != UNLABELLED
    zero = torch.zeros(5, 5)  # deterministic encoder: every draw is the mean
    sup = hand_ccvae_supervised(model, x[labelled], y[labelled], zero[:3], torch.zeros(7, 3, 3))["bound"]
    unsup = hand_ccvae_unsupervised(model, x[~labelled], zero[:2])["bound"]
    terms = model.loss_terms((x, y))
    assert terms["loss"].item() == pytest.approx(-torch.cat([sup, unsup]).mean().item(), rel=1e-5)
    assert terms["labelled"].item() == pytest.approx(0.6)
    # all unlabelled, or no labels at all: eq. 5 for every row
    unsup_all = hand_ccvae_unsupervised(model, x, zero)["bound"]
    for batch in ((x, torch.full((5,), UNLABELLED)), (x,)):
        terms = model.loss_terms(batch)
        assert terms["loss"].item() == pytest.approx(-unsup_all.mean().item(), rel=1e-5)
        assert terms["labelled"].item() == 0.0
    for bad in (-2, 3, 10):
        with pytest.raises(ValueError):
            model.loss_terms((x, torch.tensor([0, 1, bad, UNLABELLED, 2])))


# ----------------------------------------------------------------------------- M2 by hand


def hand_m2_labelled(model, x, y):
    """L(x, y) of eq. 6 with z = the mean (deterministic encoder) and the closed-form KL to N(0, I)."""
    condition = F.one_hot(y, model.num_classes).float()
    mean = model.encoder.inner(x, condition).mean
    log_px = Normal(model.decoder(mean, condition), DECODER_STD).log_prob(x).sum(-1)
    kl = kl_divergence(Normal(mean, math.exp(LOG_VAR_FIXED / 2)), Normal(0.0, 1.0)).sum(-1)
    return log_px - model.beta * kl - math.log(model.num_classes)


def hand_m2_unlabelled(model, x):
    """U(x) of eq. 7: sum_y q(y|x) L(x, y) + H(q(y|x)); also the weights and the argmax-only variant."""
    per_class = torch.stack([hand_m2_labelled(model, x, torch.full((len(x),), k)) for k in range(model.num_classes)], 1)
    log_q = F.log_softmax(model.classifier(x), -1)
    q_y = log_q.exp()
    best = q_y.argmax(-1)
    return {
        "bound": (q_y * per_class).sum(-1) - (q_y * log_q).sum(-1),
        "weights": q_y,
        "argmax_only": per_class[torch.arange(len(x)), best],
    }


def test_m2_unlabelled_bound_sums_over_every_class():
    model = tiny_m2(beta=0.5)
    x = torch.randn(5, 6)
    got = model.unlabelled_bound(x)["bound"]
    want = hand_m2_unlabelled(model, x)
    assert torch.allclose(want["weights"].sum(-1), torch.ones(5), atol=1e-6)
    assert want["weights"].max() < 0.95
    assert torch.allclose(got, want["bound"], rtol=1e-5, atol=1e-4)
    assert ((want["argmax_only"] - want["bound"]).abs() > 0.1).all()
    # eq. 6 alone, for one label
    y = torch.tensor([0, 2, 1, 1, 0])
    assert torch.allclose(model.labelled_bound(x, y)["bound"], hand_m2_labelled(model, x, y), rtol=1e-5, atol=1e-4)


def test_m2_semi_supervised_batches():
    model = tiny_m2(beta=0.5, classifier_weight=2.5)
    x = torch.randn(5, 6)
    y = torch.tensor([2, UNLABELLED, 0, UNLABELLED, 1])
    labelled = y != UNLABELLED
    cross_entropy = -F.log_softmax(model.classifier(x[labelled]), -1)[torch.arange(3), y[labelled]]
    bounds = torch.cat(
        [hand_m2_labelled(model, x[labelled], y[labelled]), hand_m2_unlabelled(model, x[~labelled])["bound"]]
    )
    want = -bounds.sum() / 5 + 2.5 * cross_entropy.sum() / 5  # -J / batch size (eq. 9)
    terms = model.loss_terms((x, y))
    assert terms["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert terms["classifier"].item() == pytest.approx(cross_entropy.mean().item(), rel=1e-5)
    unsup_all = hand_m2_unlabelled(model, x)["bound"]
    for batch in ((x, torch.full((5,), UNLABELLED)), (x,)):
        assert model.loss_terms(batch)["loss"].item() == pytest.approx(-unsup_all.mean().item(), rel=1e-5)
    for bad in (-2, 3, 10):
        with pytest.raises(ValueError):
            model.loss_terms((x, torch.tensor([0, 1, bad, UNLABELLED, 2])))


# ----------------------------------------------------------------------------- gradients


def grads(module):
    """Sum of |grad| over a module's parameters (0 for parameters that got none)."""
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_ccvae_supervised_loss_reaches_every_part():
    model = tiny_ccvae()
    x, y = torch.randn(6, 6), torch.tensor([0, 1, 2, 0, 1, 2])
    model.loss_terms((x, y))["loss"].backward()
    for part in (model.encoder, model.decoder, model.classifier):
        assert grads(part) > 0
    assert model.prior_c.mean.grad.abs().sum() > 0
    assert model.prior_c.raw_scale.grad.abs().sum() > 0


def test_ccvae_unsupervised_label_terms_do_not_reach_the_encoder():
    # beta = 0 and a decoder blind to z leave only sum_y q(y|z_c)(log p(y) - log q(y|z_c)) depending on z;
    # q(y|z_c) reads a detached z_c, so the encoder must get exactly nothing while the classifier learns
    decoder = MLPDecoder(5, 6, ())
    with torch.no_grad():
        decoder.net[0].weight.zero_()
    decoder.net[0].weight.requires_grad_(False)
    model = tiny_ccvae(beta=0.0, decoder=decoder)
    x = torch.randn(6, 6)
    model.loss_terms((x,))["loss"].backward()
    assert grads(model.classifier) > 0
    assert grads(model.encoder) == 0.0
    # the same model on labelled data: q(y|x) is not detached, so the encoder does learn there
    model.zero_grad()
    model.loss_terms((x, torch.tensor([0, 1, 2, 0, 1, 2])))["loss"].backward()
    assert grads(model.encoder) > 0


def test_m2_classifier_gradients():
    x = torch.randn(6, 6)
    model = tiny_m2(classifier_weight=0.0, deterministic=False)
    model.loss_terms((x, torch.full((6,), UNLABELLED)))["loss"].backward()
    assert grads(model.classifier) > 0  # through the weights q(y|x) and the entropy
    model.zero_grad()
    model.loss_terms((x, torch.tensor([0, 1, 2, 0, 1, 2])))["loss"].backward()
    assert grads(model.classifier) == 0.0  # labelled only, alpha = 0: nothing trains q(y|x)
    assert grads(model.encoder) > 0 and grads(model.decoder) > 0
    model = tiny_m2(classifier_weight=1.0, deterministic=False)
    model.loss_terms((x, torch.tensor([0, 1, 2, 0, 1, 2])))["loss"].backward()
    assert grads(model.classifier) > 0


# ----------------------------------------------------------------------------- constructor checks


def test_constructor_arguments_are_checked():
    for c in (0, 5, 6):
        with pytest.raises(ValueError, match="characteristic_dim"):
            CCVAE(MLPEncoder(6, 5, (8,)), MLPDecoder(5, 6, (8,)), num_classes=3, characteristic_dim=c)
    with pytest.raises(ValueError, match="beta"):
        CCVAE(MLPEncoder(6, 5, (8,)), MLPDecoder(5, 6, (8,)), num_classes=3, characteristic_dim=3, beta=-0.1)
    with pytest.raises(ValueError, match="classifier_samples"):
        CCVAE(MLPEncoder(6, 5, (8,)), MLPDecoder(5, 6, (8,)), num_classes=3, characteristic_dim=3, classifier_samples=0)
    with pytest.raises(ValueError, match="num_classes"):
        CCVAE(MLPEncoder(6, 5, (8,)), MLPDecoder(5, 6, (8,)), num_classes=1, characteristic_dim=3)
    with pytest.raises(ValueError, match="condition_dim=3"):
        M2(MLPEncoder(6, 2, (8,)), MLPDecoder(2, 6, (8,), condition_dim=3), MLP(6, (8,), 3), num_classes=3)
    with pytest.raises(ValueError, match="condition_dim=3"):
        M2(
            MLPEncoder(6, 2, (8,), condition_dim=3),
            MLPDecoder(2, 6, (8,), condition_dim=2),
            MLP(6, (8,), 3),
            num_classes=3,
        )
    for kwargs in ({"beta": -1.0}, {"classifier_weight": -1.0}):
        with pytest.raises(ValueError, match="non-negative"):
            M2(
                MLPEncoder(6, 2, (8,), condition_dim=3),
                MLPDecoder(2, 6, (8,), condition_dim=3),
                MLP(6, (8,), 3),
                num_classes=3,
                **kwargs,
            )


# ----------------------------------------------------------------------------- interventions


@pytest.fixture
def conv_ccvae():
    model = CCVAE(
        ConvEncoder(28, 1, 14, widths=(4, 8), hidden_dim=16),
        ConvDecoder(28, 1, 14, widths=(8, 4), hidden_dim=16),
        num_classes=10,
        characteristic_dim=10,
    )
    g = torch.Generator().manual_seed(5)
    set_prior(model, 2 * torch.randn(10, 10, generator=g), 0.5 + torch.rand(10, 10, generator=g))
    return model.eval()


def by_hand_decode(model, z_c, z_style):
    return torch.sigmoid(model.decoder(torch.cat([z_c, z_style], 1)))  # Bernoulli: the mean is sigmoid(logits)


def test_ccvae_sampling(conv_ccvae):
    model, y = conv_ccvae, torch.arange(10)
    assert model.sample(y).shape == (10, 1, 28, 28)
    style = torch.randn(1, 4).repeat(10, 1)
    torch.manual_seed(9)
    images = model.sample(y, style)
    torch.manual_seed(9)  # z_c ~ p(z_c|y), reparameterised
    z_c = model.prior_c.mean + F.softplus(model.prior_c.raw_scale) * torch.randn(10, 10)
    with torch.no_grad():
        assert torch.allclose(images, by_hand_decode(model, z_c, style), atol=1e-6)
    flat = images.flatten(1)
    gaps = (flat[:, None] - flat[None]).abs().amax(-1) + torch.eye(10)
    assert gaps.min() > 1e-6  # one style, ten classes: ten different images


def test_ccvae_swap_traverse_and_controls(conv_ccvae):
    model = conv_ccvae
    a, b = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        mean_a, mean_b = model.encoder(a).mean, model.encoder(b).mean
        want = by_hand_decode(model, mean_b[:, :10], mean_a[:, 10:])
    assert torch.allclose(model.swap_characteristic(a, b), want, atol=1e-6)

    values = torch.linspace(-3, 3, 5)
    images = model.traverse(a, 2, values)
    assert images.shape == (5, 1, 28, 28)
    z_c = mean_a[:1, :10].repeat(5, 1)
    z_c[:, 2] = values
    with torch.no_grad():
        assert torch.allclose(images, by_hand_decode(model, z_c, mean_a[:1, 10:].repeat(5, 1)), atol=1e-6)
    assert (images[1:] - images[:-1]).flatten(1).abs().amax(-1).min() > 1e-6
    with pytest.raises(ValueError, match="dim"):
        model.traverse(a, 10, values)

    controls = model.controls()
    assert len(controls) == 10
    scale = F.softplus(model.prior_c.raw_scale).detach()
    low = (model.prior_c.mean.detach() - 3 * scale).min(0).values
    high = (model.prior_c.mean.detach() + 3 * scale).max(0).values
    for i, control in enumerate(controls):
        assert control.low < control.high
        assert control.low == pytest.approx(float(low[i]), rel=1e-5)
        assert control.high == pytest.approx(float(high[i]), rel=1e-5)


def test_ccvae_transport_and_edit(conv_ccvae):
    model = conv_ccvae
    mean, scale = model.prior_c.mean.detach(), F.softplus(model.prior_c.raw_scale).detach()
    source, target = torch.tensor([1, 4, 4]), torch.tensor([7, 0, 9])
    for k in (0.0, 1.0, -2.0):  # mean_s + k scale_s lands on mean_t + k scale_t
        moved = model.characteristic_transport(mean[source] + k * scale[source], source, target)
        assert torch.allclose(moved, mean[target] + k * scale[target], atol=1e-5)

    x = torch.rand(6, 1, 28, 28)
    target = torch.tensor([3, 3, 0, 9, 5, 1])
    with torch.no_grad():
        codes = model.encoder(x).mean
        z_c, z_style = codes[:, :10], codes[:, 10:]

        def by_hand_edit(src):
            moved = mean[target] + (z_c - mean[src]) * scale[target] / scale[src]
            return by_hand_decode(model, moved, z_style)

        predicted = F.log_softmax(model.classifier(z_c), -1).argmax(-1)
    given = (predicted + 1) % 10  # a stated class that is not the prediction
    assert torch.allclose(model.edit(x, None, target), by_hand_edit(predicted), atol=1e-5)
    assert torch.allclose(model.edit(x, given, target), by_hand_edit(given), atol=1e-5)
    assert not torch.allclose(model.edit(x, None, target), model.edit(x, given, target), atol=1e-5)


# ----------------------------------------------------------------------------- metrics on hand-made inputs


def test_classification_accuracy_by_hand():
    x = torch.tensor([[1.0], [-1.0], [2.0], [-3.0]])
    y = torch.tensor([1, 0, 0, 0])
    assert classification_accuracy(lambda v: (v[:, 0] > 0).long(), x, y) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shape"):
        classification_accuracy(lambda v: torch.zeros(3, dtype=torch.long), x, y)


def test_conditional_generation_accuracy_by_hand():
    def sampler(y):  # the label written into every pixel
        return y.float()[:, None, None, None].expand(-1, 1, 2, 2).clone()

    def reader(images):
        return images[:, 0, 0, 0].round().long()

    perfect = conditional_generation_accuracy(sampler, reader, 10, per_class=3)
    assert perfect["mean"] == 1.0 and perfect["chance"] == pytest.approx(0.1)
    assert all(perfect[str(c)] == 1.0 for c in range(10))

    def always_zero(images):
        return torch.zeros(len(images), dtype=torch.long)

    constant = conditional_generation_accuracy(sampler, always_zero, 10, per_class=4)
    assert constant["mean"] == pytest.approx(0.1)
    assert constant["0"] == 1.0 and all(constant[str(c)] == 0.0 for c in range(1, 10))
    with pytest.raises(ValueError, match="per_class"):
        conditional_generation_accuracy(sampler, reader, 10, per_class=0)


class ShrinkStyle(LatentVariableModel):
    """encode: the first two coordinates are the style, exactly; edit: halves them."""

    def encode(self, x, y=None):
        return {"s": DiagonalGaussian(x[:, :2], torch.full_like(x[:, :2], -60.0))}

    def edit(self, x, y, target):
        return torch.cat([0.5 * x[:, :2], x[:, 2:]], 1)


def test_style_preservation_by_hand():
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(20, dtype=torch.long)
    s = x[:, :2].numpy().astype(np.float64)
    want = 1 - ((0.5 * s - s) ** 2).sum() / ((s - s.mean(0)) ** 2).sum()
    assert style_preservation(ShrinkStyle(), x, y, y, style="s") == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="z_style"):
        style_preservation(ShrinkStyle(), x, y, y, style="z_style")


# ----------------------------------------------------------------------------- short fits on the real digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def judge(digits):
    torch.manual_seed(0)
    model = Classifier(ConvClassifier(28, 1, 10, widths=(16, 32), hidden_dim=128), num_classes=10)
    fit(model, digits.train, epochs=5, batch_size=64, progress=False, device="cpu", seed=0)
    return model


def test_ccvae_learns_digits_generates_and_edits_them(digits, judge):
    # the paper's bound (beta = 1) at the default learning rates; the class priors learn 100x faster
    # than the networks (prior_learning_rate), or sampling and the prior-based edit stay near chance
    torch.manual_seed(0)
    model = CCVAE(
        ConvEncoder(28, 1, 26, widths=(16, 32), hidden_dim=128),
        ConvDecoder(28, 1, 26, widths=(32, 16), hidden_dim=128),
        num_classes=10,
        characteristic_dim=10,
    )
    fit(model, digits.train, epochs=10, batch_size=64, progress=False, device="cpu", seed=0)
    x, y = digits.test
    assert len(digits.x_train) == 1438 and len(x) == 359
    assert classification_accuracy(judge.predict, x, y) > 0.85
    assert classification_accuracy(model.predict, x, y) > 0.9  # chance: 0.1
    torch.manual_seed(0)
    # seeds 0-2 reached 0.76-0.79 (chance 0.1)
    assert conditional_generation_accuracy(model.sample, judge.predict, 10, per_class=50)["mean"] > 0.5
    g = torch.Generator().manual_seed(0)
    target = (y + 1 + torch.randint(0, 9, y.shape, generator=g)) % 10  # never the true class
    edited = model.edit(x, y, target)
    assert float((judge.predict(edited) == target).float().mean()) > 0.45  # seeds 0-2: 0.65-0.67


def test_m2_learns_digits_from_a_hundred_labels(digits):
    mask = label_split(digits.y_train, 100)
    x, y = semi_supervised(digits.x_train, digits.y_train, mask, labelled_share=0.2)
    assert abs(float((y != UNLABELLED).float().mean()) - 0.2) < 0.01
    torch.manual_seed(0)
    model = conv_m2(latent_dim=8, widths=(8, 16), hidden_dim=64)
    fit(model, (x, y), epochs=3, batch_size=64, progress=False, device="cpu", seed=0)
    assert classification_accuracy(model.predict, *digits.test) > 0.6  # chance: 0.1


# ----------------------------------------------------------------------------- the sign of log p(x|z)


def encoder_gradient(model, x, y, offset, monkeypatch):
    """Gradient of the batch's supervised bound w.r.t. the encoder, with log p(x|z) + ``offset``, same draws."""
    plain = CCVAE.reconstruction_log_likelihood
    monkeypatch.setattr(model, "reconstruction_log_likelihood", lambda x_, out: plain(model, x_, out) + offset)
    model.zero_grad()
    torch.manual_seed(5)
    model.labelled_bound(x, y)["bound"].mean().backward()
    return [p.grad.clone() for p in model.encoder.parameters()]


def test_an_offset_in_log_px_moves_the_encoder_against_or_towards_its_own_classifier(monkeypatch):
    """The documented reason CCVAE needs log p(x|z) < 0: the bound's value ignores an offset c, its gradient does not.

    With z_c detached in the weight's numerator, the offset adds c * grad_phi w = -c w grad_phi log q(y|x):
    ascending the bound with c > 0 lowers q(y|x) (the encoder works against its classifier), with c < 0 raises it.
    """
    torch.manual_seed(0)
    model = tiny_ccvae(samples=50)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    base = encoder_gradient(model, x, y, 0.0, monkeypatch)
    for offset, direction in ((1000.0, -1), (-1000.0, +1)):
        shifted = encoder_gradient(model, x, y, offset, monkeypatch)
        with torch.no_grad():
            torch.manual_seed(6)
            before = model.log_q_y_given_x(model.encoder(x), y, num_samples=2000).mean()
            for p, g, g0 in zip(model.encoder.parameters(), shifted, base):
                p.add_(1e-5 * (g - g0))  # a small ascent step along what the offset added
            torch.manual_seed(6)
            after = model.log_q_y_given_x(model.encoder(x), y, num_samples=2000).mean()
            for p, g, g0 in zip(model.encoder.parameters(), shifted, base):
                p.sub_(1e-5 * (g - g0))
        assert direction * float(after - before) > 0, (offset, float(before), float(after))


def test_ccvae_warns_once_when_log_px_is_positive_and_faces_use_laplace_scale_one(monkeypatch):
    torch.manual_seed(0)
    model = tiny_ccvae()
    x = torch.randn(4, 6)
    model.loss_terms((x, torch.tensor([0, 1, 2, 0])))  # log p(x|z) < 0 here: no warning (pytest would show it)
    assert not model._warned_positive_log_px
    # a density above 1 (as Laplace/Gaussian with a small scale gives a close reconstruction)
    monkeypatch.setattr(model, "reconstruction_log_likelihood", lambda x_, out: torch.full((len(x_),), 5.0))
    with pytest.warns(UserWarning, match="log p\\(x\\|z\\) is positive"):
        model.loss_terms((x, torch.tensor([0, 1, 2, 0])))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.loss_terms((x, torch.tensor([0, 1, 2, 0])))  # once is enough
    from latentlab import face_model

    faces = face_model("ccvae", image_size=32, channels=(8, 16, 32), latent_dim=8)
    assert float(faces.decoder_log_std.exp()) == 1.0 and faces.likelihood == "laplace"
    images, decoded = torch.rand(5, 3, 32, 32), torch.rand(5, 3, 32, 32)
    assert bool((faces.reconstruction_log_likelihood(images, decoded) < 0).all())  # -|x - mu| - log 2 per value


def test_conv_encoder_for_every_condition_equals_encoding_the_repeated_batch():
    torch.manual_seed(0)
    encoder = ConvEncoder(28, 1, 4, condition_dim=3, widths=(4, 8), hidden_dim=16)
    x, conditions = torch.rand(5, 1, 28, 28), torch.eye(3)
    shared = encoder.for_every_condition(x, conditions)
    repeated = encoder(x.repeat(3, 1, 1, 1), conditions.repeat_interleave(5, dim=0))
    assert shared.mean.shape == (15, 4)
    assert torch.allclose(shared.mean, repeated.mean, atol=1e-6)
    assert torch.allclose(shared.log_var, repeated.log_var, atol=1e-6)


def test_m2_with_a_conv_encoder_shares_its_convolutions_and_keeps_the_bound_and_gradients():
    """The shared-feature path of the sum over labels gives U(x) and every gradient of the repeated path."""
    torch.manual_seed(0)
    model = conv_m2(latent_dim=4, widths=(4, 8), hidden_dim=16)
    x = torch.rand(6, 1, 28, 28)
    results = []
    for share in (True, False):
        if not share:
            model.encoder.for_every_condition = None  # an encoder without the method: the repeated batch
        calls = []
        hook = model.encoder.features.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
        model.zero_grad()
        torch.manual_seed(1)  # the same noise for z in both paths
        bound = model.unlabelled_bound(x)["bound"]
        bound.sum().backward()
        hook.remove()
        results.append((bound.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, calls))
    (shared, shared_grads, shared_calls), (repeated, repeated_grads, repeated_calls) = results
    assert shared_calls == [6] and repeated_calls == [60]  # the convolutions ran on 6 images, not 60
    assert torch.allclose(shared, repeated, rtol=1e-5, atol=1e-4)
    for name, grad in shared_grads.items():
        assert torch.allclose(grad, repeated_grads[name], rtol=1e-4, atol=1e-5), name


def test_m2_kingma_classifier_weight_keeps_the_papers_balance():
    # no repetition: 0.1 N / N_l per labelled example, Kingma et al.'s 50 at 100 of 50 000
    assert M2.kingma_classifier_weight(100, 49_900) == pytest.approx(50.0)
    assert M2.kingma_classifier_weight(1000, 59_000) == pytest.approx(6.0)
    # with labelled copies making up a share s of every epoch, the classification term's total
    # against the unlabelled bound's must stay 0.1 N / N_u: alpha s E / ((1 - s) E)
    for n_l, n_u, s in ((100, 59_900, 0.2), (3000, 57_000, 0.5)):
        alpha = M2.kingma_classifier_weight(n_l, n_u, labelled_share=s)
        assert alpha * s / (1 - s) == pytest.approx(0.1 * (n_l + n_u) / n_u)
    # a share below the labels' own is no repetition at all
    assert M2.kingma_classifier_weight(100, 49_900, labelled_share=0.001) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="num_labelled > 0"):
        M2.kingma_classifier_weight(0, 100)
