"""Handwritten digits as 28x28 images, and the labelled/unlabelled split of semi-supervised training.

* :func:`load_mnist`: MNIST from ``<root>/MNIST/raw/`` (torchvision's layout; each file
  uncompressed or as its official ``.gz``), downloaded by torchvision when asked and the network
  allows. It never falls back to other data on its own: when the files are missing it raises
  :class:`DatasetNotFoundError`, which says what to put where.
* :func:`load_digits`: the 1797 real 8x8 digits that ship inside scikit-learn, resized to 28x28 so
  the same models run on them. Always available, no download: the offline stand-in for MNIST.
* :func:`load_handwritten_digits`: the one chapters call. ``source="auto"`` takes MNIST when it is
  there and otherwise the scikit-learn digits, and prints that it did so.
* :func:`label_split` and :func:`semi_supervised`: keep the labels of a few examples (for instance
  100 of MNIST's 60000, 10 per class) and mark the rest :data:`UNLABELLED`, as in the M2 model's
  experiments (Kingma et al. 2014).

Images are float32 in [0, 1] with a channel dimension, ``(N, 1, 28, 28)``; labels are long ``0..9``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import config
from .errors import DatasetNotFoundError
from .splits import proportional_counts

#: each split's (images, labels) files, as MNIST ships them (each may also be there as ``<name>.gz``)
MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_FILES = MNIST_SPLITS["train"] + MNIST_SPLITS["test"]
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror
DIGITS_SOURCE = "sklearn.datasets.load_digits (embedded, no download)"
SOURCES = ("auto", "mnist", "digits")


@dataclass(frozen=True)
class DigitImages:
    """A train/test split of digit images ``(N, 1, 28, 28)`` in [0, 1] with labels ``0..9``.

    ``name`` and ``source`` travel with the tensors so a chapter can print which data it ran on.
    """

    name: str
    source: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_test, self.y_test

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        """One line for a chapter's output: which data ran, from where, how much of it."""
        c, h, w = self.image_shape
        return (
            f"{self.name} from {self.source}: {len(self.x_train)} train / {len(self.x_test)} test images "
            f"({c}x{h}x{w}, {self.num_classes} classes)"
        )

    def __repr__(self) -> str:
        return f"DigitImages({self.name!r}: {len(self.x_train)} train / {len(self.x_test)} test, {self.source})"


# --------------------------------------------------------------------------- MNIST


