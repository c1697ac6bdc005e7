"""The one training loop: resume is exact, checkpoints are atomic and safe, NaN stops cleanly."""

import math

import pytest
import torch

import latentlab
from latentlab import VAE, fit
from latentlab.nets import MLPDecoder, MLPEncoder
from latentlab.training import (
    CheckpointError,
    NonFiniteLossError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def make_vae(seed=0):
    torch.manual_seed(seed)
    return VAE(MLPEncoder(4, 2, (16,)), MLPDecoder(2, 4, (16,)), learning_rate=3e-3)


def toy_data(n=96):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, 2, generator=g)
    x = torch.cat([z, z.sin()], dim=1) + 0.05 * torch.randn(n, 4, generator=g)
    y = (z[:, 0] > 0).long()
    return x, y


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_interrupted_then_resumed_run_equals_uninterrupted_run(tmp_path):
    x, y = toy_data()
    full = make_vae()
    history_full = fit(full, (x, y), epochs=3, batch_size=20, seed=7, progress=False)

    interrupted = make_vae()
    # 7 steps: stops in the middle of epoch 2 (5 steps per epoch), with a checkpoint every 3 steps
    fit(interrupted, (x, y), epochs=3, batch_size=20, seed=7, progress=False,
        checkpoint_dir=tmp_path, checkpoint_every=3, max_steps=7)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000006.pt", "step-000000007.pt"]

    resumed = make_vae(seed=123)  # different initial weights: everything must come from the checkpoint
    history_resumed = fit(resumed, (x, y), epochs=3, batch_size=20, seed=7, progress=False,
                          checkpoint_dir=tmp_path, checkpoint_every=3)
    for name, value in params(full).items():
        torch.testing.assert_close(params(resumed)[name], value, rtol=0, atol=0)
    assert history_resumed.keys() == history_full.keys()
    for name in history_full:
        assert history_resumed[name] == pytest.approx(history_full[name], rel=1e-6)


def test_finished_run_is_loaded_not_retrained(tmp_path):
    x, _ = toy_data()
    model = make_vae()
    history = fit(model, x, epochs=2, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    again = make_vae(seed=5)
    history_again = fit(again, x, epochs=2, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    assert history_again == history
    for name, value in params(model).items():
        assert torch.equal(params(again)[name], value)


def test_checkpoint_loads_with_weights_only_and_holds_the_run_state(tmp_path):
    x, _ = toy_data()
    fit(make_vae(), x, epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    (path,) = list_checkpoints(tmp_path)
    raw = torch.load(path, weights_only=True)  # must not need pickle of arbitrary objects
    assert raw["step"] == 3 and raw["epoch"] == 1 and raw["model_class"] == "VAE"
    assert set(raw["optimizers"]) == {"model"}
    assert not list(tmp_path.glob("*.tmp*")), "temporary files must not be left behind"


def test_truncated_checkpoint_gives_clear_error_and_previous_one_survives(tmp_path):
    x, _ = toy_data()
    fit(make_vae(), x, epochs=2, batch_size=32, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2)
    older, newest = list_checkpoints(tmp_path)[-2:]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt or truncated.*previous checkpoint .*step-000000004\.pt is untouched"):
        load_checkpoint(newest)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        fit(make_vae(), x, epochs=3, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    assert load_checkpoint(older)["step"] == 4


def test_garbage_and_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "step-000000001.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a latentlab checkpoint"):
        load_checkpoint(foreign)


def test_failed_write_leaves_the_existing_checkpoint_intact(tmp_path):
    path = tmp_path / "step-000000001.pt"
    save_checkpoint({"format": latentlab.training.CHECKPOINT_FORMAT, "step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"format": latentlab.training.CHECKPOINT_FORMAT, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_resuming_with_other_settings_or_overwriting_is_refused(tmp_path):
    x, _ = toy_data()
    fit(make_vae(), x, epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="already holds checkpoints.*nothing is overwritten"):
        fit(make_vae(), x, epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path, resume=False)
    with pytest.raises(CheckpointError, match="batch_size=32.*batch_size=16"):
        fit(make_vae(), x, epochs=2, batch_size=16, progress=False, checkpoint_dir=tmp_path)
    other_scale = make_vae()
    other_scale.set_likelihood("gaussian", 0.5)  # built with another decoder_std than the saved run
    with pytest.raises(CheckpointError, match=r"decoder_log_std = .*delete .* to train anew"):
        fit(other_scale, x, epochs=2, batch_size=32, progress=False, checkpoint_dir=tmp_path)


class ExplodingVAE(VAE):
    """Reports a NaN loss from its third step on."""

    def training_step(self, batch, optimizers):
        terms = super().training_step(batch, optimizers)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls >= 3:
            terms["recon"] = float("nan")
        return terms


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    x, _ = toy_data()
    torch.manual_seed(0)
    model = ExplodingVAE(MLPEncoder(4, 2, (8,)), MLPDecoder(2, 4, (8,)))
    # step 3's loss comes from the parameters saved after step 2: resuming from step 2 would repeat it,
    # so that checkpoint is moved aside and step 1, followed by a finite loss, is the last good one
    with pytest.raises(NonFiniteLossError, match=r"'recon'.*step 3.*step-000000002\.pt holds the parameters that gave "
                       r"this loss.*moved aside.*last good checkpoint is \S*step-000000001\.pt"):
        fit(model, x, epochs=5, batch_size=32, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000001.pt"]
    assert (tmp_path / "step-000000002.pt.nonfinite").is_file()
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 1


def test_history_has_one_mean_per_epoch_for_every_term():
    x, _ = toy_data()
    history = fit(make_vae(), x, epochs=4, batch_size=25, progress=False)
    assert set(history) == {"loss", "recon", "kl", "elbo"}
    assert all(len(v) == 4 and all(math.isfinite(e) for e in v) for v in history.values())


def test_bad_arguments_are_explained(monkeypatch):
    from latentlab.training import switches

    monkeypatch.setattr(switches, "cpu_has_native_bf16", lambda: False)
    x, y = toy_data()
    with pytest.raises(ValueError, match="different lengths"):
        fit(make_vae(), (x, y[:-1]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(make_vae(), x[:0], epochs=1, progress=False)
    with pytest.raises(ValueError, match="amp=True needs a CPU with native bf16"):
        fit(make_vae(), x, epochs=1, amp=True, device="cpu", progress=False)
    with pytest.raises(ValueError, match="latentlab models"):
        fit(torch.nn.Linear(2, 2), x, epochs=1, progress=False)
