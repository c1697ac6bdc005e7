"""Toy data with a binary label and visible structure inside each class: generated, seeded, no download.

* :func:`swiss_roll`: the 3-D swiss roll of the CSVAE paper's toy experiment (Klys et al. 2018,
  fig. 2), generated with ``sklearn.datasets.make_swiss_roll``. The label is a threshold on the
  height of the roll (the uniform coordinate), so each class is a half of the rolled-up sheet and
  still carries the whole spiral. Public reimplementations threshold a coordinate at about 10
  (alexlyzhov/latent-subspaces: x >= 10; AM207 and qq456cvb/CSVAE: height < 10); we split the
  height range [0, 21] in the middle, so the classes are balanced.
* :func:`moons`: two interleaved half circles; the label is the moon, the position along the arc
  is the structure inside each class.
* :func:`circles`: two concentric rings; the label is the ring, the angle is the structure inside
  each class.

Every set is standardised with the mean and standard deviation of its *training* split, so a
reconstruction error of 1 means "as large as the spread of the data".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SWISS_ROLL_HEIGHT = 21.0  # make_swiss_roll draws the height uniformly from [0, 21]


@dataclass(frozen=True)
class ToyData:
    """A standardised train/test split. ``mean`` and ``std`` map back to the raw units: ``x * std + mean``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_test, self.y_test

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    def __repr__(self) -> str:
        return (
            f"ToyData({self.name!r}: {len(self.x_train)} train / {len(self.x_test)} test points in "
            f"{self.dim}-D, {float(self.y_train.float().mean()):.2f} of train labels are 1)"
        )


def _sklearn():
    from sklearn import datasets  # imported on first use: sklearn is slow to import

    return datasets


def _check_sizes(n: int, test_fraction: float, noise: float) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive int (the number of points), got {n!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    n_test = round(n * test_fraction)
    if n_test < 1 or n - n_test < 1:
        raise ValueError(
            f"n={n} with test_fraction={test_fraction} leaves an empty split "
            f"({n - n_test} train / {n_test} test); use more points"
        )
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise!r}")


def _split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> ToyData:
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    mean = x[train].mean(0)
    std = x[train].std(0).clamp_min(1e-6)  # a constant coordinate would divide by zero
    x = (x - mean) / std
    return ToyData(name, x[train], y[train], x[test], y[test], mean, std)


def swiss_roll(n: int = 4000, *, noise: float = 0.1, test_fraction: float = 0.25, seed: int = 0) -> ToyData:
    """The 3-D swiss roll; label 1 for the upper half of its height (coordinate 1), 0 for the lower half."""
    _check_sizes(n, test_fraction, noise)
    x, _ = _sklearn().make_swiss_roll(n, noise=noise, random_state=seed)
    y = (x[:, 1] >= SWISS_ROLL_HEIGHT / 2).astype(np.int64)
    return _split("swiss roll", x, y, test_fraction, seed)


def moons(n: int = 2000, *, noise: float = 0.05, test_fraction: float = 0.25, seed: int = 0) -> ToyData:
    """Two interleaved half circles in 2-D; the label is the moon."""
    _check_sizes(n, test_fraction, noise)
    x, y = _sklearn().make_moons(n, noise=noise, random_state=seed)
    return _split("two moons", x, y, test_fraction, seed)


def circles(
    n: int = 2000, *, noise: float = 0.04, factor: float = 0.5, test_fraction: float = 0.25, seed: int = 0
) -> ToyData:
    """Two concentric rings in 2-D; label 1 is the inner ring (radius ``factor``), 0 the outer one."""
    _check_sizes(n, test_fraction, noise)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor (inner radius / outer radius) must lie strictly between 0 and 1, got {factor!r}")
    x, y = _sklearn().make_circles(n, noise=noise, factor=factor, random_state=seed)
    return _split("concentric circles", x, y, test_fraction, seed)
