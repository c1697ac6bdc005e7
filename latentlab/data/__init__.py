"""Datasets: tensors ``x`` (float32) and labels ``y`` (long), already split into train and test."""

from ..checks import UNLABELLED
from .mnist import (
    DatasetNotFoundError,
    DigitImages,
    label_split,
    load_digits,
    load_handwritten_digits,
    load_mnist,
    semi_supervised,
)
from .toy import ToyData, circles, moons, swiss_roll

__all__ = [
    "ToyData",
    "circles",
    "moons",
    "swiss_roll",
    "UNLABELLED",
    "DigitImages",
    "DatasetNotFoundError",
    "load_mnist",
    "load_digits",
    "load_handwritten_digits",
    "label_split",
    "semi_supervised",
]
