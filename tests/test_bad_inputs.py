"""The bad inputs of the README's table: each gets a message naming the problem and the fix before any
training step, or is converted as documented. A model that was refused has not moved."""

import pytest
import torch
from torch.utils.data import Dataset

from latentlab import CSVAE, VAC, VAE, Classifier, config, face_model, fit
from latentlab.models import CCVAE
from latentlab.nets import MLP, MLPDecoder, MLPEncoder

OPTIONS = dict(epochs=1, batch_size=16, progress=False, device="cpu")


def make_vae(dim=8, out=None, **kwargs):
    torch.manual_seed(0)
    return VAE(MLPEncoder(dim, 2, (16,)), MLPDecoder(2, out or dim, (16,)), **kwargs)


def features(n=32, dim=8):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(3))


def refused(model, data, match, **options):
    """``fit`` raises ValueError matching ``match`` and leaves the model's parameters as they were."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        fit(model, data, **{**OPTIONS, **options})
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items()), "a refused model must not train"


def test_a_decoder_narrower_than_the_data_is_refused_not_broadcast():
    refused(make_vae(out=1), features(), r"decoder's output has shape \(16, 1\) but the data x has shape \(16, 8\).*"
            r"MLPDecoder\(latent_dim, 8\)")
    torch.manual_seed(0)
    vac = VAC(MLPEncoder(8, 2, (16,)), MLPDecoder(2, 1, (16,)))  # L1 would broadcast too
    refused(vac, (torch.rand(32, 8), torch.randint(0, 2, (32,))), r"output has shape \(16, 1\).*\(16, 8\)")


def test_images_in_0_255_are_refused_with_the_divide_by_255_hint():
    torch.manual_seed(0)
    faces = face_model("vae", image_size=32, latent_dim=4, channels=(8, 16, 32))
    pixels = torch.randint(0, 256, (8, 3, 32, 32)).float()
    refused(faces, pixels, r"x has values in \[0, 255\], outside \[0, 1\]: images must be floats in \[0, 1\].*x = x / 255",
            batch_size=4)


def test_bernoulli_likelihood_on_data_outside_0_1_is_refused():
    refused(make_vae(likelihood="bernoulli"), features(), r"outside \[0, 1\]: a Bernoulli likelihood.*likelihood='gaussian'")


def test_float64_data_is_converted_to_the_models_precision():
    x = features().double()
    converted, reference = make_vae(), make_vae()
    fit(converted, x, **OPTIONS)
    fit(reference, x.float(), **OPTIONS)
    for name, value in reference.state_dict().items():
        assert converted.state_dict()[name].dtype == torch.float32
        assert torch.equal(converted.state_dict()[name], value)


def test_a_float64_model_trains_on_float32_data():
    model = make_vae().double()
    history = fit(model, features(), **OPTIONS)
    assert all(p.dtype == torch.float64 for p in model.parameters()) and torch.isfinite(torch.tensor(history["loss"])).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_x_is_named_as_the_data_not_a_diverging_loss(bad):
    x = features()
    x[3, 1] = bad
    refused(make_vae(), x, r"x holds NaN or inf in 1 example\(s\) \(first: \[3\]\).*Drop or impute")


class DictFaces(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return {"image": torch.rand(8), "label": index % 2}


class SometimesNaN(Dataset):
    """Finite first example, NaN in example 5: only the guard can see it."""

    def __len__(self):
        return 32

    def __getitem__(self, index):
        x = features()[index].clone()
        if index == 5:
            x[0] = float("nan")
        return (x,)


def test_a_dataset_yielding_dicts_is_refused_with_the_fix():
    refused(make_vae(), DictFaces(), r"yields a dict with keys \['image', 'label'\].*\(item\['image'\], item\['label'\]\)")


def test_nan_in_a_later_dataset_example_is_named_as_the_data():
    with pytest.raises(ValueError, match=r"the batch itself holds NaN or inf \(x of dataset examples \[5\]\): the data, "
                                         "not the learning rate"):
        fit(make_vae(), SometimesNaN(), **OPTIONS)


@pytest.mark.parametrize(("argument", "value", "match"), [
    ("epochs", 2.5, r"epochs must be an int >= 0, got 2\.5.*max_steps="),
    ("epochs", "3", r"epochs must be an int >= 0, got '3'.*int\('3'\)"),
    ("epochs", True, "epochs must be an int"),
    ("epochs", -1, "epochs must be >= 0, got -1"),
    ("max_steps", -1, "max_steps must be >= 0, got -1"),
    ("max_steps", 2.0, "max_steps must be an int"),
    ("checkpoint_every", 0, "checkpoint_every must be >= 1, got 0"),
    ("checkpoint_every", -3, "checkpoint_every must be >= 1"),
    ("batch_size", 16.0, "batch_size must be an int"),
    ("batch_size", 0, "batch_size must be >= 1"),
    ("keep_checkpoints", 1, "keep_checkpoints must be >= 2.*fallback"),
    ("seed", -1, "seed must be >= 0"),
    ("num_workers", -1, "num_workers must be >= 0"),
])
def test_counts_must_be_whole_numbers_in_range(argument, value, match):
    refused(make_vae(), features(), match, **{argument: value})


def test_integer_and_numpy_data_are_explained():
    refused(make_vae(), torch.randint(0, 5, (32, 8)), r"floating-point tensor, got dtype torch.int64.*x.float\(\)")
    refused(make_vae(), torch.randint(0, 255, (32, 8), dtype=torch.uint8), r"x.float\(\) / 255")
    refused(make_vae(), features().numpy(), r"torch.as_tensor")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks_is_named():
    refused(make_vae(), features(), "device='cuda' but CUDA is not available on this machine; pass device='cpu'",
            device="cuda")


def test_a_device_name_torch_does_not_know_is_named(monkeypatch):
    refused(make_vae(), features(), r"device='gpu0' is not a device name; use 'cpu', 'cuda'", device="gpu0")
    monkeypatch.setenv(config.DEVICE_ENV, "gpu0")
    with pytest.raises(ValueError, match=r"LATENTLAB_DEVICE='gpu0' is not a device name"):
        config.default_device()


@pytest.mark.parametrize("lr", [-1e-3, 0.0, float("inf"), float("nan")])
def test_a_learning_rate_that_is_not_positive_and_finite_is_refused_by_every_model(lr):
    match = "learning_rate must be positive and finite"
    with pytest.raises(ValueError, match=match):
        make_vae(learning_rate=lr)
    with pytest.raises(ValueError, match=match):
        CSVAE.mlp(4, 2, learning_rate=lr)
    with pytest.raises(ValueError, match=match):
        VAC(MLPEncoder(4, 2), MLPDecoder(2, 4), learning_rate=lr)
    with pytest.raises(ValueError, match=match):
        Classifier(MLP(4, (8,), 2), num_classes=2, learning_rate=lr)
    with pytest.raises(ValueError, match="prior_learning_rate must be positive and finite"):
        CCVAE(MLPEncoder(4, 3), MLPDecoder(3, 4), num_classes=2, characteristic_dim=2, prior_learning_rate=lr)


def test_latent_dim_zero_is_refused_not_replaced_by_the_default():
    with pytest.raises(ValueError, match="latent_dim must be >= 1, got 0"):
        face_model("vae", image_size=32, latent_dim=0)


def test_vac_edits_and_moves_a_float64_model():
    torch.manual_seed(0)
    model = VAC(MLPEncoder(4, 2, (8,)), MLPDecoder(2, 4, (8,))).double().eval()
    x = torch.rand(3, 4, dtype=torch.float64)
    edited = model.edit(x, torch.tensor([0, 1, 0]), torch.tensor([1, 1, 0]))
    moved = model.move(x, torch.tensor([1.5]))
    assert edited.dtype == moved.dtype == torch.float64
    assert torch.equal(edited[1], model.move(x[1:2], torch.tensor([0.0]))[0])  # target = label: not moved
