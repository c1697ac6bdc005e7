"""Metrics through the model interface: reconstruction error, probes, edit success, latent shifts."""

import pytest
import torch

from latentlab import VAE
from latentlab.data import moons
from latentlab.distributions import DiagonalGaussian
from latentlab.editing.edit import latent_shift_editor
from latentlab.evaluation.metrics import (
    DataClassifier,
    ProbeResult,
    edit_success,
    evaluate,
    probe_accuracy,
    reconstruction_error,
)
from latentlab.models.base import LatentVariableModel
from latentlab.nets import MLPDecoder, MLPEncoder


class Identity(LatentVariableModel):
    """encode: z = x (exactly); decode: z + offset. Lets metrics be checked by hand."""

    def __init__(self, offset=0.0):
        super().__init__()
        self.offset = offset

    def encode(self, x, y=None):
        return {"z": DiagonalGaussian(x, torch.full_like(x, -60.0))}

    def decode(self, latents, y=None):
        return latents["z"] + self.offset


def test_reconstruction_error_by_hand():
    x = torch.randn(10, 3)
    assert reconstruction_error(Identity(), x) == pytest.approx(0.0, abs=1e-7)
    assert reconstruction_error(Identity(offset=0.5), x) == pytest.approx(0.25, rel=1e-5)


def test_probe_finds_information_and_reports_the_majority_rate():
    g = torch.Generator().manual_seed(0)
    y_train, y_test = (torch.rand(400, generator=g) < 0.7).long(), (torch.rand(200, generator=g) < 0.7).long()
    # a ring inside a ring: the label is in the radius, which no line separates
    def ring(y, n):
        angle = torch.rand(n, generator=g) * 6.283
        radius = 1.0 + y.float()
        return torch.stack([radius * angle.cos(), radius * angle.sin()], 1)

    informative = probe_accuracy(ring(y_train, 400), y_train, ring(y_test, 200), y_test)
    assert informative.accuracy > 0.95
    assert informative.majority_rate == pytest.approx(float((y_test == 1).float().mean()))
    linear = probe_accuracy(ring(y_train, 400), y_train, ring(y_test, 200), y_test, probe="logistic")
    assert linear.accuracy < 0.8  # the linear probe misses it: why the default probe is an MLP
    noise = probe_accuracy(torch.randn(400, 2, generator=g), y_train, torch.randn(200, 2, generator=g), y_test)
    assert noise.accuracy < noise.majority_rate + 0.08
    assert "majority class" in str(noise) and isinstance(noise, ProbeResult)


def test_probe_bad_input():
    y = torch.tensor([0, 1] * 5)
    with pytest.raises(ValueError, match=r"\(examples, dims\)"):
        probe_accuracy(torch.randn(10), y, torch.randn(10, 2), y)
    with pytest.raises(ValueError, match="9 labels but the batch has 10"):
        probe_accuracy(torch.randn(10, 2), y[:9], torch.randn(10, 2), y)
    with pytest.raises(ValueError, match="single class"):
        probe_accuracy(torch.randn(10, 2), torch.zeros(10, dtype=torch.long), torch.randn(10, 2), y)
    with pytest.raises(ValueError, match="probe must be"):
        probe_accuracy(torch.randn(10, 2), y, torch.randn(10, 2), y, probe="forest")


def oracle(x):
    """The label of a point is 1 when its first coordinate is positive."""
    return (x[:, 0] > 0).long()


def test_edit_success_is_reported_per_direction():
    x = torch.tensor([[-1.0], [-2.0], [3.0], [4.0]])
    y = oracle(x)

    def flip(x, y, target):
        return -x

    def only_up(x, y, target):  # succeeds 0 -> 1, leaves 1 -> 0 untouched
        return torch.where(target[:, None] == 1, x.abs(), x)

    def nothing(x, y, target):
        return x

    assert edit_success(flip, oracle, x, y) == {"0->1": 1.0, "1->0": 1.0}
    assert edit_success(only_up, oracle, x, y) == {"0->1": 1.0, "1->0": 0.0}
    assert edit_success(nothing, oracle, x, y) == {"0->1": 0.0, "1->0": 0.0}
    with pytest.raises(ValueError, match="no example has label 1"):
        edit_success(flip, oracle, x[:2], y[:2])
    with pytest.raises(ValueError, match=r"0\.\.1, got \[2\]"):
        edit_success(flip, oracle, x, torch.tensor([0, 0, 2, 1]))


def test_data_classifier_is_an_independent_judge():
    data = moons(600, seed=0)
    judge = DataClassifier(*data.train)
    assert judge.accuracy(*data.test) > 0.95
    assert judge(data.x_test[:5]).dtype == torch.long


def test_latent_shift_editor_moves_by_the_class_mean_difference():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 4.0], [12.0, 4.0]])
    y = torch.tensor([0, 0, 1, 1])
    edit = latent_shift_editor(Identity(), x, y)  # class means (1, 0) and (11, 4)
    moved = edit(x[:1], y[:1], torch.tensor([1]))
    assert torch.allclose(moved, torch.tensor([[10.0, 4.0]]))
    assert torch.allclose(edit(x, y, y), x)  # to its own class: unchanged


def test_metrics_work_on_a_real_model():
    vae = VAE(MLPEncoder(2, 2, (8,)), MLPDecoder(2, 2, (8,)))
    data = moons(100, seed=0)
    assert reconstruction_error(vae, data.x_test) > 0
    scores = edit_success(latent_shift_editor(vae, *data.train), oracle, *data.test)
    assert set(scores) == {"0->1", "1->0"} and all(0 <= s <= 1 for s in scores.values())


def test_evaluate_collects_every_score():
    data = moons(200, seed=0)
    model = Identity()
    edit = latent_shift_editor(model, *data.train)
    scores = evaluate(model, data.train, data.test, DataClassifier(*data.train), edit=edit)
    assert set(scores) == {"recon", "probe z", "majority", "edit 0->1", "edit 1->0"}
    assert scores["recon"] == pytest.approx(0.0, abs=1e-7)
    assert scores["probe z"] > 0.9  # z = x holds the label
