"""Datasets: tensors ``x`` (float32) and labels ``y`` (long), already split into train and test.

Toy 2-D/3-D sets, handwritten digits (MNIST or scikit-learn's), and faces: CelebA (real photos,
files placed by hand) and synthetic faces (generated, with ground truth), sharing CelebA's
attribute names and the papers' attribute subsets.
"""

from ..checks import UNLABELLED
from .celeba import CelebAFaces, load_celeba, load_celeba_in_memory
from .faces import FACE_SUBSETS, FaceImages, balance_indices, select_attributes
from .errors import DatasetNotFoundError
from .mnist import DigitImages, load_digits, load_handwritten_digits, load_mnist
from .splits import label_split, semi_supervised
from .synthfaces import attribute_regions, render, sample_factors, synthetic_faces
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
    "FaceImages",
    "FACE_SUBSETS",
    "select_attributes",
    "balance_indices",
    "CelebAFaces",
    "load_celeba",
    "load_celeba_in_memory",
    "synthetic_faces",
    "sample_factors",
    "render",
    "attribute_regions",
]
