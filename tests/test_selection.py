"""Choosing the epoch on held-out data: the best epoch's weights are kept, an interrupted selection
resumes from its records, and a finished one reloads without training."""

import json

import pytest
import torch

import latentlab.training.selection
from latentlab import VAE, fit
from latentlab.nets import MLPDecoder, MLPEncoder
from latentlab.training.selection import BEST_NAME, SCORES_NAME, fit_selecting_epoch

OPTIONS = dict(batch_size=32, progress=False, device="cpu")


def make_vae():
    torch.manual_seed(0)
    return VAE(MLPEncoder(4, 2, (16,)), MLPDecoder(2, 4, (16,)), learning_rate=3e-3)


def toy_x(n=96):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, 2, generator=g)
    return torch.cat([z, z.sin()], dim=1)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class ScriptedScore:
    """Returns the given scores in turn and remembers the weights it was shown at each epoch."""

    def __init__(self, values):
        self.values, self.seen, self.modes = list(values), [], []

    def __call__(self, model):
        self.seen.append(weights(model))
        self.modes.append(model.training)
        return self.values[len(self.seen) - 1]


def test_keeps_the_weights_of_the_best_epoch_and_scores_in_eval_mode(tmp_path):
    model, score = make_vae(), ScriptedScore([0.2, 0.9, 0.5, 0.9])
    chosen = fit_selecting_epoch(model, toy_x(), epochs=4, score=score, checkpoint_dir=tmp_path, **OPTIONS)
    assert (chosen.best_epoch, chosen.best_score, chosen.scores) == (2, 0.9, [0.2, 0.9, 0.5, 0.9])  # earliest of a tie
    assert score.modes == [False] * 4
    assert not model.training  # handed back ready to evaluate
    for name, value in weights(model).items():
        assert torch.equal(value, score.seen[1][name]), name
    assert any(not torch.equal(score.seen[1][k], score.seen[3][k]) for k in score.seen[1])  # epochs 2 and 4 differ
    assert chosen.seconds > 0


def test_each_epoch_is_the_same_as_one_plain_fit(tmp_path):
    selected, score = make_vae(), ScriptedScore([0.1, 0.2, 0.3])
    fit_selecting_epoch(selected, toy_x(), epochs=3, score=score, checkpoint_dir=tmp_path / "a", **OPTIONS)
    plain = make_vae()
    fit(plain, toy_x(), epochs=3, checkpoint_dir=tmp_path / "b", **OPTIONS)
    for name, value in weights(plain).items():
        assert torch.allclose(value, selected.state_dict()[name]), name


def test_an_interrupted_selection_resumes_and_a_finished_one_reloads_without_training(tmp_path, monkeypatch):
    first = ScriptedScore([0.3, 0.1])
    fit_selecting_epoch(make_vae(), toy_x(), epochs=2, score=first, checkpoint_dir=tmp_path, **OPTIONS)
    rest = ScriptedScore([0.8])
    resumed = make_vae()
    chosen = fit_selecting_epoch(resumed, toy_x(), epochs=3, score=rest, checkpoint_dir=tmp_path, **OPTIONS)
    assert len(rest.seen) == 1 and chosen.scores == [0.3, 0.1, 0.8] and chosen.best_epoch == 3
    assert json.loads((tmp_path / SCORES_NAME).read_text())["scores"] == [0.3, 0.1, 0.8]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished selection must not train")

    monkeypatch.setattr(latentlab.training.selection, "fit", no_training)
    reloaded = make_vae()
    again = fit_selecting_epoch(reloaded, toy_x(), epochs=3, score=ScriptedScore([]), checkpoint_dir=tmp_path, **OPTIONS)
    assert (again.best_epoch, again.scores, again.seconds) == (3, chosen.scores, chosen.seconds)
    for name, value in weights(resumed).items():
        assert torch.equal(value, reloaded.state_dict()[name]), name
    assert torch.load(tmp_path / BEST_NAME, weights_only=True).keys() == resumed.state_dict().keys()


def test_refuses_fewer_epochs_than_recorded_and_a_bad_count(tmp_path):
    fit_selecting_epoch(make_vae(), toy_x(), epochs=2, score=ScriptedScore([0.1, 0.2]), checkpoint_dir=tmp_path, **OPTIONS)
    with pytest.raises(ValueError, match="holds 2 epochs' scores but epochs=1"):
        fit_selecting_epoch(make_vae(), toy_x(), epochs=1, score=ScriptedScore([]), checkpoint_dir=tmp_path, **OPTIONS)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fit_selecting_epoch(make_vae(), toy_x(), epochs=0, score=ScriptedScore([]), checkpoint_dir=tmp_path / "new", **OPTIONS)
