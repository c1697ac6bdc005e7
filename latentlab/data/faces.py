"""What every face dataset shares: binary attributes by name, the papers' attribute subsets, balancing.

Two sources provide faces (``celeba.py``: real photographs; ``synthfaces.py``: a procedural
generator with ground truth); both name their attributes as CelebA does, so the same subset
names work on either:

========== ================================ =============================================
subset     attributes (label columns)       used by
========== ================================ =============================================
Eye        Eyeglasses                       IntroVAC (Maggipinto et al.), 2 negatives per positive
Facial     Facial_Hair                      IntroVAC; Facial_Hair = Beard or Goatee or Mustache
EyeFacial  Eyeglasses, Facial_Hair          IntroVAC, two labels at once
Smiling    Smiling                          information factorization (Creswell et al.)
========== ================================ =============================================

A subset of one attribute gives labels of shape ``(N,)`` (class 0 or 1, what the binary models
take); a subset of several gives ``(N, k)`` 0/1 columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

FACE_SUBSETS: dict[str, tuple[str, ...]] = {
    "Eye": ("Eyeglasses",),
    "Facial": ("Facial_Hair",),
    "EyeFacial": ("Eyeglasses", "Facial_Hair"),
    "Smiling": ("Smiling",),
}

#: negatives kept per positive by ``balance_indices`` in the IntroVAC code (Eye 2, the others 1)
INTROVAC_NEGATIVES_PER_POSITIVE = {"Eye": 2, "Facial": 1, "EyeFacial": 1}


def subset_attributes(subset: str | Sequence[str]) -> tuple[str, ...]:
    """Attribute names of a subset name (``"Eye"``), or a list of attribute names passed through."""
    if isinstance(subset, str):
        if subset in FACE_SUBSETS:
            return FACE_SUBSETS[subset]
        raise ValueError(
            f"unknown attribute subset {subset!r}; use one of {', '.join(FACE_SUBSETS)} "
            "or a list of attribute names such as ['Eyeglasses', 'Smiling']"
        )
    names = tuple(subset)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"an attribute subset must be a subset name or a non-empty list of names, got {subset!r}")
    return names


def select_attributes(attributes: torch.Tensor, names: Sequence[str], subset: str | Sequence[str]) -> torch.Tensor:
    """The label columns of ``subset`` from an ``(N, A)`` 0/1 attribute table whose columns are ``names``.

    One attribute: ``(N,)`` long class indices. Several: ``(N, k)`` long 0/1 columns.
    """
    wanted = subset_attributes(subset)
    missing = [n for n in wanted if n not in names]
    if missing:
        raise ValueError(f"attribute(s) {missing} are not in this dataset; it has {', '.join(names)}")
    columns = attributes[:, [list(names).index(n) for n in wanted]].long()
    return columns[:, 0] if len(wanted) == 1 else columns


def balance_indices(labels: torch.Tensor, negatives_per_positive: int | None) -> torch.Tensor:
    """Indices of a positive/negative balanced subset, by the rule of the IntroVAC code.

    A row is *positive* when any of its labels is 1. Every positive is kept, and the first
    ``negatives_per_positive * (number of positives)`` negatives in dataset order (the official
    code takes the first ones, not a random draw, so the subset is the same on every machine).
    ``None`` keeps everything. Returns sorted indices.
    """
    if negatives_per_positive is None:
        return torch.arange(len(labels))
    if not isinstance(negatives_per_positive, int) or negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive must be a non-negative int or None, got {negatives_per_positive!r}")
    positive = (labels.reshape(len(labels), -1) > 0).any(dim=1)
    positives = positive.nonzero().flatten()
    negatives = (~positive).nonzero().flatten()[: negatives_per_positive * len(positives)]
    return torch.cat([positives, negatives]).sort().values


@dataclass(frozen=True)
class FaceImages:
    """In-memory face images ``(N, 3, S, S)`` in [0, 1] with 0/1 attributes ``(N, A)``, split into train and test.

    ``identity_*`` hold the nuisance factors of each image where the generator knows them
    (synthetic faces), else ``None``. ``source`` says where the images came from.
    """

    name: str
    source: str
    x_train: torch.Tensor
    attributes_train: torch.Tensor
    x_test: torch.Tensor
    attributes_test: torch.Tensor
    attribute_names: tuple[str, ...]
    identity_train: torch.Tensor | None = None
    identity_test: torch.Tensor | None = None
    identity_names: tuple[str, ...] = ()

    def labels(self, subset: str | Sequence[str], split: str = "train") -> torch.Tensor:
        """Labels of an attribute subset (see :data:`FACE_SUBSETS`) for ``split`` ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        table = self.attributes_train if split == "train" else self.attributes_test
        return select_attributes(table, self.attribute_names, subset)

    def split(self, subset: str | Sequence[str], split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, labels)`` of one split for an attribute subset: what ``fit`` and the metrics take."""
        x = self.x_train if split == "train" else self.x_test
        return x, self.labels(subset, split)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def describe(self) -> str:
        """One line for a chapter's output: which data ran, from where, how much of it."""
        c, h, w = self.image_shape
        return (
            f"{self.name} from {self.source}: {len(self.x_train)} train / {len(self.x_test)} test images "
            f"({c}x{h}x{w}; attributes: {', '.join(self.attribute_names)})"
        )

    def __repr__(self) -> str:
        return f"FaceImages({self.name!r}: {len(self.x_train)} train / {len(self.x_test)} test, {self.source})"
