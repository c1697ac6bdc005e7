"""Latent sliders: each family's axes decode what the model itself would, frames match, widgets redraw."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab import DiagonalGaussian, LatentVariableModel, face_model
from latentlab.evaluation.metrics import latent_means
from latentlab.editing.sliders import (
    LiveSliders,
    axis_readings,
    encode_image,
    principal_directions,
    slider_space,
    static_sliders,
)

NETS = {"image_size": 32, "channels": (8, 16, 32), "latent_dim": 8}


def build(name: str, **kwargs) -> LatentVariableModel:
    torch.manual_seed(0)
    return face_model(name, **NETS, **kwargs).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.rand(3, 3, 32, 32), torch.tensor([0, 1, 1])


def reconstruction(model, x, y=None):
    with torch.no_grad():
        return model.decode(latent_means(model, x, y), y).clamp(0, 1)


def test_vac_axes_are_deltas_along_each_attribute_direction(images):
    x, _ = images
    model = build("introvac", num_labels=2, attribute_names=("Eyeglasses", "Facial_Hair"))
    space = slider_space(model, x[0])
    assert [a.name for a in space.axes] == ["delta Eyeglasses", "delta Facial_Hair"]
    assert space.defaults.tolist() == [0.0, 0.0]
    deltas = torch.tensor([[2.5, -1.0], [0.0, 4.0]])
    expected = torch.cat([model.move(x[:1], d) for d in deltas]).clamp(0, 1)
    assert torch.allclose(space.render(deltas), expected, atol=1e-6)
    assert torch.allclose(space.render(space.defaults), reconstruction(model, x[:1]), atol=1e-6)
    wide = slider_space(model, x[0], span=10.0)
    assert all((a.low, a.high) == (-10.0, 10.0) for a in wide.axes)


def test_csvae_axes_are_w_coordinates_starting_at_the_images_own_w(images):
    x, y = images
    model = build("csvae", w_dim=2)
    space = slider_space(model, x[1], y[1], names=["Smiling"])
    codes = latent_means(model, x[1:2], y[1:2].reshape(1, 1))
    assert [a.name for a in space.axes] == ["w[0] (Smiling)", "w[1] (Smiling)"]
    assert torch.allclose(space.defaults, codes["w"][0])
    assert all(a.low <= a.default <= a.high for a in space.axes)
    w = torch.tensor([[0.0, 3.0], [-1.0, 2.0]])
    expected = model.decode({"z": codes["z"].expand(2, -1), "w": w}).clamp(0, 1)
    assert torch.allclose(space.render(w), expected, atol=1e-6)
    with pytest.raises(ValueError, match="pass y"):
        slider_space(model, x[0])


def test_ccvae_axes_traverse_each_characteristic_coordinate(images):
    x, _ = images
    model = build("ccvae")
    space = slider_space(model, x[2])
    assert [a.name for a in space.axes] == [f"z_c[{i}]" for i in range(model.characteristic_dim)]
    assert torch.allclose(space.defaults, latent_means(model, x[2:3])["z_c"][0])
    values = torch.linspace(-2, 2, 4)
    assert torch.allclose(space.traverse(0, values), model.traverse(x[2:3], 0, values).clamp(0, 1), atol=1e-6)
    assert torch.allclose(space.render(space.defaults), reconstruction(model, x[2:3]), atol=1e-6)


@pytest.mark.parametrize("name", ["cvae", "ifcvae_gan"])
def test_label_value_slider_runs_from_one_label_to_the_other(images, name):
    x, y = images
    model = build(name)
    space = slider_space(model, x[1], y[1], names=["neutral", "smiling"])
    (axis,) = space.axes
    assert axis.name == "label value (0 = neutral, 1 = smiling)" and (axis.low, axis.high, axis.default) == (0, 1, 1)
    z = latent_means(model, x[1:2], y[1:2])["z"]
    ends = space.render(torch.tensor([[0.0], [1.0]]))
    for t, image in zip((0, 1), ends):
        assert torch.allclose(image, model.decode({"z": z}, torch.tensor([t])).clamp(0, 1)[0], atol=1e-6)
    halfway = model.decode_condition(z, torch.tensor([[0.5, 0.5]])).clamp(0, 1)
    assert torch.allclose(space.render([0.5]), halfway, atol=1e-6)
    assert not torch.allclose(ends[0], ends[1])


def test_without_a_label_ifcvae_gan_starts_at_its_own_prediction_and_cvae_asks_for_one(images):
    x, _ = images
    model = build("ifcvae_gan")
    (axis,) = slider_space(model, x[0]).axes
    assert axis.default == float(model.predict(x[:1])[0])
    with pytest.raises(ValueError, match="pass y"):
        slider_space(build("cvae"), x[0])


def test_more_classes_get_one_weight_per_class_normalised_and_uniform_at_zero(images):
    x, _ = images
    model = build("cvae", num_classes=3)
    space = slider_space(model, x[0], 2)
    assert [a.name for a in space.axes] == ["weight of class 0", "weight of class 1", "weight of class 2"]
    assert space.defaults.tolist() == [0.0, 0.0, 1.0]
    z = latent_means(model, x[:1], torch.tensor([2]))["z"]
    condition = torch.tensor([[0.25, 0.75, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    expected = model.decode_condition(z.expand(2, -1), condition).clamp(0, 1)
    assert torch.allclose(space.render([[0.5, 1.5, 0.0], [0.0, 0.0, 0.0]]), expected, atol=1e-6)
    with pytest.raises(ValueError, match="condition must be"):
        model.decode_condition(z, torch.ones(1, 2))


class CodesAreInputs(LatentVariableModel):
    """q(z|x) centred on x itself and decode(z) = z: principal directions of the codes are the data's."""

    def encode(self, x, y=None):
        return {"z": DiagonalGaussian(x.flatten(1), torch.zeros_like(x.flatten(1)))}

    def decode(self, latents, y=None):
        return latents["z"].reshape(-1, 1, 1, latents["z"].shape[1])


