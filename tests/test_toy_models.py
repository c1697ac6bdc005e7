"""CVAE, CondVAE-info and CSVAE: loss terms by hand, who each update moves, what a short fit learns, bad input."""

import copy
import math

import pytest
import torch
from torch import nn

from latentlab import CSVAE, CVAE, CondVAEInfo, fit
from latentlab.data import swiss_roll
from latentlab.evaluation.metrics import DataClassifier, edit_success, latent_means, probe_accuracy
from latentlab.nets import MLP, MLPDecoder, MLPEncoder

LOG_2PI = math.log(2 * math.pi)


def set_linear(linear: nn.Linear, weight, bias):
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def fixed_encoder(input_dim, latent_dim, mean_weight, mean_bias, condition_dim=0):
    """A linear encoder with log-variance -60: the sample equals the mean, so losses are deterministic."""
    enc = MLPEncoder(input_dim, latent_dim, hidden_dims=(), condition_dim=condition_dim)
    width = input_dim + condition_dim
    set_linear(enc.head.linear, [*mean_weight, *([[0.0] * width] * latent_dim)], [*mean_bias, *([-60.0] * latent_dim)])
    return enc


def gaussian_nll(x, mean, std):
    return sum((a - b) ** 2 / (2 * std**2) + math.log(std) + 0.5 * LOG_2PI for a, b in zip(x, mean))


KL_Z = 0.5 * (math.exp(-60.0) + 0.25 - 1 + 60.0)  # KL(N(0.5, e^-60) || N(0, 1))


# ----------------------------------------------------------------------------- loss terms by hand


