"""Adding a model: its own class plus one registration beside it, and the loop, the metrics, the
sliders and the benchmarks pick it up with no other file touched. Also: no per-model switch
outside ``latentlab/models/``."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import latentlab.models.registry
from latentlab import Control, LatentVariableModel, fit
from latentlab.evaluation import metrics
from latentlab.commands.bench import measure
from latentlab.commands.bench_sliders import measure as measure_sliders
from latentlab.distributions import DiagonalGaussian
from latentlab.models import FACE_MODELS, SliderSpace, face_model, register_face_model
from latentlab.editing.sliders import slider_space, static_sliders

PACKAGE = Path(__file__).resolve().parent.parent / "latentlab"


class LabelledCoordinateVAE(LatentVariableModel):
    """A VAE whose first latent coordinate is asked to be the label: z[0] ~ N(2y - 1, 1) a priori.

    The whole of what a model brings: encode, decode, its loss, its own classifier (the sign of
    z[0]), an edit (move z[0] to the other label's mean) and its sliders (z[0] alone).
    """

    num_classes = 2
    has_classifier = True
    sliders_need_reference = False

    def __init__(self, image_size: int, latent_dim: int = 4, learning_rate: float = 1e-3):
        super().__init__()
        self.image_size, self.latent_dim, self.learning_rate = image_size, latent_dim, learning_rate
        # tiny networks that read and draw each channel's mean colour: enough for the test's data
        self.encoder = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, latent_dim))
        self.decoder = nn.Linear(latent_dim, 3)
        self.set_likelihood("gaussian", 1.0)

    def encode(self, x, y=None):
        mean = self.encoder(x)
        return {"z": DiagonalGaussian(mean, torch.zeros_like(mean))}  # unit posterior variance: small and stable

    def decode(self, latents, y=None):
        return self.decoder(latents["z"])[:, :, None, None].expand(-1, -1, self.image_size, self.image_size)

    def prior_mean(self, y):
        mean = torch.zeros(len(y), self.latent_dim, device=y.device)
        mean[:, 0] = 2 * y.float() - 1
        return mean

    def loss_terms(self, batch):
        x, y = batch
        q = self.encode(x)["z"]
        z = q.rsample()
        colour = x.mean((2, 3))  # the likelihood of the mean colour only: the images hold nothing else
        recon = -self.reconstruction_log_likelihood(colour, self.decoder(z)).mean()
        kl = q.kl(DiagonalGaussian(self.prior_mean(y), torch.zeros_like(q.mean))).mean()
        return {"loss": recon + kl, "recon": recon, "kl": kl}

    def class_log_probs(self, x):
        logit = 2 * self.encode(x)["z"].mean[:, :1]  # log N(z0; 1, 1) - log N(z0; -1, 1)
        return torch.cat([nn.functional.logsigmoid(-logit), nn.functional.logsigmoid(logit)], dim=1)

    @torch.no_grad()
    def edit(self, x, y, target):
        z = self.encode(x)["z"].mean.clone()
        z[:, 0] = 2 * torch.as_tensor(target, device=z.device).float() - 1
        return self.decode({"z": z})

    def controls(self):
        return [Control("z[0] (the label)", -3.0, 3.0)]

    def slider_space(self, x, y=None, **unused):
        z = self.encode(x)["z"].mean
        axis = Control("z[0] (the label)", -3.0, 3.0, float(z[0, 0]))

        def decode(values):
            moved = z.expand(len(values), -1).clone()
            moved[:, 0] = values[:, 0].to(z)
            return self.decode({"z": moved})
        return SliderSpace([axis], decode, "the label's coordinate z[0]")


@pytest.fixture
def registered(monkeypatch):
    """The one registration the model's file would hold, removed again after the test."""
    monkeypatch.setattr(latentlab.models.registry, "FACE_MODELS", dict(FACE_MODELS))
    monkeypatch.setattr("latentlab.commands.bench.FACE_MODELS", latentlab.models.registry.FACE_MODELS)

    @register_face_model("labelled_coordinate_vae")
    def build(size, latent, classes, nets, kwargs):
        return LabelledCoordinateVAE(size, latent, **kwargs)

    return "labelled_coordinate_vae"


def test_a_new_model_trains_slides_scores_and_benchmarks_through_the_shared_code(registered, tmp_path):
    torch.manual_seed(0)
    model = face_model(registered, image_size=32, latent_dim=4, learning_rate=1e-2)
    assert isinstance(model, LabelledCoordinateVAE)
    y = torch.arange(64) % 2
    x = (0.5 + 0.3 * (2 * y.float() - 1))[:, None, None, None].expand(64, 3, 32, 32).contiguous()  # label = brightness
    history = fit(model, (x, y), epochs=150, batch_size=32, seed=0, device="cpu", checkpoint_dir=tmp_path, progress=False)
    assert history["loss"][-1] < history["loss"][0]

    assert metrics.classification_accuracy(model.predict, x, y) == 1.0
    judge = lambda images: (images.mean((1, 2, 3)) > 0.5).long()  # an independent reader of the label
    success = metrics.edit_success(model.edit, judge, x, y)
    assert success["0->1"] > 0.9 and success["1->0"] > 0.9
    assert metrics.reconstruction_error(model, x) < 0.05  # drawing the average grey for every image scores 0.09

    space = slider_space(model, x[0])
    assert [axis.name for axis in space.axes] == ["z[0] (the label)"]
    brighter = space.traverse(0, torch.tensor([-3.0, 3.0]))
    assert float(brighter[1].mean()) > float(brighter[0].mean())
    assert "z[0] (the label)" in static_sliders(model, x[:2], num_frames=3).html()

    step = measure(registered, 32, torch.device("cpu"), batch_size=4, steps=1, warmup=1,
                   amp=False, channels_last=False, compile=False)
    assert step["model"] == "LabelledCoordinateVAE" and step["step_ms"] > 0
    sliders = measure_sliders(registered, 32, moves=2, frames=3)
    assert sliders["axes"] == 1 and sliders["kind"] == "the label's coordinate z[0]"


# the model classes, by name, that a per-model switch outside latentlab/models/ would test for
MODEL_CLASSES = "VAE|CVAE|CondVAEInfo|CSVAE|CCVAE|M2|VAC|IntroVAC|IFcVAEGAN|Classifier|AttributeClassifier|LabelDecoderModel"
MODEL_NAMES = "vae|cvae|condvae_info|csvae|ccvae|m2|vac|introvac|ifcvae_gan|ifcvae_gan_without_aux|cvae_gan|classifier"


def test_no_per_model_switch_outside_the_models_package():
    switches = [
        re.compile(rf"isinstance\([^)]*\b({MODEL_CLASSES})\b"),  # isinstance(model, (VAC, CSVAE))
        re.compile(rf"""\b(name|model_name|model)\s+(==|!=|in|not in)\s*\(?\s*["']({MODEL_NAMES})["']"""),  # name in ("vac", ...)
        re.compile(r"except NotImplementedError"),  # "has no classifier" found by trying
    ]
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PACKAGE / "models" in path.parents:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(pattern.search(line) for pattern in switches):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not found, "per-model switches outside latentlab/models/:\n" + "\n".join(found)


def test_the_grep_finds_a_switch_where_there_is_one(tmp_path):
    pattern = re.compile(rf"isinstance\([^)]*\b({MODEL_CLASSES})\b")
    assert pattern.search("    if isinstance(model, (VAC, CSVAE)):")
    assert not pattern.search("    if isinstance(reference, torch.Tensor):")
    names = re.compile(rf"""\b(name|model_name|model)\s+(==|!=|in|not in)\s*\(?\s*["']({MODEL_NAMES})["']""")
    assert names.search('if name not in ("vac", "introvac"):') and names.search('if name == "vae":')
    assert not names.search('if profile.name == "gpu":')