def test_principal_directions_find_the_directions_and_spreads_of_the_codes():
    torch.manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4))
    codes = (torch.randn(4000, 4) * torch.tensor([3.0, 1.0, 0.3, 0.1])) @ rotation.T + 5
    model = CodesAreInputs()  # no parameters: the model lives on the CPU
    pcs = principal_directions(model, codes.reshape(-1, 1, 1, 4), num_directions=2)
    for k, std in enumerate((3.0, 1.0)):
        assert abs(float(pcs.directions[k] @ rotation[:, k])) > 0.99
        assert abs(float(pcs.scales[k]) - std) < 0.05 * std
    assert torch.allclose(pcs.mean, torch.full((4,), 5.0), atol=0.15)
    assert float(pcs.explained.sum()) < 1 and float(pcs.explained[0]) > 0.85


def test_vae_sliders_move_the_code_along_principal_directions_in_standard_deviations():
    torch.manual_seed(0)
    codes = torch.randn(500, 3) * torch.tensor([2.0, 0.5, 0.1])
    model = CodesAreInputs()
    x = torch.tensor([[[[1.0, 0.2, 0.0]]]])
    space = slider_space(model, x, reference=codes.reshape(-1, 1, 1, 3), num_directions=2)
    assert [a.name.split(" ")[0] for a in space.axes] == ["PC1", "PC2"]
    assert torch.allclose(space.render(space.defaults).flatten(), x.flatten(), atol=1e-5)
    pcs = principal_directions(model, codes.reshape(-1, 1, 1, 3), num_directions=2)
    moved = space.render(space.defaults + torch.tensor([1.0, 0.0])).flatten()
    assert torch.allclose(moved, (x.flatten() + pcs.scales[0] * pcs.directions[0]).clamp(0, 1), atol=1e-4)
    with pytest.raises(ValueError, match="reference"):
        slider_space(model, x)


def test_bad_input_is_refused_with_the_fix(images):
    x, _ = images
    model = build("vac")
    with pytest.raises(ValueError, match="one image"):
        slider_space(model, x[:2])
    space = slider_space(model, x[0])
    with pytest.raises(ValueError, match=r"values must be \(N, 1\)"):
        space.render([1.0, 2.0])
    with pytest.raises(ValueError, match="axis must be"):
        space.traverse(3, [0.0])
    with pytest.raises(ValueError, match="num_frames"):
        static_sliders(model, x, num_frames=1)
    with pytest.raises(ValueError, match="labels must have one row per image"):
        static_sliders(model, x, torch.tensor([0, 1]))