def test_cvae_loss_terms_match_hand_computation():
    # q(z|x,y): mean 0.5 * onehot(y)[1]; p(x|z,y): mean (2 z + onehot[1], -z)
    encoder = fixed_encoder(2, 1, [[0.0, 0.0, 0.0, 0.5]], [0.0], condition_dim=2)
    decoder = MLPDecoder(1, 2, hidden_dims=(), condition_dim=2)
    set_linear(decoder.net[0], [[2.0, 0.0, 1.0], [-1.0, 0.0, 0.0]], [0.0, 0.0])
    model = CVAE(encoder, decoder, beta=4.0, decoder_std=0.5)
    terms = model.loss_terms((torch.tensor([[1.5, 0.0]]), torch.tensor([1])))
    recon = gaussian_nll([1.5, 0.0], [2.0, -0.5], 0.5)  # z = 0.5 -> mean (2.0, -0.5)
    assert terms["recon"].item() == pytest.approx(recon, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(KL_Z, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(recon + 4.0 * KL_Z, rel=1e-5)
    # an edit keeps z = 0.5 (encoded with y = 1) and decodes with y = 0: mean (1.0, -0.5)
    edited = model.edit(torch.tensor([[1.5, 0.0]]), torch.tensor([1]), torch.tensor([0]))
    assert torch.allclose(edited, torch.tensor([[1.0, -0.5]]))


def test_condvae_info_loss_terms_match_hand_computation():
    encoder = fixed_encoder(2, 1, [[0.0, 0.0]], [0.5])  # z = 0.5 whatever x
    decoder = MLPDecoder(1, 2, hidden_dims=(), condition_dim=2)
    set_linear(decoder.net[0], [[2.0, 0.0, 1.0], [-1.0, 0.0, 0.0]], [0.0, 0.0])
    classifier = nn.Linear(2, 2)
    set_linear(classifier, [[0.0, 0.0], [0.0, 0.0]], [0.0, math.log(3.0)])  # p(y=1) = 3/4
    auxiliary = nn.Linear(1, 2)
    set_linear(auxiliary, [[0.0], [2.0]], [0.0, 0.0])  # logits (0, 2z) = (0, 1)
    model = CondVAEInfo(
        encoder, decoder, classifier, auxiliary, beta=4.0, class_weight=0.3, aux_weight=2.0, decoder_std=0.5
    )
    terms = model.loss_terms((torch.tensor([[1.5, 0.0]]), torch.tensor([1])))
    recon = gaussian_nll([1.5, 0.0], [2.0, -0.5], 0.5)
    head = -math.log(0.75)
    aux = math.log(1 + math.e) - 1.0  # cross entropy of logits (0, 1) for class 1
    assert terms["recon"].item() == pytest.approx(recon, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(KL_Z, rel=1e-5)
    assert terms["class"].item() == pytest.approx(head, rel=1e-5)
    assert terms["aux"].item() == pytest.approx(aux, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(recon + 4.0 * KL_Z + 0.3 * head - 2.0 * aux, rel=1e-5)
    assert model.predict(torch.tensor([[1.5, 0.0]])).tolist() == [1]
    edited = model.edit(torch.tensor([[1.5, 0.0]]), torch.tensor([1]), torch.tensor([0]))
    assert torch.allclose(edited, torch.tensor([[1.0, -0.5]]))


def make_hand_csvae(**kwargs):
    z_encoder = fixed_encoder(2, 1, [[0.0, 0.0]], [0.5])  # z = 0.5
    w_encoder = fixed_encoder(2, 2, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [1.0, -1.0], condition_dim=1)  # w = (1, -1)
    decoder = MLPDecoder(3, 2, hidden_dims=())  # reads [z, w1, w2]
    set_linear(decoder.net[0], [[2.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0, 0.5])
    adversary = nn.Linear(1, 1)
    set_linear(adversary, [[2.0]], [0.0])  # logit 2z = 1
    return CSVAE(z_encoder, w_encoder, decoder, adversary, w_dim=2, **kwargs)


def test_csvae_loss_terms_match_hand_computation():
    model = make_hand_csvae(beta1=2.0, beta2=3.0, beta3=0.5, beta4=7.0, beta5=1.5, decoder_std=0.5)
    terms = model.loss_terms((torch.tensor([[1.5, 0.0]]), torch.tensor([1])))
    recon = gaussian_nll([1.5, 0.0], [2.0, -0.5], 0.5)  # mean (2*0.5 + 1, -1 + 0.5)
    # p(w|y=1) = N(0, 0.1^2 I) by default: KL per coordinate 1/2 (log 0.01 + 60 + (e^-60 + 1) / 0.01 - 1)
    kl_w = 2 * 0.5 * (math.log(0.01) + 60.0 + (math.exp(-60.0) + 1.0) / 0.01 - 1.0)
    p = 1 / (1 + math.exp(-1.0))  # q_delta(y=1|z) with logit 1
    neg_entropy = p * math.log(p) + (1 - p) * math.log(1 - p)
    bce = -math.log(p)
    assert terms["recon"].item() == pytest.approx(recon, rel=1e-5)
    assert terms["kl_w"].item() == pytest.approx(kl_w, rel=1e-5)
    assert terms["kl_z"].item() == pytest.approx(KL_Z, rel=1e-5)
    assert terms["neg_entropy"].item() == pytest.approx(neg_entropy, rel=1e-5)
    assert terms["adversary"].item() == pytest.approx(1.5 * bce, rel=1e-5)
    expected = 2.0 * recon + 3.0 * kl_w + 0.5 * KL_Z + 7.0 * neg_entropy
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_csvae_prior_edit_and_ablation():
    model = make_hand_csvae(w_prior_means=(3.0, -2.0), w_prior_stds=(1.0, 0.5))
    prior = model.prior_w(model.labels(torch.tensor([0, 1])))
    assert prior.mean.tolist() == [[3.0, 3.0], [-2.0, -2.0]]
    assert torch.allclose(prior.std, torch.tensor([[1.0, 1.0], [0.5, 0.5]]))
    # edit to y = 0 keeps z = 0.5 and sets w to the prior mean (3, 3): decoded mean (2*0.5 + 3, 3 + 0.5)
    edited = model.edit(torch.tensor([[1.5, 0.0]]), torch.tensor([1]), torch.tensor([0]))
    assert torch.allclose(edited, torch.tensor([[4.0, 3.5]]))
    ablated = CSVAE.mlp(2, 1, adversary=False)
    terms = ablated.loss_terms((torch.randn(4, 2), torch.tensor([0, 1, 1, 0])))
    assert "neg_entropy" not in terms and "adversary" not in terms
    assert list(ablated.configure_optimizers()) == ["model"]


def test_csvae_with_two_labels_has_one_subspace_each():
    model = CSVAE.mlp(3, 2, num_labels=2, w_dim=2)
    x, y = torch.randn(5, 3), torch.tensor([[0, 1], [1, 1], [0, 0], [1, 0], [0, 1]])
    q = model.encode(x, y)
    assert q["w"].mean.shape == (5, 4) and q["z"].mean.shape == (5, 2)
    assert model.prior_w(model.labels(y)).mean[0].tolist() == [3.0, 3.0, 0.0, 0.0]
    assert model.edit(x, y, 1 - y).shape == (5, 3)
    assert torch.isfinite(model.loss_terms((x, y))["loss"])


# ----------------------------------------------------------------------------- who each update moves


class Recording:
    """Wraps an optimizer and snapshots every parameter of the model after each of its steps."""

    def __init__(self, optimizer, model, log):
        self.optimizer, self.model, self.log = optimizer, model, log

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self):
        self.optimizer.step()
        self.log.append({n: p.detach().clone() for n, p in self.model.named_parameters()})


def moved_between(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


MODELS_WITH_ADVERSARY = {
    "condvae_info": (lambda: CondVAEInfo.mlp(3, 2, hidden_dims=(8,)), "auxiliary", "auxiliary."),
    "csvae": (lambda: CSVAE.mlp(3, 2, hidden_dims=(8,)), "adversary", "adversary."),
}


@pytest.mark.parametrize("which", MODELS_WITH_ADVERSARY)
def test_each_update_moves_exactly_its_own_parameters(which):
    make, adversary_optimizer, prefix = MODELS_WITH_ADVERSARY[which]
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    optimizers = model.configure_optimizers()
    assert set(optimizers) == {"model", adversary_optimizer}
    owned = {name: {id(p) for group in opt.param_groups for p in group["params"]} for name, opt in optimizers.items()}
    assert not owned["model"] & owned[adversary_optimizer]  # disjoint parameter sets
    log = []
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.training_step((x, y), {name: Recording(opt, model, log) for name, opt in optimizers.items()})
    assert len(log) == 2  # two sub-steps, model first
    moved_first, moved_second = moved_between(start, log[0]), moved_between(log[0], log[1])
    adversary = {n for n in start if n.startswith(prefix)}
    assert moved_first == set(start) - adversary  # every encoder/decoder/head tensor, no adversary tensor
    assert moved_second == adversary  # every adversary tensor, nothing else


@pytest.mark.parametrize("which", MODELS_WITH_ADVERSARY)
def test_each_update_uses_only_its_own_loss(which):
    # The encoder loss also leaves gradients on the adversary; the adversary's step must ignore
    # them. Replay each sub-step alone, on a copy, from its own loss only, and compare.
    make, adversary_optimizer, _ = MODELS_WITH_ADVERSARY[which]
    adversary_term = "aux" if which == "condvae_info" else "adversary"
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    alone_model, alone_adversary = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(1)
    model.training_step((x, y), model.configure_optimizers())
    for replica, optimizer_name, term in (
        (alone_model, "model", "loss"),
        (alone_adversary, adversary_optimizer, adversary_term),
    ):
        optimizer = replica.configure_optimizers()[optimizer_name]
        torch.manual_seed(1)  # the same posterior sample as in the real step
        optimizer.zero_grad()
        replica.loss_terms((x, y))[term].backward()
        optimizer.step()
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for (name, p), q in zip(replica.named_parameters(), model.parameters()):
            if id(p) in owned:
                assert torch.allclose(p, q, atol=1e-7), f"{name} moved differently in {optimizer_name}'s step"


# ----------------------------------------------------------------------------- what a short fit learns


@pytest.fixture(scope="module")
def roll():
    return swiss_roll(2000, seed=0)


def short_fit(model, data):
    fit(model, data.train, epochs=40, batch_size=128, seed=0, progress=False)
    return model


def test_csvae_puts_the_label_in_w_not_z(roll):
    torch.manual_seed(0)
    model = short_fit(CSVAE.mlp(3, 2, beta3=0.05, learning_rate=3e-3), roll)
    train, test = latent_means(model, *roll.train), latent_means(model, *roll.test)
    on_z = probe_accuracy(train["z"], roll.y_train, test["z"], roll.y_test)
    on_w = probe_accuracy(train["w"], roll.y_train, test["w"], roll.y_test)
    assert on_w.accuracy > 0.95, on_w
    assert on_z.accuracy < on_w.accuracy - 0.2, (on_z, on_w)


def test_adversarial_models_edit_better_than_a_plain_cvae(roll):
    # z as wide as the data (3-D) and a light KL on it (0.01 against 20x reconstruction): z has
    # room for the label, the CVAE's decoder learns to ignore y and about half its edits fail
    # (0.34..0.60 over seeds 0-3). The adversaries keep the label out of z (0.91..1.0).
    judge = DataClassifier(*roll.train)
    scores = {}
    for name, make in {
        "cvae": lambda: CVAE.mlp(3, 3, beta=0.01, decoder_std=20**-0.5, learning_rate=3e-3),
        "info": lambda: CondVAEInfo.mlp(3, 3, beta=0.01, aux_weight=10.0, decoder_std=20**-0.5, learning_rate=3e-3),
        "csvae": lambda: CSVAE.mlp(3, 3, beta3=0.01, learning_rate=3e-3),
    }.items():
        torch.manual_seed(0)
        model = short_fit(make(), roll)
        scores[name] = edit_success(model.edit, judge, *roll.test)
    for direction in ("0->1", "1->0"):
        assert scores["cvae"][direction] < 0.8, scores
        assert scores["csvae"][direction] > scores["cvae"][direction] + 0.2, scores
        assert scores["info"][direction] > scores["cvae"][direction] + 0.2, scores


# ----------------------------------------------------------------------------- bad input


LABELLED = {
    "cvae": lambda: CVAE.mlp(3, 2),
    "condvae_info": lambda: CondVAEInfo.mlp(3, 2),
    "csvae": lambda: CSVAE.mlp(3, 2),
}


@pytest.mark.parametrize("which", LABELLED)
def test_labels_that_are_not_binary(which):
    model = LABELLED[which]()
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"class indices in 0\.\.1, got \[2\]"):
        model.loss_terms((x, torch.tensor([0, 1, 2, 1])))
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        model.loss_terms((x, torch.tensor([0, -1, 1, 1])))
    with pytest.raises(ValueError, match="non-integer"):
        model.loss_terms((x, torch.tensor([0.0, 0.5, 1.0, 1.0])))
    with pytest.raises(ValueError, match=r"got \[2\]"):
        model.edit(x, torch.tensor([0, 1, 1, 0]), torch.tensor([1, 0, 2, 1]))


@pytest.mark.parametrize("which", LABELLED)
def test_mismatched_batch_sizes_empty_data_and_missing_labels(which):
    model = LABELLED[which]()
    with pytest.raises(ValueError, match="3 labels but the batch has 4"):
        model.loss_terms((torch.randn(4, 3), torch.tensor([0, 1, 1])))
    with pytest.raises(ValueError, match="empty batch"):
        model.loss_terms((torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"learns from labels: pass batches \(x, y\)"):
        model.loss_terms((torch.randn(4, 3),))
    with pytest.raises(ValueError, match="training data is empty"):
        fit(model, (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), epochs=1, progress=False)


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="condition_dim=2"):
        CVAE(MLPEncoder(3, 2), MLPDecoder(2, 3, condition_dim=2))
    with pytest.raises(ValueError, match="must not see the label"):
        CondVAEInfo(MLPEncoder(3, 2, condition_dim=2), MLPDecoder(2, 3, condition_dim=2), MLP(3, (), 2), MLP(2, (), 2))
    with pytest.raises(ValueError, match="num_labels \\* w_dim = 4"):
        CSVAE(MLPEncoder(3, 2), MLPEncoder(3, 3, condition_dim=1), MLPDecoder(5, 3), None, w_dim=4)
    with pytest.raises(ValueError, match="stds must be positive"):
        CSVAE.mlp(3, 2, w_prior_stds=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        CSVAE.mlp(3, 2, num_labels=2).loss_terms((torch.randn(4, 3), torch.tensor([0, 1, 1, 0])))