def load_mnist(
    root: str | Path | None = None,
    *,
    download: bool = True,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "test"),
) -> DigitImages:
    """MNIST's 60000 train and 10000 test images from ``<root>/MNIST/raw/`` (default root: ``config.data_root()``).

    Each file is read uncompressed or, when only that is there, as the official ``.gz``.
    ``splits`` names the splits to read (``("test",)`` needs only the two ``t10k`` files; a split
    not read is empty). With ``download=True`` torchvision fetches missing files; its progress
    output is swallowed, and a failed download becomes a :class:`DatasetNotFoundError` that says
    how to get the files by hand. ``train_size`` / ``test_size`` take a seeded subset that keeps
    the class proportions, for runs on a CPU.
    """
    root = Path(config.data_root() if root is None else root).expanduser()
    raw = root / "MNIST" / "raw"
    for name, size in (("train_size", train_size), ("test_size", test_size)):
        _check_size(size, name)
    if isinstance(splits, str) or not splits or any(split not in MNIST_SPLITS for split in splits):
        raise ValueError(f"splits must be a tuple of {tuple(MNIST_SPLITS)}, e.g. ('test',); got {splits!r}")
    needed = [name for split in splits for name in MNIST_SPLITS[split]]

    missing = _missing_files(raw, needed)
    if missing and download:
        download_error = _try_download(root)
        missing = _missing_files(raw, needed)
        if missing:
            raise DatasetNotFoundError(_not_found_message(raw, missing, f"the download failed ({download_error})"))
    elif missing:
        raise DatasetNotFoundError(_not_found_message(raw, missing, "download=False, so no download was tried"))

    empty = (torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    x_train, y_train = _read_split(raw, "train") if "train" in splits else empty
    x_test, y_test = _read_split(raw, "test") if "test" in splits else empty
    train = _subset(y_train, train_size, seed, "train_size") if "train" in splits else torch.arange(0)
    test = _subset(y_test, test_size, seed + 1, "test_size") if "test" in splits else torch.arange(0)  # another seed: independent draws
    return DigitImages(
        name="MNIST",
        source=str(config.shown_path(raw)),  # relative to the data folder: no machine's absolute path in an output
        x_train=_to_float_images(x_train[train]),
        y_train=y_train[train],
        x_test=_to_float_images(x_test[test]),
        y_test=y_test[test],
    )


def _file(raw: Path, name: str) -> Path | None:
    """The file as it is there: uncompressed first, else its ``.gz``; None when neither is."""
    for path in (raw / name, raw / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _missing_files(raw: Path, names=MNIST_FILES) -> list[str]:
    return [name for name in names if _file(raw, name) is None]


def _try_download(root: Path) -> str:
    """Let torchvision download MNIST without printing; return why it failed ('' if it did not)."""
    from torchvision.datasets import MNIST

    chatter = io.StringIO()  # torchvision prints each URL and a progress bar; a failed mirror is not news
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            MNIST(str(root), train=True, download=True)
    except Exception as err:  # noqa: BLE001 - no network, a mirror down, a bad checksum: all mean "not downloaded"
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        return lines[-1] if lines else type(err).__name__
    return ""


def _not_found_message(raw: Path, missing: list[str], why: str) -> str:
    absent = "none of its files is there" if len(missing) == len(MNIST_FILES) else f"{', '.join(missing)} missing"
    lines = [
        f"MNIST is not in {raw}: {absent}; {why}.",
        f"Expected these files there, each uncompressed or as its official .gz (torchvision's layout): "
        f"{', '.join(MNIST_FILES)}.",
        (
            f"To get them: download {', '.join(name + '.gz' for name in MNIST_FILES)} from {MNIST_MIRROR} "
            f"into {raw} (load_mnist(download=True) does this where the network allows)."
        ),
        f"Set {config.DATA_ENV} to use another data folder, or call load_handwritten_digits(), which falls back "
        "to the scikit-learn digits (embedded, no download).",
    ]
    return "\n".join(lines)


def read_idx(path: Path) -> np.ndarray:
    """An idx file of unsigned bytes (MNIST's format: a 4-byte magic, one big-endian size per dimension, data),
    plain or gzipped. Raises ValueError naming what is wrong with a truncated or foreign file."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a cut .gz ends in EOFError
        raise ValueError(f"it is not a readable gzip file ({type(err).__name__}: {err})") from err
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise ValueError(f"it does not start like an idx file of bytes (first bytes {data[:4].hex() or 'none'})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError("its header is cut short")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(shape):
        raise ValueError(f"its header promises {math.prod(shape)} bytes of data for shape {shape}, it holds {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _read_split(raw: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's uint8 images and long labels, with an error naming the bad file and the fix."""
    arrays = {}
    for kind, name in zip(("images", "labels"), MNIST_SPLITS[split]):
        path = _file(raw, name)
        try:
            arrays[kind] = read_idx(path)
        except ValueError as err:
            raise ValueError(
                f"could not read {path.name} in {raw}: {err}; the file is truncated or corrupt: "
                f"delete it and fetch it again from {MNIST_MIRROR}"
            ) from err
    images, labels = arrays["images"], arrays["labels"]
    image_path, label_path = (_file(raw, name) for name in MNIST_SPLITS[split])
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{image_path} holds data of shape {images.shape[1:] if images.ndim == 3 else images.shape}, not 28x28 "
            f"images; it is not an MNIST images file: delete it and fetch it again from {MNIST_MIRROR}"
        )
    if labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{image_path.name} has {len(images)} images but {label_path.name} has {len(labels)} labels (in {raw}); "
            f"one of them is from another download or truncated: delete both and fetch them again from {MNIST_MIRROR}"
        )
    if len(labels) and int(labels.max()) > 9:
        raise ValueError(f"{label_path} holds labels outside 0..9; delete it and fetch it again from {MNIST_MIRROR}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def _to_float_images(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0).unsqueeze(1)


def _check_size(size: object, name: str) -> None:
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"{name} must be a positive int (a number of images) or None for all, got {size!r}")


