"""The GPU switches of the loop (exercised on CPU), the face models by name, the command line and the benchmark."""

import json

import pytest
import torch
from torch import nn

from latentlab import fit

from latentlab.commands import bench, cli
from latentlab.models.base import LatentVariableModel
from latentlab.training import list_checkpoints
from latentlab.models import FACE_MODELS, face_model


class Recorder(LatentVariableModel):
    """A one-conv model that remembers what the loop handed it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.seen = []

    def loss_terms(self, batch):
        x = batch[0]
        self.seen.append((x.dtype, float(x.min()), float(x.max()), x.is_contiguous(memory_format=torch.channels_last),
                          torch.is_autocast_enabled("cpu")))
        return {"loss": self.conv(x).pow(2).mean()}


def test_uint8_images_arrive_as_floats_in_unit_range():
    model = Recorder()
    images = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 0, 255
    fit(model, images, epochs=1, batch_size=8, progress=False, device="cpu")
    dtype, low, high, *_ = model.seen[0]
    assert dtype == torch.float32 and low == 0.0 and high == 1.0


def test_channels_last_switch_changes_the_layout_of_batches_and_conv_weights():
    images = torch.rand(8, 3, 6, 6)
    plain, nhwc = Recorder(), Recorder()
    fit(plain, images, epochs=1, batch_size=4, progress=False, device="cpu", channels_last=False)
    fit(nhwc, images, epochs=1, batch_size=4, progress=False, device="cpu", channels_last=True)
    assert not plain.seen[0][3] and nhwc.seen[0][3]
    assert nhwc.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_switch_compiles_sub_networks_in_place_and_keeps_results():
    torch.manual_seed(0)
    reference, compiled = Recorder(), Recorder()
    compiled.load_state_dict(reference.state_dict())
    images = torch.rand(8, 3, 6, 6)
    fit(reference, images, epochs=1, batch_size=4, progress=False, device="cpu", compile=False)
    fit(compiled, images, epochs=1, batch_size=4, progress=False, device="cpu", compile="eager")
    assert compiled.conv._compiled_call_impl is not None and reference.conv._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(reference.state_dict())  # checkpoints stay interchangeable
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], value)


def test_compiled_adversarial_step_may_differentiate_a_graph_twice():
    from latentlab.training import compile_subnetworks

    torch.manual_seed(0)
    model = face_model("introvac", image_size=32, latent_dim=4, channels=(8, 8, 8), warmup_epochs=0).train()
    compile_subnetworks(model, "aot_eager")  # AOTAutograd, as the default backend, without code generation
    terms = model.training_step((torch.rand(4, 3, 32, 32), torch.randint(0, 2, (4,))), model.configure_optimizers())
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())  # step 2 read step 1's retained graph


def test_cpu_defaults_channels_last_on_and_compile_and_autocast_off():
    model = Recorder()
    fit(model, torch.rand(4, 3, 6, 6), epochs=1, batch_size=4, progress=False, device="cpu")
    assert model.seen[0][3] and not model.seen[0][4] and model.conv._compiled_call_impl is None


def test_cpu_autocast_needs_native_bf16(monkeypatch):
    from latentlab.training import switches

    monkeypatch.setattr(switches, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"amp=True needs a CPU with native bf16 \(AVX512-BF16 or AMX\).*amp=False"):
        fit(Recorder(), torch.rand(4, 3, 6, 6), epochs=1, batch_size=4, progress=False, device="cpu", amp=True)
    monkeypatch.setattr(switches, "cpu_has_native_bf16", lambda: True)
    model = Recorder()
    fit(model, torch.rand(4, 3, 6, 6), epochs=1, batch_size=4, progress=False, device="cpu", amp=True)
    assert model.seen[0][4]  # the step ran under bf16 autocast
    assert not switches.resolve_amp(None, torch.device("cpu"))  # never on unless asked: CPU runs stay float32


def test_kept_freed_memory_is_reused_without_page_faults():
    import resource

    from latentlab.training import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("not glibc: nothing to set")

    def faults_of_a_64_mib_tensor() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(2**24).fill_(1.0)  # allocated, written, freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults = [faults_of_a_64_mib_tensor() for _ in range(12)]  # the heap grows a few times, then holds the block
    # without it: 16,384 pages of 4 KiB on every call, glibc unmapping the block and mapping it again
    assert min(faults[-4:]) < 1000, faults
    assert keep_freed_memory()  # idempotent


@pytest.mark.parametrize("name", sorted(FACE_MODELS))
def test_every_face_model_takes_a_training_step_at_32_px(name):
    torch.manual_seed(0)
    model = face_model(name, image_size=32, latent_dim=8)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    terms = model.training_step((x, y) if FACE_MODELS[name].needs_labels else (x,), model.configure_optimizers())
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    moved = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(moved) > 0.9 * len(before), f"{name}: only {len(moved)} of {len(before)} parameters moved"


def test_face_model_refuses_unknown_models_and_sizes():
    with pytest.raises(ValueError, match="choose one of"):
        face_model("gan", image_size=32)
    with pytest.raises(ValueError, match="32, 64 or 128"):
        face_model("vae", image_size=48)


def test_command_line_trains_then_resumes_instead_of_retraining(tmp_path, capsys):
    args = ["train", "--model", "classifier", "--data", "synthetic", "--image-size", "32", "--num-train", "24",
            "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run")]
    cli.main(args)
    printed = capsys.readouterr().out
    assert "profile:" in printed and "synthetic faces" in printed and "1 process(es)" in printed
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert set(history["history"]) == {"loss", "accuracy"} and "synthetic faces" in history["data"]
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-000000003.pt"]
    cli.main(args)  # the finished run is found and returned, not trained again
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-000000003.pt"]


def test_command_line_explains_missing_celeba(tmp_path, monkeypatch):
    from latentlab.data import DatasetNotFoundError

    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="list_attr_celeba.txt"):
        cli.main(["train", "--model", "vae", "--data", "celeba", "--image-size", "32", "--out", str(tmp_path / "r")])


def test_benchmark_measures_a_training_step():
    result = bench.measure("vae", 32, torch.device("cpu"), batch_size=2, steps=1, warmup=0,
                           amp=None, channels_last=None, compile=None)
    assert result["model"] == "VAE" and result["images_per_s"] > 0 and result["peak_mib"] > 0
    assert result["settings"] == "amp=off, channels_last=on, compile=off"
    assert "cores" in bench.hardware(torch.device("cpu"))


def test_face_model_passes_narrower_widths_to_every_network():
    model = face_model("condvae_info", image_size=32, latent_dim=4, channels=(8, 16, 32))
    assert list(model.encoder.channels) == [8, 16, 32] and list(model.decoder.channels) == [8, 16, 32]
    assert list(model.classifier.trunk.channels) == [8, 16, 32]
    wide = face_model("condvae_info", image_size=32, latent_dim=4)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in wide.parameters()) / 10
