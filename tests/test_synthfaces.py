"""The synthetic faces: seeded, pure rendering, ground-truth regions that are local, correlated attributes."""

import pytest
import torch

from latentlab.data.faces import FaceImages
from latentlab.checks import FACE_IMAGE_SIZES
from latentlab.data.synthfaces import (
    ATTRIBUTES,
    CATEGORICAL_FACTORS,
    IDENTITY_FACTORS,
    NUM_HAIR_STYLES,
    attribute_regions,
    render,
    sample_factors,
    synthetic_faces,
)

FACTOR = {name: j for j, name in enumerate(IDENTITY_FACTORS)}


def plain_identity(num=1, **factors):
    """Middle-of-the-range faces (short hair), with some factors set."""
    identity = torch.full((num, len(IDENTITY_FACTORS)), 0.5)
    identity[:, FACTOR["hair_style"]] = 0
    for name, value in factors.items():
        identity[:, FACTOR[name]] = value
    return identity


def with_attribute(attributes, j, value):
    out = attributes.clone()
    out[:, j] = value
    return out


def phi(a, b):
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


# --------------------------------------------------------------------------- seeds and shapes


def test_the_same_seed_gives_the_same_faces_and_another_seed_other_faces():
    first = synthetic_faces(12, 12, image_size=32, seed=3)
    again = synthetic_faces(12, 12, image_size=32, seed=3)
    other = synthetic_faces(12, 12, image_size=32, seed=4)
    for name in ("x_train", "attributes_train", "identity_train", "x_test", "attributes_test", "identity_test"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert not torch.equal(first.identity_train, other.identity_train)
    assert not torch.equal(first.x_train, other.x_train)
    assert not torch.equal(first.identity_train, first.identity_test)  # test faces are new people


def test_sample_factors_uses_its_own_generator_not_the_global_one():
    torch.manual_seed(1)
    a1, i1 = sample_factors(50, seed=7)
    torch.manual_seed(2)
    a2, i2 = sample_factors(50, seed=7)
    assert torch.equal(a1, a2) and torch.equal(i1, i2)
    assert not torch.equal(i1, sample_factors(50, seed=8)[1])


def test_factor_tables_have_the_documented_types_and_ranges():
    attributes, identity = sample_factors(2000, seed=0)
    assert attributes.shape == (2000, len(ATTRIBUTES)) and attributes.dtype == torch.long
    assert set(attributes.unique().tolist()) == {0, 1}
    assert identity.shape == (2000, len(IDENTITY_FACTORS)) and identity.dtype == torch.float32
    style = identity[:, FACTOR["hair_style"]]
    assert CATEGORICAL_FACTORS == {"hair_style": NUM_HAIR_STYLES}
    assert torch.equal(style, style.round()) and set(style.long().tolist()) == set(range(NUM_HAIR_STYLES))
    continuous = torch.cat([identity[:, :FACTOR["hair_style"]], identity[:, FACTOR["hair_style"] + 1 :]], 1)
    assert continuous.min() >= 0 and continuous.max() <= 1 and continuous.std(0).min() > 0.25  # spread over [0, 1]


@pytest.mark.parametrize("size", FACE_IMAGE_SIZES)
def test_images_have_the_right_shape_dtype_and_range(size):
    attributes, identity = sample_factors(6, seed=1)
    x = render(attributes, identity, size)
    assert x.shape == (6, 3, size, size) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert x.std() > 0.1  # a picture, not a flat colour


# --------------------------------------------------------------------------- ground truth


def test_render_is_a_pure_function_of_each_face():
    attributes, identity = sample_factors(40, seed=2)
    x = render(attributes, identity, 32)
    assert torch.equal(x, render(attributes, identity, 32))
    # a face looks the same whatever else is in the batch and in whichever order
    order = torch.randperm(40)
    assert torch.equal(render(attributes[order], identity[order], 32), x[order])
    assert torch.equal(render(attributes[5:6], identity[5:6], 32)[0], x[5])


@pytest.mark.parametrize("size", [32, 64])
def test_switching_an_attribute_changes_pixels_only_inside_its_region(size):
    attributes, identity = sample_factors(24, seed=3)
    exact = attribute_regions(attributes, identity, size, dilate=0)
    dilated = attribute_regions(attributes, identity, size)
    assert exact.shape == (24, len(ATTRIBUTES), size, size) and exact.dtype == torch.bool
    for j, name in enumerate(ATTRIBUTES):
        flipped = with_attribute(attributes, j, 1 - attributes[:, j])
        changed = (render(flipped, identity, size) - render(attributes, identity, size)).abs().amax(1) > 1 / 255
        assert changed.flatten(1).any(1).all(), f"switching {name} left some face unchanged"
        assert not (changed & ~exact[:, j]).any(), f"switching {name} changed pixels outside its region"
        assert torch.equal(changed, exact[:, j]), f"the region of {name} holds pixels that do not change"
        assert (dilated[:, j] >= exact[:, j]).all() and dilated[:, j].sum() > exact[:, j].sum()


def test_regions_are_local_and_glasses_and_hat_stay_apart():
    attributes, identity = sample_factors(32, seed=4)
    # and the largest faces with every hair style, at the edges of the image: the worst case for the hat
    big = plain_identity(8, face_width=1.0, face_length=1.0, offset_y=0.0)
    big[:, FACTOR["hair_style"]] = torch.arange(8) % NUM_HAIR_STYLES
    big[:, FACTOR["offset_x"]] = (torch.arange(8) // NUM_HAIR_STYLES).float()
    attributes = torch.cat([attributes, torch.ones(8, len(ATTRIBUTES), dtype=torch.long)])
    identity = torch.cat([identity, big])
    for size in (32, 64):
        regions = attribute_regions(attributes, identity, size)
        share = regions.float().mean((2, 3))
        assert (share > 0).all(), "some attribute has an empty region"
        assert (share < 0.35).all(), f"a region covers {float(share.max()):.0%} of the image"
        glasses, hat = regions[:, ATTRIBUTES.index("Eyeglasses")], regions[:, ATTRIBUTES.index("Wearing_Hat")]
        overlap = (glasses & hat).sum((1, 2)) / glasses.sum((1, 2))
        assert overlap.mean() < (0.25 if size == 32 else 0.05)  # a shared border row at most, from the dilation
    exact = attribute_regions(attributes, identity, 64, dilate=0)
    assert not (exact[:, ATTRIBUTES.index("Eyeglasses")] & exact[:, ATTRIBUTES.index("Wearing_Hat")]).any()


@pytest.mark.parametrize(
    ("name", "rows", "cols"),
    [
        ("Eyeglasses", (0.33, 0.72), (0.0, 1.0)),  # the band of the eyes
        ("Wearing_Hat", (0.0, 0.55), (0.0, 1.0)),  # the top
        ("Facial_Hair", (0.45, 1.0), (0.0, 1.0)),  # the lower half
        ("Smiling", (0.5, 0.9), (0.25, 0.75)),  # lower middle
    ],
)
def test_each_attribute_shows_clearly_where_it_belongs(name, rows, cols):
    # the mean change an attribute makes to 32 px faces: strong, and concentrated where it belongs
    attributes, identity = sample_factors(48, seed=5)
    j = ATTRIBUTES.index(name)
    on = render(with_attribute(attributes, j, 1), identity, 32)
    off = render(with_attribute(attributes, j, 0), identity, 32)
    change = (on - off).abs().mean(1)  # (N, 32, 32)
    where = torch.arange(32) / 32
    inside = ((where >= rows[0]) & (where < rows[1]))[:, None] & ((where >= cols[0]) & (where < cols[1]))[None, :]
    assert change[:, inside].sum() / change.sum() > 0.95, f"{name} shows outside the expected area"
    regions = attribute_regions(attributes, identity, 32, dilate=0)[:, j]
    strength = (change * regions).sum((1, 2)) / regions.sum((1, 2))
    assert strength.min() > 0.08, f"{name} is faint on some face (mean change {float(strength.min()):.3f})"


# --------------------------------------------------------------------------- identity factors


def test_skin_tone_changes_the_face_not_the_background():
    attributes = torch.zeros(2, len(ATTRIBUTES), dtype=torch.long)
    light, dark = render(attributes, plain_identity(2, skin_tone=torch.tensor([0.0, 1.0])), 64)
    cheek = (slice(None), slice(38, 42), slice(18, 22))  # below the left eye, beside the nose
    assert light[cheek].mean() > dark[cheek].mean() + 0.3
    assert torch.equal(light[:, :4], dark[:, :4])  # the background above the head is untouched


def test_offset_x_moves_the_face_to_the_right():
    attributes = torch.zeros(2, len(ATTRIBUTES), dtype=torch.long)
    left, right = render(attributes, plain_identity(2, offset_x=torch.tensor([0.2, 0.8])), 64)

    def centre_column(image):
        head = image[:, :40]  # rows of the head, above the shoulders
        weight = (head - head[:, :, :1]).abs().sum(0)  # away from the background (constant along a row)
        return float((weight * torch.arange(64)).sum() / weight.sum())

    shift = centre_column(right) - centre_column(left)
    expected = 0.6 * 0.16 * 64  # offset 0..1 moves the face by 0.16 of the image width each way from the middle
    assert expected * 0.8 < shift < expected * 1.2


def test_hair_style_and_face_size_change_the_face():
    attributes = torch.zeros(NUM_HAIR_STYLES + 1, len(ATTRIBUTES), dtype=torch.long)
    identity = plain_identity(NUM_HAIR_STYLES + 1)
    identity[:NUM_HAIR_STYLES, FACTOR["hair_style"]] = torch.arange(NUM_HAIR_STYLES).float()
    identity[-1, FACTOR["face_width"]] = 1.0
    x = render(attributes, identity, 32)
    for k in range(1, NUM_HAIR_STYLES + 1):
        assert (x[k] - x[0]).abs().amax(0).gt(0.1).sum() > 20, f"face {k} looks like face 0"


# --------------------------------------------------------------------------- correlated attributes


def test_correlation_is_realised_and_the_marginals_are_kept():
    hair, hat = ATTRIBUTES.index("Facial_Hair"), ATTRIBUTES.index("Wearing_Hat")
    for correlation in (0.6, 0.0, -0.4):
        attributes, _ = sample_factors(20000, seed=6, correlation=correlation)
        assert abs(phi(attributes[:, hair], attributes[:, hat]) - correlation) < 0.05
        assert (attributes.float().mean(0) - 0.5).abs().max() < 0.02
        assert abs(phi(attributes[:, 0], attributes[:, hair])) < 0.05  # the others stay independent

    rates = {"Eyeglasses": 0.2, "Smiling": 0.7}
    pair = ("Eyeglasses", "Smiling")
    attributes, _ = sample_factors(20000, seed=7, attribute_rates=rates, correlation=0.3, correlated=pair)
    assert abs(float(attributes[:, 0].float().mean()) - 0.2) < 0.02
    assert abs(float(attributes[:, 1].float().mean()) - 0.7) < 0.02
    assert abs(phi(attributes[:, 0], attributes[:, 1]) - 0.3) < 0.05


def test_identity_does_not_depend_on_rates_or_correlation():
    _, base = sample_factors(100, seed=8)
    _, other = sample_factors(100, seed=8, attribute_rates={"Smiling": 0.1}, correlation=0.5)
    assert torch.equal(base, other)


def test_synthetic_faces_passes_the_correlation_on():
    data = synthetic_faces(3000, 10, image_size=32, seed=1, correlation=0.8)
    hair, hat = ATTRIBUTES.index("Facial_Hair"), ATTRIBUTES.index("Wearing_Hat")
    assert phi(data.attributes_train[:, hair], data.attributes_train[:, hat]) > 0.7
    assert "correlation 0.8" in data.source


def test_an_impossible_correlation_raises():
    with pytest.raises(ValueError, match="impossible"):  # rare beards cannot go with frequent hats that strongly
        sample_factors(10, seed=0, attribute_rates={"Facial_Hair": 0.1, "Wearing_Hat": 0.9}, correlation=0.6)
    with pytest.raises(ValueError, match="strictly between -1 and 1"):
        sample_factors(10, seed=0, correlation=1.0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("attributes", "identity", "size", "message"),
    [
        (torch.zeros(2, 3), plain_identity(2), 32, r"attributes must have shape \(N, 4\)"),
        (torch.zeros(2, 4), plain_identity(2)[:, :6], 32, r"identity must have shape \(N, 7\)"),
        (torch.zeros(3, 4), plain_identity(2), 32, "3 rows but identity has 2"),
        (torch.full((2, 4), 2), plain_identity(2), 32, "only 0 and 1"),
        (torch.zeros(2, 4), plain_identity(2, skin_tone=1.5), 32, "skin_tone must lie in"),
        (torch.zeros(2, 4), plain_identity(2, hair_style=NUM_HAIR_STYLES), 32, "hair_style must be a whole number"),
        (torch.zeros(2, 4), plain_identity(2, hair_style=0.5), 32, "hair_style must be a whole number"),
        (torch.zeros(2, 4), plain_identity(2).long(), 32, "floating-point"),
        (torch.zeros(2, 4), plain_identity(2), 48, r"IMAGE_SIZES"),
        ([[0, 0, 0, 0]], plain_identity(1), 32, "torch.Tensor"),
    ],
)
def test_render_rejects_bad_input(attributes, identity, size, message):
    with pytest.raises(ValueError, match=message):
        render(attributes, identity, size)


def test_bad_options_raise_a_clear_error():
    with pytest.raises(ValueError, match="unknown attribute 'Beard'"):
        sample_factors(10, seed=0, correlated=("Facial_Hair", "Beard"))
    with pytest.raises(ValueError, match="unknown attribute 'Bald'"):
        sample_factors(10, seed=0, attribute_rates={"Bald": 0.3})
    with pytest.raises(ValueError, match="rate of Smiling"):
        sample_factors(10, seed=0, attribute_rates={"Smiling": 1.5})
    with pytest.raises(ValueError, match=r"\(32, 64, 128\)"):
        synthetic_faces(4, 4, image_size=100)
    with pytest.raises(ValueError, match="dilate"):
        attribute_regions(*sample_factors(2, seed=0), 32, dilate=-1)


# --------------------------------------------------------------------------- the dataset


def test_synthetic_faces_works_as_face_images():
    data = synthetic_faces(20, 8, image_size=32, seed=0)
    assert isinstance(data, FaceImages)
    assert data.attribute_names == ATTRIBUTES and data.identity_names == IDENTITY_FACTORS
    assert data.image_shape == (3, 32, 32) and data.image_size == 32
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (8, 3, 32, 32)
    assert data.identity_train.shape == (20, 7) and data.identity_test.shape == (8, 7)
    assert torch.equal(data.labels("Eye"), data.attributes_train[:, 0])
    assert torch.equal(data.labels("Facial", "test"), data.attributes_test[:, ATTRIBUTES.index("Facial_Hair")])
    assert data.labels("EyeFacial").shape == (20, 2)
    assert data.labels("Smiling").shape == (20,) and data.labels(["Wearing_Hat"]).shape == (20,)
    x, y = data.split("Smiling", "test")
    assert x is data.x_test and torch.equal(y, data.attributes_test[:, 1])
    assert torch.equal(data.x_train, render(data.attributes_train, data.identity_train, 32))  # the truth is the truth
    assert "synthetic faces" in data.describe() and "seed 0" in data.source