def decode_data_uri(uri: str) -> np.ndarray:
    header, payload = uri.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def test_static_frames_are_the_decoded_traversals_and_the_own_value_frame_is_the_reconstruction(images):
    x, y = images
    model = build("csvae")
    sliders = static_sliders(model, x[:2], y[:2], num_frames=5, names=["a", "b"],
                             caption=lambda batch: [f"mean {float(i.mean()):.3f}" for i in batch])
    page = sliders.html()
    data = json.loads(re.search(r'class="latentlab-slider-frames">(.*?)</script>', page, re.S).group(1))
    assert [p["name"] for p in data["images"]] == ["a", "b"]
    assert page.count('class="latentlab-slider-input"') == 2 and "<select" in page
    for index, entry in enumerate(data["images"]):
        space = slider_space(model, x[index], y[index])
        assert decode_data_uri(entry["reconstruction"]).tolist() == np.asarray(
            Image.open(io.BytesIO(encode_image(space.render(space.defaults)[0])))).tolist()
        for a, axis in enumerate(entry["axes"]):
            assert len(axis["values"]) == 5 and axis["frames"][axis["default_index"]] is None
            assert axis["values"][axis["default_index"]] == pytest.approx(space.axes[a].default, abs=1e-4)
            traversal = space.traverse(a, torch.tensor(axis["values"]))
            for f, uri in enumerate(axis["frames"]):
                if uri is not None:
                    expected = np.asarray(Image.open(io.BytesIO(encode_image(traversal[f]))))
                    assert decode_data_uri(uri).tolist() == expected.tolist()
            assert axis["captions"][0] == f"mean {float(traversal[0].mean()):.3f}"
    assert sliders.nbytes == len(page.encode())


def test_static_sliders_pick_jpeg_for_larger_images_and_keep_one_image_without_a_picker():
    torch.manual_seed(0)
    model = face_model("vac", image_size=64, channels=(8, 8, 16, 16), latent_dim=8).eval()
    sliders = static_sliders(model, torch.rand(1, 3, 64, 64), num_frames=3)
    page = sliders.html()
    assert "data:image/jpeg;base64" in page and "data:image/png" not in page
    assert "<select" not in page and sliders.nbytes < 60_000


def test_live_sliders_redraw_on_every_move_reset_and_pick(images):
    x, y = images
    model = build("ifcvae_gan")
    live = LiveSliders(model, x, y, caption=lambda batch: [f"brightness {float(batch.mean()):.3f}"])
    first = slider_space(model, x[0], y[0])
    assert live.output_view.value == encode_image(first.render(first.defaults)[0], size=160)
    live.sliders[0].value = 0.7  # as a reader's drag does: the observer redraws
    assert live.output_view.value == encode_image(first.render([0.7])[0], size=160)
    assert "brightness" in live.status.value and len(live.redraw_seconds) == 2
    live.reset()
    assert live.values == [first.axes[0].default]
    live.picker.value = 1
    second = slider_space(model, x[1], y[1])
    assert live.values == [second.axes[0].default]
    assert live.input_view.value == encode_image(x[1], size=160)
    assert live.output_view.value == encode_image(second.render(second.defaults)[0], size=160)
    assert "application/vnd.jupyter.widget-view+json" in live._repr_mimebundle_()
    with pytest.raises(ValueError, match="one value per slider"):
        live.set_values([0.1, 0.2])


def test_axis_readings_average_the_reading_at_each_end_and_at_the_images_own_value(images):
    x, y = images
    model = build("csvae")
    brightness = lambda batch: batch.mean(dim=(1, 2, 3))[:, None]  # noqa: E731 - one number per image
    rows = axis_readings(model, x, y, brightness)
    assert [r["name"] for r in rows] == [a.name for a in slider_space(model, x[0], y[0]).axes]
    for a, row in enumerate(rows):
        expected = {"low": 0.0, "own": 0.0, "high": 0.0}
        for i in range(len(x)):
            space = slider_space(model, x[i], y[i])
            axis = space.axes[a]
            expected["own"] += float(space.render(space.defaults).mean()) / len(x)
            expected["low"] += float(space.traverse(a, [axis.low]).mean()) / len(x)
            expected["high"] += float(space.traverse(a, [axis.high]).mean()) / len(x)
        for end, value in expected.items():
            assert float(row[end][0]) == pytest.approx(value, abs=1e-5)


def test_static_sliders_show_only_the_chosen_axes_in_the_order_given(images):
    x, _ = images
    model = build("ccvae")
    space = slider_space(model, x[0])
    assert len(space.axes) == 2
    page = static_sliders(model, x[:1], num_frames=3, axes=[1, 0]).html()
    data = json.loads(re.search(r'class="latentlab-slider-frames">(.*?)</script>', page, re.S).group(1))
    entry = data["images"][0]
    assert [axis["name"] for axis in entry["axes"]] == [space.axes[1].name, space.axes[0].name]
    frames = space.traverse(1, torch.tensor(entry["axes"][0]["values"]))
    first = next(f for f, uri in enumerate(entry["axes"][0]["frames"]) if uri is not None)
    assert decode_data_uri(entry["axes"][0]["frames"][first]).tolist() == np.asarray(
        Image.open(io.BytesIO(encode_image(frames[first])))).tolist()
    count = len(space.axes)
    for bad in ([count], [-1], [1, 1], []):
        with pytest.raises(ValueError, match=f"axes must be distinct indices 0..{count - 1}"):
            static_sliders(model, x[:1], num_frames=3, axes=bad)