def _subset(y: torch.Tensor, size: int | None, seed: int, name: str) -> torch.Tensor:
    """Indices (in the original order) of a seeded subset of ``size`` examples with the classes' proportions."""
    if size is None:
        return torch.arange(len(y))
    if size > len(y):
        raise ValueError(f"{name}={size} but only {len(y)} images are available; use at most {len(y)} or None for all")
    counts = np.bincount(y.numpy(), minlength=1)
    rng = np.random.default_rng(seed)
    take = proportional_counts(counts, size, rng)
    chosen = [rng.permutation(np.flatnonzero(y.numpy() == c))[:k] for c, k in enumerate(take)]
    return torch.as_tensor(np.sort(np.concatenate(chosen)), dtype=torch.long)


def load_digits(*, image_size: int = 28, test_fraction: float = 0.2, seed: int = 0) -> DigitImages:
    """The 1797 8x8 digits embedded in scikit-learn, resized to ``image_size`` x ``image_size``, split by class.

    The pixels (0..16) are divided by 16, and every image goes through the same resize: bilinear
    interpolation (``align_corners=False``: pixel centres are interpolated, the border pixels are
    extended), so one 8x8 pixel becomes a soft 3.5x3.5 patch of a 28x28 image. The digits are blurrier
    than MNIST's, but real handwriting with the same ten classes. The test split takes ``test_fraction``
    of each class (seeded).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int (the side in pixels), got {image_size!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    from sklearn import datasets  # imported on first use: sklearn is slow to import

    digits = datasets.load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    y = torch.as_tensor(digits.target, dtype=torch.long)

    n_test = round(len(y) * test_fraction)
    if n_test < 1 or n_test >= len(y):
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split of the {len(y)} digits; use 0.1 to 0.5")
    is_test = torch.zeros(len(y), dtype=torch.bool)
    is_test[_subset(y, n_test, seed, "test split")] = True
    return DigitImages(
        name=f"scikit-learn digits (8x8, resized to {image_size}x{image_size})",
        source=DIGITS_SOURCE,
        x_train=x[~is_test],
        y_train=y[~is_test],
        x_test=x[is_test],
        y_test=y[is_test],
    )


def load_handwritten_digits(
    source: str = "auto",
    root: str | Path | None = None,
    *,
    download: bool = True,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
) -> DigitImages:
    """MNIST (``"mnist"``), the scikit-learn digits (``"digits"``), or MNIST when it can be had, else the digits.

    ``"auto"`` prints one line when it falls back, so a chapter never runs on other data than the
    reader expects without saying so. A corrupt MNIST file still raises: it needs fixing, not hiding.
    ``train_size`` / ``test_size`` pick an MNIST subset; the digits (1797 images) are always used whole.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(map(repr, SOURCES))}, got {source!r}")
    for name, size in (("train_size", train_size), ("test_size", test_size)):
        _check_size(size, name)  # checked for every source, so a bad size fails before MNIST is there too
    if source == "digits":
        return load_digits(seed=seed)
    try:
        return load_mnist(root, download=download, train_size=train_size, test_size=test_size, seed=seed)
    except DatasetNotFoundError:
        if source == "mnist":
            raise
    raw = Path(config.data_root() if root is None else root).expanduser() / "MNIST" / "raw"
    data = load_digits(seed=seed)
    how = "could not be downloaded" if download else "see data/README.md to add it"
    print(f"MNIST is not in {config.shown_path(raw)} ({how}); using the scikit-learn digits instead.")
    return data


# --------------------------------------------------------------------------- semi-supervised labels
