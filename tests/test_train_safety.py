"""Training you can trust: a resume keeps the model's settings, the guard leaves only good checkpoints,
one run holds a checkpoint directory, and write failures name the file and the fix."""

import builtins
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import latentlab.training
import latentlab.training.checkpoints
from latentlab import VAC, VAE, fit
from latentlab.commands import cli
from latentlab.nets import MLPDecoder, MLPEncoder
from latentlab.training import (
    CheckpointError,
    CheckpointWriteError,
    NonFiniteLossError,
    NonFiniteStateError,
    claim_checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parent.parent
OPTIONS = dict(batch_size=32, progress=False, device="cpu")  # 96 examples: 3 steps per epoch


def make_vae(seed=0, hidden=16, **kwargs):
    torch.manual_seed(seed)
    return VAE(MLPEncoder(4, 2, (hidden,)), MLPDecoder(2, 4, (hidden,)), **{"learning_rate": 3e-3, **kwargs})


def toy_x(n=96):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, 2, generator=g)
    return torch.cat([z, z.sin()], dim=1) + 0.05 * torch.randn(n, 4, generator=g)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def all_finite(path):
    state = load_checkpoint(path)
    tensors = [*state["model"].values()]
    tensors += [v for opt in state["optimizers"].values() for slots in opt["state"].values() for v in slots.values()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


# ----------------------------------------------------------------------------- resume checks what it resumes


def test_resume_refuses_another_model_class_naming_both_and_the_file(tmp_path):
    class OtherVAE(VAE):
        pass

    fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
    torch.manual_seed(0)
    other = OtherVAE(MLPEncoder(4, 2, (16,)), MLPDecoder(2, 4, (16,)), learning_rate=3e-3)
    with pytest.raises(CheckpointError, match=r"step-000000003\.pt holds a VAE, but this model is a OtherVAE.*new checkpoint_dir"):
        fit(other, toy_x(), epochs=2, checkpoint_dir=tmp_path, **OPTIONS)


def test_resume_refuses_another_architecture_in_words_not_torchs(tmp_path):
    fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
    wider = make_vae(hidden=32)
    with pytest.raises(CheckpointError) as refused:
        fit(wider, toy_x(), epochs=2, checkpoint_dir=tmp_path, **OPTIONS)
    message = str(refused.value)
    assert "step-000000003.pt holds another architecture" in message
    assert "encoder.body.0.0.weight is (16, 4) there and (32, 4) here" in message
    assert "Error(s) in loading state_dict" not in message


@pytest.mark.parametrize(
    ("changed", "saved", "given"),
    [
        ({"beta": 5.0}, "beta = 1.0", "beta = 5.0"),
        ({"likelihood": "laplace"}, "likelihood = 'gaussian'", "likelihood = 'laplace'"),
        ({"decoder_std": 0.5}, "decoder_log_std = 0.0", "decoder_log_std = -0.69"),
    ],
)
def test_resume_refuses_other_objective_settings(tmp_path, changed, saved, given):
    fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
    before = params(make_vae(**changed))
    model = make_vae(**changed)
    with pytest.raises(CheckpointError, match=rf"step-000000003\.pt was trained with {saved}.*built with {given}.*to train anew"):
        fit(model, toy_x(), epochs=2, checkpoint_dir=tmp_path, **OPTIONS)
    for name, value in before.items():  # nothing was loaded into it, nothing trained
        assert torch.equal(params(model)[name], value)


def test_checkpoints_from_before_settings_were_recorded_resume_and_compare_their_buffers(tmp_path):
    fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
    (newest,) = list_checkpoints(tmp_path)
    state = load_checkpoint(newest)
    del state["settings"]  # as the book's older checkpoints are
    save_checkpoint(state, newest)
    with pytest.raises(CheckpointError, match=r"trained with decoder_log_std = 0\.0, but this model was built with decoder_log_std = -0\.69"):
        fit(make_vae(decoder_std=0.5), toy_x(), epochs=2, checkpoint_dir=tmp_path, **OPTIONS)
    history = fit(make_vae(), toy_x(), epochs=2, checkpoint_dir=tmp_path, **OPTIONS)
    assert len(history["loss"]) == 2 and "settings" in load_checkpoint(list_checkpoints(tmp_path)[-1])


def test_resume_honours_a_new_learning_rate_and_says_so(tmp_path):
    x = toy_x()
    fit(make_vae(), x, epochs=1, checkpoint_dir=tmp_path / "a", **OPTIONS)
    fit(make_vae(), x, epochs=1, checkpoint_dir=tmp_path / "b", **OPTIONS)
    same = make_vae()
    fit(same, x, epochs=2, checkpoint_dir=tmp_path / "a", **OPTIONS)
    faster = make_vae(learning_rate=1e-2)
    with pytest.warns(UserWarning, match=r"step-000000003\.pt at step 3.*learning rate 0\.003 -> 0\.01"):
        fit(faster, x, epochs=2, checkpoint_dir=tmp_path / "b", **OPTIONS)
    state = load_checkpoint(list_checkpoints(tmp_path / "b")[-1])
    assert state["step"] == 6 and state["optimizers"]["model"]["param_groups"][0]["lr"] == 1e-2
    assert load_checkpoint(list_checkpoints(tmp_path / "a")[-1])["optimizers"]["model"]["param_groups"][0]["lr"] == 3e-3
    assert not torch.equal(params(faster)["decoder.net.0.weight"], params(same)["decoder.net.0.weight"])


def test_a_new_learning_rate_keeps_the_schedules_progress(tmp_path):
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g)

    def vac(lr):
        torch.manual_seed(0)
        return VAC(MLPEncoder(4, 2, (8,)), MLPDecoder(2, 4, (8,)), learning_rate=lr, lr_milestones=(1,), lr_gamma=0.5)

    fit(vac(2e-4), (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="learning rate 0.0002 -> 0.0004"):
        fit(vac(4e-4), (x, y), epochs=2, batch_size=16, checkpoint_dir=tmp_path, progress=False)
    state = load_checkpoint(list_checkpoints(tmp_path)[-1])
    group = state["optimizers"]["encoder"]["param_groups"][0]
    assert group["lr"] == pytest.approx(2e-4) and group["initial_lr"] == pytest.approx(4e-4)  # halved after epoch 1
    assert state["schedulers"]["encoder"]["base_lrs"] == pytest.approx([4e-4])


def test_resume_refuses_a_checkpoint_holding_nan(tmp_path):
    fit(make_vae(), toy_x(), epochs=2, checkpoint_dir=tmp_path, **OPTIONS)
    newest = list_checkpoints(tmp_path)[-1]
    state = load_checkpoint(newest)
    state["model"]["decoder.net.0.weight"][0, 0] = float("nan")
    save_checkpoint(state, newest)
    with pytest.raises(CheckpointError, match=r"step-000000006\.pt holds NaN or inf \(in decoder\.net\.0\.weight\).*"
                       r"step-000000003\.pt is untouched: move step-000000006\.pt aside"):
        fit(make_vae(), toy_x(), epochs=3, checkpoint_dir=tmp_path, **OPTIONS)


# ----------------------------------------------------------------------------- the guard leaves good checkpoints


def test_diverging_run_names_a_good_checkpoint_and_following_the_advice_works(tmp_path):
    x = toy_x()
    fit(make_vae(), x, epochs=2, max_steps=4, checkpoint_every=1, checkpoint_dir=tmp_path, **OPTIONS)
    # lr 1e4: weights of 1e4 after one step, then Adam's state or exp(log_var) overflows
    with pytest.raises(NonFiniteLossError) as diverged, pytest.warns(UserWarning, match="learning rate 0.003 -> 10000"):
        fit(make_vae(learning_rate=1e4), x, epochs=3, checkpoint_every=1, checkpoint_dir=tmp_path, **OPTIONS)
    message = str(diverged.value)
    assert "lower learning rate" in message and "same checkpoint_dir" in message
    named = Path(message.split("The last good checkpoint is ")[1].split(":")[0])
    assert named == list_checkpoints(tmp_path)[-1] and all_finite(named)
    assert list(tmp_path.glob("*.pt.nonfinite")) and not list(tmp_path.glob("*.tmp*"))  # the one it came from: aside
    # what the message says: a lower learning rate, the same checkpoint_dir
    history = fit(make_vae(), x, epochs=3, checkpoint_every=1, checkpoint_dir=tmp_path, **OPTIONS)
    assert len(history["loss"]) == 3 and all(torch.isfinite(torch.tensor(v)).all() for v in history.values())
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 9 and all_finite(list_checkpoints(tmp_path)[-1])


class PoisonedVAE(VAE):
    """Its third step leaves inf in a weight (``_where="weight"``) or in Adam's state, with a finite loss."""

    _where = "weight"  # private: not a setting a resume compares

    def training_step(self, batch, optimizers):
        terms = super().training_step(batch, optimizers)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3 and self._where in ("weight", "optimizer"):
            weight = self.decoder.net[0].weight
            with torch.no_grad():
                target = weight if self._where == "weight" else optimizers["model"].state[weight]["exp_avg_sq"]
                target[0, 0] = float("inf")
        return terms


@pytest.mark.parametrize(("where", "named"), [("weight", "decoder.net.0.weight"),
                                              ("optimizer", "optimizer 'model' exp_avg_sq of decoder.net.0.weight")])
def test_nonfinite_parameters_or_optimizer_state_are_never_saved(tmp_path, where, named):
    torch.manual_seed(0)
    model = PoisonedVAE(MLPEncoder(4, 2, (16,)), MLPDecoder(2, 4, (16,)), learning_rate=3e-3)
    model._where = where
    # step 3 started from step 2's checkpoint: that one is moved aside, and step 1's, whose next step ended finite, is good
    with pytest.raises(NonFiniteStateError, match=rf"{named} became NaN or inf in step 3.*nothing was written\. "
                       r"step-000000002\.pt holds the state this step started from.*moved aside.*"
                       r"last good checkpoint is \S*step-000000001\.pt"):
        fit(model, toy_x(), epochs=2, checkpoint_every=1, checkpoint_dir=tmp_path, **OPTIONS)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000001.pt"] and all_finite(tmp_path / "step-000000001.pt")
    torch.manual_seed(0)
    healthy = PoisonedVAE(MLPEncoder(4, 2, (16,)), MLPDecoder(2, 4, (16,)), learning_rate=1e-3)
    healthy._where = "nowhere"
    with pytest.warns(UserWarning, match="learning rate 0.003 -> 0.001"):  # what the message says
        history = fit(healthy, toy_x(), epochs=2, checkpoint_every=1, checkpoint_dir=tmp_path, **OPTIONS)
    assert len(history["loss"]) == 2 and load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 6


def test_a_loss_that_diverges_before_the_first_checkpoint_does_not_ask_for_a_checkpoint_dir(tmp_path):
    with pytest.raises(NonFiniteLossError) as diverged:
        fit(make_vae(learning_rate=1e9), toy_x(), epochs=3, checkpoint_dir=tmp_path, **OPTIONS)
    message = str(diverged.value)
    assert f"No good checkpoint exists in {tmp_path} yet" in message and "pass checkpoint_dir" not in message
    assert not list_checkpoints(tmp_path)


# ----------------------------------------------------------------------------- one run per directory


HOLD_LOCK = """
import sys, time
from latentlab.training import claim_checkpoint_dir
with claim_checkpoint_dir(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(300)
"""


def test_a_live_run_holds_its_directory_and_a_killed_one_leaves_nothing_in_the_way(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        model = make_vae()
        before = params(model)
        with pytest.raises(CheckpointError, match=rf"in use by another run \(pid {holder.pid} .*another checkpoint_dir"):
            fit(model, toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
        assert not list_checkpoints(tmp_path) and all(torch.equal(params(model)[k], v) for k, v in before.items())
    finally:
        holder.kill()  # kill -9: its lock goes with it
        holder.wait()
    orphan = tmp_path / f"step-000000001.pt.tmp{holder.pid}"  # what a run killed mid-write leaves
    orphan.write_bytes(b"half a checkpoint")
    fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000003.pt"] and not orphan.exists()


def test_a_second_run_in_the_same_process_is_refused_while_the_first_holds_the_directory(tmp_path):
    with claim_checkpoint_dir(tmp_path):
        with pytest.raises(CheckpointError, match=rf"in use by another run \(pid {os.getpid()} "):
            fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
    fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)  # released at the end of the block
    assert len(list_checkpoints(tmp_path)) == 1


def test_a_checkpoint_path_that_is_a_file_is_refused_before_training(tmp_path):
    not_a_dir = tmp_path / "runs"
    not_a_dir.write_text("a file")
    model = make_vae()
    before = params(model)
    for path in (not_a_dir, not_a_dir / "checkpoints"):
        with pytest.raises(CheckpointError, match=rf"checkpoint_dir {path} is not a directory"):
            fit(model, toy_x(), epochs=1, checkpoint_dir=path, **OPTIONS)
    assert all(torch.equal(params(model)[k], v) for k, v in before.items())


def test_a_read_only_checkpoint_dir_is_refused_before_training(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.access(read_only, os.W_OK):
            pytest.skip("this user (root) writes into read-only directories")
        with pytest.raises(CheckpointError, match=rf"checkpoint_dir {read_only} is not writable"):
            fit(make_vae(), toy_x(), epochs=1, checkpoint_dir=read_only, **OPTIONS)
    finally:
        read_only.chmod(0o755)


def test_a_directory_that_refuses_writes_is_refused_before_training(tmp_path, monkeypatch):
    def denied(path, mode="r", *args, **kwargs):  # what a read-only directory answers, for any user
        if "w" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(latentlab.training.checkpoints, "open", denied, raising=False)
    model = make_vae()
    before = params(model)
    with pytest.raises(CheckpointError, match=rf"checkpoint_dir {tmp_path} is not writable \(Permission denied\); fix"):
        fit(model, toy_x(), epochs=1, checkpoint_dir=tmp_path, **OPTIONS)
    assert all(torch.equal(params(model)[k], v) for k, v in before.items())


class FullDisk:
    """``open`` on a disk with room for ``room`` checkpoints: writing one more fails with ENOSPC, mid-file,
    as a real full disk does (torch.save then reports an ``inline_container.cc`` enforce failure)."""

    def __init__(self, room):
        self.room = room

    def __call__(self, path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if "w" in mode and len(list_checkpoints(Path(path).parent)) >= self.room:
            return _NoSpace(f)
        return f


class _NoSpace:
    def __init__(self, file, room=512):
        self.file, self.room = file, room  # the first bytes fit, as on a real disk that fills up mid-file

    def write(self, data):
        size = len(memoryview(data))
        if size > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= size
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_keeping_two_checkpoints_needs_room_for_two_not_three(tmp_path, monkeypatch):
    monkeypatch.setattr(latentlab.training.checkpoints, "open", FullDisk(room=2), raising=False)
    fit(make_vae(), toy_x(), epochs=2, checkpoint_every=1, keep_checkpoints=2, checkpoint_dir=tmp_path, **OPTIONS)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000005.pt", "step-000000006.pt"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_full_disk_is_named_with_the_file_and_the_last_checkpoint_survives(tmp_path, monkeypatch):
    monkeypatch.setattr(latentlab.training.checkpoints, "open", FullDisk(room=1), raising=False)
    with pytest.raises(CheckpointWriteError) as full:
        fit(make_vae(), toy_x(), epochs=2, checkpoint_every=1, checkpoint_dir=tmp_path, **OPTIONS)
    message = str(full.value)
    assert f"could not write {tmp_path / 'step-000000002.pt'} (No space left on device)" in message
    assert "is full" in message and "inline_container" not in message and full.value.errno == errno.ENOSPC
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000001.pt"] and all_finite(tmp_path / "step-000000001.pt")
    assert not list(tmp_path.glob("*.tmp*"))


# ----------------------------------------------------------------------------- the command line


def test_the_same_command_twice_builds_the_same_model(tmp_path, monkeypatch):
    built = []

    def capture(model, data, **kwargs):  # the model as the command built it, before fit seeds anything
        built.append(params(model))
        return {}

    monkeypatch.setattr(latentlab.training, "fit", capture)
    args = ["train", "--model", "vae", "--image-size", "32", "--num-train", "8", "--latent-dim", "4",
            "--out", str(tmp_path / "run")]
    cli.main(args)
    cli.main(args)
    cli.main([*args, "--seed", "1"])
    same, other = built[1], built[2]
    assert all(torch.equal(same[name], value) for name, value in built[0].items())
    assert not all(torch.equal(other[name], value) for name, value in built[0].items())


@pytest.mark.parametrize(("flag", "value", "said"), [
    ("--max-steps", "-1", "must be at least 1, got -1"),
    ("--latent-dim", "0", "must be at least 1, got 0"),
    ("--epochs", "2.5", "'2.5' is not a whole number"),
    ("--checkpoint-every", "0", "must be at least 1, got 0"),
    ("--learning-rate", "-1e-3", "must be positive and finite"),
    ("--learning-rate", "inf", "must be positive and finite"),
])
def test_the_command_line_refuses_bad_counts_before_building_anything(flag, value, said, capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(["train", "--model", "vae", f"{flag}={value}"])
    assert refused.value.code == 2 and f"argument {flag}: {said}" in capsys.readouterr().err
