"""Toy data: seeded, standardised, split, labelled as documented; bad arguments fail clearly."""

import pytest
import torch

from latentlab.data import circles, moons, swiss_roll

MAKERS = [swiss_roll, moons, circles]


@pytest.mark.parametrize("make", MAKERS)
def test_shapes_dtypes_split_and_standardisation(make):
    data = make(400, test_fraction=0.25, seed=3)
    assert data.x_train.shape == (300, data.dim) and data.x_test.shape == (100, data.dim)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.long
    assert set(data.y_train.unique().tolist()) == {0, 1} and set(data.y_test.unique().tolist()) == {0, 1}
    assert torch.allclose(data.x_train.mean(0), torch.zeros(data.dim), atol=1e-5)
    assert torch.allclose(data.x_train.std(0), torch.ones(data.dim), atol=1e-5)
    # the test split uses the training statistics, so it is only roughly standard
    assert data.x_test.mean(0).abs().max() < 0.4
    assert 0.3 < data.y_train.float().mean() < 0.7  # both classes well represented


@pytest.mark.parametrize("make", MAKERS)
def test_same_seed_same_data_other_seed_other_data(make):
    a, b, c = make(200, seed=1), make(200, seed=1), make(200, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_swiss_roll_is_3d_and_labelled_by_its_height():
    data = swiss_roll(1000, noise=0.0, seed=0)
    assert data.dim == 3
    height = (data.x_train * data.std + data.mean)[:, 1]
    assert height.min() >= -1e-4 and height.max() <= 21 + 1e-4  # make_swiss_roll's height range
    clear = (height - 10.5).abs() > 1e-3  # away from the threshold, where float round trips cannot flip it
    assert torch.equal(data.y_train[clear], (height[clear] >= 10.5).long())


def test_circles_label_one_is_the_inner_ring():
    data = circles(1000, noise=0.0, seed=0)
    radius = (data.x_train * data.std + data.mean).norm(dim=1)
    assert radius[data.y_train == 1].max() < radius[data.y_train == 0].min()


def test_moons_are_2d():
    assert moons(100).dim == 2 and circles(100).dim == 2


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"n": 0}, "n must be a positive int"),
        ({"n": -5}, "n must be a positive int"),
        ({"n": 10.5}, "n must be a positive int"),
        ({"n": 100, "test_fraction": 0.0}, "test_fraction must lie strictly between 0 and 1"),
        ({"n": 100, "test_fraction": 1.5}, "test_fraction must lie strictly between 0 and 1"),
        ({"n": 1, "test_fraction": 0.5}, "leaves an empty split"),
        ({"n": 100, "noise": -0.1}, "noise must be non-negative"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_bad_circle_factor():
    with pytest.raises(ValueError, match="factor"):
        circles(100, factor=1.0)
