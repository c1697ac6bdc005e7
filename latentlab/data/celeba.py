"""CelebA: 202,599 aligned celebrity faces with 40 binary attributes, read from disk as users have it.

Face editing reads three things, under the data root (``config.data_root()``: ``data/`` or ``$LATENTLAB_DATA``)::

    data/celeba/
    ├── img_align_celeba/           000001.jpg ... 202599.jpg, 178x218 (unzip img_align_celeba.zip here)
    ├── list_attr_celeba.txt        40 attributes per image, -1/1
    ├── list_eval_partition.txt     the official split: 0 train, 1 valid, 2 test
    └── identity_CelebA.txt         optional: who is in each image

* **Two layouts.** The official release's text files (above), or Kaggle's copy, the usual source when
  Google Drive's download quota fails: ``list_attr_celeba.csv`` and ``list_eval_partition.csv`` (a header
  line ``image_id,...``, commas) and the images one folder deeper, in ``img_align_celeba/img_align_celeba/``.
  Each annotation is read from its ``.txt`` when there is one, else from its ``.csv``. The bbox and
  landmark files are not read: face editing does not use them, and many copies lack them.
* **Parsing and split** are torchvision's (``torchvision.datasets.CelebA``): attributes -1/1 become 0/1,
  the split is ``list_eval_partition``'s, the images come in that file's order. torchvision pairs the
  files' rows by position; here they are paired by image name, which gives the same table on the
  official files and the right one on a copy whose files list different images.
* **Partial copies.** An image is used when it has an attribute row, a partition row and a JPEG. What
  is left out (rows without a JPEG, JPEGs without rows) is counted, printed when the dataset opens and
  repeated by ``describe()``: nothing is dropped or substituted silently.
* **Checks.** A missing file raises :class:`~latentlab.data.mnist.DatasetNotFoundError` with the layout
  and where to get it; a malformed file a ``ValueError`` naming the file and the line.
  ``verify_checksums=True`` compares the official ``.txt`` files with their published md5, so it passes
  only on the full official files; Kaggle's ``.csv`` files have no published checksum and are refused.
* **Preprocessing** (as in the IntroVAC code): the 178x218 image is resized to 256x256 (no aspect
  preservation, antialiased), the central 192x192 is cropped (box 32, 32, 224, 224: the face without
  most of the background) and resized to ``image_size`` (64 or 128, 32 for quick runs). Images are
  float32 in [0, 1], shape ``(3, S, S)``.
* **Attributes.** The 40 of CelebA, plus ``Beard`` (= 1 - ``No_Beard``) and ``Facial_Hair``
  (= Beard or Goatee or Mustache, IntroVAC's definition): :data:`ATTRIBUTE_NAMES`, 42 columns.
* **Subsets** (:data:`~latentlab.data.faces.FACE_SUBSETS`: Eye, Facial, EyeFacial, Smiling, or a list
  of attribute names) choose the label of each item: one attribute gives a scalar 0/1, several a ``(k,)``
  0/1 vector; ``subset=None`` gives all 42 columns.
* **Balance.** ``negatives_per_positive=r`` keeps every positive and the first ``r`` negatives per
  positive (:func:`~latentlab.data.faces.balance_indices`, the IntroVAC rule); ``"introvac"`` takes the
  papers' ratio for the subset (Eye 2, Facial and EyeFacial 1).
* **Cache.** Decoding and resizing JPEGs at every epoch keeps a GPU waiting. With ``cache_dir`` the
  split's images are preprocessed once into one uint8 ``.npy`` file ``(N, 3, S, S)`` (about 2 GB for the
  train split at 64x64, 8 GB at 128x128), memory-mapped on later runs. A JSON sidecar lists the
  images it holds; when they are no longer the split's, the cache is rebuilt (and says so).

:func:`load_celeba` returns the dataset for a ``DataLoader``; :func:`load_celeba_in_memory` returns
the first images of the official train and test splits as tensors (:class:`FaceImages`), for CPU runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from .. import config
from ..checks import check_face_image_size
from .faces import (
    FACE_SUBSETS,
    INTROVAC_NEGATIVES_PER_POSITIVE,
    FaceImages,
    balance_indices,
    select_attributes,
    subset_attributes,
)
from .errors import DatasetNotFoundError

CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_DRIVE = (
    "https://drive.google.com/drive/folders/0B7EVK8r0v71pWEZsZE9oNnFzTm8?resourcekey=0-5BR16BdXnb8hVj6CNHKzLg"
)
KAGGLE_PAGE = "https://www.kaggle.com/datasets/jessicali9530/celeba-dataset"
CELEBA_FOLDER = "celeba"  # under the data root, as torchvision names it
IMAGE_FOLDER = "img_align_celeba"
CELEBA_IMAGES = 202_599  # aligned photographs in the full data set
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}  # list_eval_partition's values
SPLITS = (*SPLIT_CODES, "all")

# The 40 attributes in the order of list_attr_celeba.txt's second line.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
DERIVED_ATTRIBUTES = ("Beard", "Facial_Hair")
ATTRIBUTE_NAMES: tuple[str, ...] = CELEBA_ATTRIBUTES + DERIVED_ATTRIBUTES


class Annotation(NamedTuple):
    """One annotation file face editing reads, by its official ``.txt`` name in :data:`ANNOTATION_FILES`."""

    what: str  # what it holds, for the layout in error messages
    columns: tuple[str, ...]  # the values after the image name on each row
    titled: bool  # the .txt starts with a count line and a line naming the columns
    kaggle: bool  # Kaggle's copy has it as .csv, with the header line image_id,<columns>
    required: bool
    md5: str  # of the official .txt, as torchvision's CelebA.file_list publishes it


ANNOTATION_FILES: dict[str, Annotation] = {
    "list_attr_celeba.txt": Annotation(
        "40 attributes per image, -1/1 (Anno/)", CELEBA_ATTRIBUTES, True, True, True, "75e246fa4810816ffd6ee81facbd244c"
    ),
    "list_eval_partition.txt": Annotation(
        "the official split: 0 train, 1 valid, 2 test (Eval/)", ("partition",), False, True, True,
        "d32c9cbf5e040fd4025c592c306e6668",
    ),
    "identity_CelebA.txt": Annotation(
        "who is in each image (Anno/)", ("identity",), False, False, False, "32bd1bd63d3c78cd57e08160ec5ed1e2"
    ),
}  # fmt: skip
ATTRIBUTE_FILE, PARTITION_FILE, IDENTITY_FILE = ANNOTATION_FILES
NOT_NEEDED = ("list_bbox_celeba.txt", "list_landmarks_align_celeba.txt")  # torchvision requires them; never read here

# IntroVAC's preprocessing: 178x218 -> 256x256 (aspect not kept), crop the central 192x192, resize.
RESIZE_TO = 256
CROP_BOX = (32, 32, 224, 224)  # PIL's (left, upper, right, lower)
# LANCZOS is what Pillow used to call ANTIALIAS: its kernel widens with the downscale factor, so the
# 192 -> 64 step averages the pixels it drops instead of aliasing them.
RESAMPLE = getattr(Image, "Resampling", Image).LANCZOS  # Image.Resampling since Pillow 9.1
PREPROCESSING = f"resize {RESIZE_TO}x{RESIZE_TO}, crop {CROP_BOX}, resize (Pillow LANCZOS)"


def preprocess_image(image: Image.Image, image_size: int) -> np.ndarray:
    """One aligned CelebA image as uint8 ``(3, S, S)``: resize to 256x256, crop the central 192x192, resize to S.

    uint8 is what the cache stores; :func:`to_float` gives the [0, 1] tensor the models take.
    """
    image = image.convert("RGB").resize((RESIZE_TO, RESIZE_TO), RESAMPLE)
    image = image.crop(CROP_BOX).resize((image_size, image_size), RESAMPLE)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()  # HWC -> CHW, contiguous


def to_float(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(3, S, S)`` -> float32 in [0, 1], as ``torchvision.transforms.ToTensor`` scales it."""
    return torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)


def load_image(path: str | Path, image_size: int) -> torch.Tensor:
    """Read one JPEG and preprocess it: float32 ``(3, S, S)`` in [0, 1]."""
    return to_float(_read_jpeg(Path(path), image_size))


class CelebAFaces(torch.utils.data.Dataset):
    """CelebA's official split, preprocessed as IntroVAC does, labelled by an attribute subset.

    Each item is ``(image, label)``: ``image`` float32 ``(3, S, S)`` in [0, 1]; ``label`` a long 0/1
    scalar for a one-attribute subset, ``(k,)`` for ``k`` attributes, ``(42,)`` for ``subset=None``.
    Reads the official text files or Kaggle's ``.csv`` files; on a partial copy, the images of the
    split that have labels and a JPEG (what is left out is printed and in :meth:`describe`).

    Args:
        root: the data root holding ``celeba/`` (default ``config.data_root()``), as for torchvision.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"all"`` (``list_eval_partition``).
        image_size: side of the square images, 64 or 128 (32 for quick runs).
        subset: a name of ``FACE_SUBSETS``, a list of attribute names, or ``None`` for all 42.
        negatives_per_positive: keep every positive and the first ``r`` negatives per positive
            (``None``: keep all; ``"introvac"``: the IntroVAC value for the subset).
        limit: keep only the first ``limit`` images (after balancing), for quick runs.
        cache_dir: folder of the preprocessed uint8 cache (``None``: decode the JPEGs per item).
        verify_checksums: md5-check the official text files read against the release (about 30 MB);
            passes only on the full official files, refuses Kaggle's ``.csv`` (no published checksum).

    Attributes: ``filename`` (the kept images), ``attr`` (N, 40) 0/1 and ``attr_names`` (torchvision's),
    ``identity`` (N,) or None, ``attributes`` (N, 42) long 0/1 with ``attribute_names``, ``labels`` (the
    subset's columns), ``indices`` (positions of the kept images in the split), ``split_size`` (images of
    the split before balancing and limit), ``coverage`` ('' for a complete copy, else what was left
    out), ``folder``, ``image_dir``, ``annotation_files``, ``cache_path``.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        *,
        image_size: int = 64,
        subset: str | Sequence[str] | None = None,
        negatives_per_positive: int | str | None = None,
        limit: int | None = None,
        cache_dir: str | Path | None = None,
        verify_checksums: bool = False,
    ) -> None:
        # Arguments first: a typo should not wait for 200,000 rows to be parsed.
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
        check_face_image_size(image_size, "CelebA faces (IntroVAC uses 64 and 128)")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        if subset is not None:
            unknown = [name for name in subset_attributes(subset) if name not in ATTRIBUTE_NAMES]
            if unknown:
                raise ValueError(f"attribute(s) {unknown} are not in this dataset; it has {', '.join(ATTRIBUTE_NAMES)}")
        ratio = _negatives_per_positive(negatives_per_positive, subset)

        self.data_root = Path(config.data_root() if root is None else root).expanduser()
        copy = read_celeba(self.data_root)
        if verify_checksums:
            _verify_checksums(copy)
        self.folder, self.image_dir, self.annotation_files = copy.folder, copy.image_dir, copy.files
        self.layout, self.copy_summary = copy.layout(), copy.summary()
        self.split, self.image_size, self.subset = split, image_size, subset
        self.negatives_per_positive, self.limit = ratio, limit

        # the split's labelled images; those with a JPEG, or those a valid cache holds, are used
        everything = np.arange(len(copy.filenames))
        labelled = everything if split == "all" else np.flatnonzero(copy.partition == SPLIT_CODES[split])
        labelled_names = [copy.filenames[i] for i in labelled.tolist()]
        with_jpeg = {copy.filenames[i] for i in labelled[copy.has_jpeg[labelled]].tolist()}
        self.cache_path: Path | None = None
        self._cache: np.ndarray | None = None  # the memory map, opened lazily in each process
        held, stale = None, "absent"
        if cache_dir is not None:
            self.cache_path, sidecar = self._cache_files(Path(cache_dir).expanduser())
            held, stale = self._cached_images(self.cache_path, sidecar, labelled_names, with_jpeg)
        usable = with_jpeg if held is None else set(held)
        rows = labelled[np.array([name in usable for name in labelled_names], dtype=bool)]
        self.split_filenames = [copy.filenames[i] for i in rows.tolist()]
        self.split_size = len(rows)
        self.coverage = _coverage(copy, len(labelled), len(rows))
        if not len(rows):
            raise DatasetNotFoundError(_empty_split_message(copy, split, len(labelled)))
        if self.coverage:
            print(f"CelebA {split} from {self.folder}: {self.coverage}")

        self.attr = copy.attr[rows]
        self.attr_names = list(CELEBA_ATTRIBUTES)
        self.identity = None if copy.identity is None else copy.identity[rows]
        self.attributes = with_derived_attributes(self.attr)
        self.attribute_names = ATTRIBUTE_NAMES
        labels = self.attributes if subset is None else select_attributes(self.attributes, ATTRIBUTE_NAMES, subset)
        keep = balance_indices(labels, ratio)
        if limit is not None:
            keep = keep[:limit]
        self.indices = keep
        self.filename = [self.split_filenames[i] for i in keep.tolist()]
        self.attr = self.attr[keep]
        self.identity = None if self.identity is None else self.identity[keep]
        self.attributes, self.labels = self.attributes[keep], labels[keep]

        if cache_dir is not None and held is None:
            if stale != "absent":
                print(f"CelebA cache {self.cache_path} is stale ({stale}); rebuilding it")
                sidecar.unlink(missing_ok=True)  # first, so an interrupted rebuild is never mistaken for valid
            self._build_cache(self.cache_path, sidecar)

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.filename)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache_path is not None:
            if self._cache is None:
                self._cache = np.load(self.cache_path, mmap_mode="r")
            image = to_float(np.array(self._cache[int(self.indices[index])]))  # copy out of the map
        else:
            image = to_float(_read_jpeg(self.image_dir / self.filename[index], self.image_size))
        return image, self.labels[index]

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy of the dataset; each opens its own memory map instead of
        # receiving the mapped array pickled (which would copy the whole cache).
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def describe(self) -> str:
        """One line for a chapter's output: which data, from where, how much of it, how labelled."""
        subset = "all 42 attributes" if self.subset is None else _subset_text(self.subset)
        if self.negatives_per_positive is None:
            balance = f"none (all {self.split_size} of the split)"
        else:
            positives = int((self.labels.reshape(len(self.labels), -1) > 0).any(dim=1).sum())
            balance = (
                f"{self.negatives_per_positive} negatives per positive "
                f"({positives} positive, {len(self) - positives} negative of {self.split_size})"
            )
        extra = f", first {self.limit}" if self.limit is not None else ""
        extra += f", cached in {self.cache_path}" if self.cache_path is not None else ""
        extra += f", annotations from {self.layout}" if self.layout != "official text files" else ""
        extra += f"; {self.coverage}" if self.coverage else ""
        s = self.image_size
        return (
            f"CelebA {self.split} from {config.shown_path(self.folder)}: {len(self)} images at {s}x{s}, "
            f"subset {subset}, balance {balance}{extra}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    # ------------------------------------------------------------------ cache

    def _cache_files(self, cache_dir: Path) -> tuple[Path, Path]:
        """The array and its JSON sidecar for this split at this size."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        stem = f"celeba_{self.split}_{self.image_size}px"
        return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"

    def _cache_description(self) -> dict:
        return {
            "split": self.split,
            "image_size": self.image_size,
            "preprocessing": PREPROCESSING,
            "built_from": str(self.image_dir),
            "filenames": self.split_filenames,
        }

    def _cached_images(
        self, path: Path, sidecar: Path, labelled: list[str], with_jpeg: set[str]
    ) -> tuple[list[str] | None, str]:
        """The images a cache holds when it can serve the split; else None and why not (``"absent"``: no cache).

        It can when it holds images of the split, in the split's order, among them every image that has
        a JPEG now. It may hold more: images whose JPEG has gone since are still served from it.
        """
        if not path.is_file() and not sidecar.is_file():
            return None, "absent"
        if not path.is_file() or not sidecar.is_file():
            return None, f"{path.name if not path.is_file() else sidecar.name} is missing"
        try:
            stored = json.loads(sidecar.read_text())
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as err:
            return None, f"unreadable: {err}"
        for key, wanted in (("image_size", self.image_size), ("preprocessing", PREPROCESSING)):
            if stored.get(key) != wanted:
                return None, f"{key} {stored.get(key)!r}, wanted {wanted!r}"
        held = stored.get("filenames")
        held = held if isinstance(held, list) else []
        in_cache = set(held)
        if [name for name in labelled if name in in_cache] != held or not with_jpeg <= in_cache:
            wanted = [name for name in labelled if name in with_jpeg]
            if len(held) != len(wanted):
                return None, f"it holds {len(held)} images, the split has {len(wanted)}"
            changed = sum(a != b for a, b in zip(held, wanted))
            return None, f"{changed} of its {len(held)} images are not those of the split"
        if shape != (len(held), 3, self.image_size, self.image_size):
            return None, f"array of shape {shape}"
        return held, ""

    def _build_cache(self, path: Path, sidecar: Path) -> None:
        from tqdm.auto import tqdm

        n, s = self.split_size, self.image_size
        print(f"Caching CelebA {self.split} at {s}x{s}: {n} images, {n * 3 * s * s / 1e9:.2f} GB -> {path}")
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        sidecar_tmp = sidecar.with_name(f".{sidecar.stem}.{os.getpid()}.tmp.json")
        try:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, s, s))
            # decoding is the slow part: spread it over worker processes when there is much to do
            workers = 0 if n < 2000 else min(8, os.cpu_count() or 1)
            loader = torch.utils.data.DataLoader(
                _JpegFiles(self.image_dir, self.split_filenames, s),
                batch_size=256,
                num_workers=workers,
            )
            done = 0
            with tqdm(total=n, desc=f"CelebA {self.split} {s}px", unit="img") as progress:
                for batch in loader:
                    array[done : done + len(batch)] = batch.numpy()
                    done += len(batch)
                    progress.update(len(batch))
            array.flush()
            del array
            sidecar_tmp.write_text(json.dumps(self._cache_description()))
            # the array first, then the sidecar that vouches for it: a crash in between leaves no sidecar
            os.replace(tmp, path)
            os.replace(sidecar_tmp, sidecar)
        finally:
            tmp.unlink(missing_ok=True)
            sidecar_tmp.unlink(missing_ok=True)


class _JpegFiles(torch.utils.data.Dataset):
    """JPEGs as preprocessed uint8 arrays: what the cache builder's DataLoader reads."""

    def __init__(self, folder: Path, filenames: list[str], image_size: int) -> None:
        self.folder, self.filenames, self.image_size = folder, filenames, image_size

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(_read_jpeg(self.folder / self.filenames[index], self.image_size))


def _read_jpeg(path: Path, image_size: int) -> np.ndarray:
    """One image, preprocessed to uint8 ``(3, S, S)``; an error that names the file and the fix if it cannot be read."""
    try:
        with Image.open(path) as image:
            return preprocess_image(image, image_size)
    except FileNotFoundError:
        raise DatasetNotFoundError(_missing_image_message(path)) from None
    except OSError as err:  # PIL's UnidentifiedImageError, "image file is truncated"
        raise ValueError(_unreadable_image_message(path, err)) from None


def _coverage(copy: CelebACopy, labelled: int, used: int) -> str:
    """'' for a complete copy; else what it leaves out, starting 'partial copy: '."""
    attributes, partition = copy.files[ATTRIBUTE_FILE].name, copy.files[PARTITION_FILE].name
    images = f"{copy.image_dir.relative_to(copy.folder).as_posix()}/"
    unused = "and are not used"
    parts = []
    if used < labelled:
        parts.append(
            f"{used:,} of the {labelled:,} labelled images of the split have a JPEG in {images} and are used "
            f"({labelled - used:,} left out)"
        )
    if copy.unlabelled_jpegs:
        parts.append(f"{copy.unlabelled_jpegs:,} images in {images} lack a row in {attributes} or {partition} {unused}")
    if copy.attributes_only:
        parts.append(f"{copy.attributes_only:,} images of {attributes} have no row in {partition} (no split) {unused}")
    if copy.partition_only:
        parts.append(f"{copy.partition_only:,} images of {partition} have no row in {attributes} (no labels) {unused}")
    return "partial copy: " + "; ".join(parts) if parts else ""


def _empty_split_message(copy: CelebACopy, split: str, labelled: int) -> str:
    per_split = ", ".join(
        f"{int(((copy.partition == code) & copy.has_jpeg).sum()):,} {name}" for name, code in SPLIT_CODES.items()
    )
    partition = copy.files[PARTITION_FILE].name
    why = (
        f"none of its {labelled:,} labelled images has a JPEG in {copy.image_dir}"
        if labelled
        else f"{partition} puts no labelled image in it"
    )
    return (
        f"CelebA's {split} split is empty in {copy.folder}: {why}. This copy has JPEGs of {per_split} images. "
        f"Add that split's images to {copy.image_dir} (img_align_celeba.zip holds all 202,599), or use another split."
    )


# --------------------------------------------------------------------------- attributes


def with_derived_attributes(attr: torch.Tensor) -> torch.Tensor:
    """CelebA's ``(N, 40)`` 0/1 table with ``Beard`` and ``Facial_Hair`` appended: ``(N, 42)`` long.

    CelebA marks beards negatively (``No_Beard``); IntroVAC's Facial subset asks for any facial hair,
    Beard or Goatee or Mustache.
    """
    attr = attr.long()
    column = {name: i for i, name in enumerate(CELEBA_ATTRIBUTES)}
    beard = 1 - attr[:, column["No_Beard"]]
    facial_hair = beard | attr[:, column["Goatee"]] | attr[:, column["Mustache"]]
    return torch.cat([attr, beard[:, None], facial_hair[:, None]], dim=1)


def _negatives_per_positive(value: int | str | None, subset: str | Sequence[str] | None) -> int | None:
    if value == "introvac":
        if not isinstance(subset, str) or subset not in INTROVAC_NEGATIVES_PER_POSITIVE:
            raise ValueError(
                f"negatives_per_positive='introvac' needs one of the IntroVAC subsets "
                f"{', '.join(INTROVAC_NEGATIVES_PER_POSITIVE)}, got subset={subset!r}; pass an int instead"
            )
        return INTROVAC_NEGATIVES_PER_POSITIVE[subset]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"negatives_per_positive must be a non-negative int, 'introvac' or None, got {value!r}")
    if subset is None:
        raise ValueError("balancing needs a subset to say which images are positive; pass subset='Eye' (for example)")
    return value


def _subset_text(subset: str | Sequence[str]) -> str:
    if isinstance(subset, str) and subset in FACE_SUBSETS:
        return f"{subset} ({', '.join(FACE_SUBSETS[subset])})"
    return ", ".join(subset_attributes(subset))


# --------------------------------------------------------------------------- reading a copy


@dataclass(frozen=True)
class CelebACopy:
    """What a copy of CelebA on disk holds, before any split is taken.

    ``filenames`` are the *labelled* images (an attribute row and a partition row), in
    ``list_eval_partition``'s order; ``has_jpeg`` says which of them have their JPEG. The counts say
    what a partial copy leaves out, so that it can be reported.
    """

    folder: Path
    image_dir: Path  # img_align_celeba/, or Kaggle's img_align_celeba/img_align_celeba/
    files: dict[str, Path]  # official .txt name -> the file read (.txt or Kaggle's .csv); only the files present
    filenames: list[str]
    partition: np.ndarray  # (N,) 0 train, 1 valid, 2 test
    attr: torch.Tensor  # (N, 40) long 0/1
    identity: torch.Tensor | None  # (N,) long, None without identity_CelebA.txt
    has_jpeg: np.ndarray  # (N,) bool
    unlabelled_jpegs: int  # images in image_dir without an attribute row or without a partition row
    attributes_only: int  # rows of the attribute file whose image has no partition row
    partition_only: int  # rows of the partition file whose image has no attribute row

    def summary(self) -> str:
        """How much of CelebA this copy holds: '6,000 labelled photographs of 200 identities' (a sample), or
        'all 202,599 labelled photographs' (the whole data set)."""
        count = int(self.has_jpeg.sum())
        if count == CELEBA_IMAGES:
            return f"all {count:,} labelled photographs"
        people = "" if self.identity is None else f" of {len(set(self.identity[torch.from_numpy(self.has_jpeg)].tolist())):,} identities"
        return f"{count:,} labelled photographs{people}, a part of CelebA's {CELEBA_IMAGES:,}"

    def layout(self) -> str:
        """'official text files', "Kaggle's .csv files" or, for a mix, the names of the files read."""
        suffixes = {path.suffix for path in self.files.values()}
        if suffixes == {".txt"}:
            return "official text files"
        if suffixes == {".csv"}:
            return "Kaggle's .csv files"
        return ", ".join(path.name for path in self.files.values())


def read_celeba(root: str | Path | None = None) -> CelebACopy:
    """Read the annotations of the copy under ``root`` (the data root) and list its images.

    Raises ``DatasetNotFoundError`` for a missing file or for images none of which is labelled, and
    ``ValueError`` naming the file for a malformed one.
    """
    root = Path(config.data_root() if root is None else root).expanduser()
    folder = root / CELEBA_FOLDER
    missing = missing_files(root)
    if missing:
        raise DatasetNotFoundError(not_found_message(root, missing))
    files = {name: path for name in ANNOTATION_FILES if (path := annotation_path(folder, name)) is not None}
    partition_names, partition = _read_annotation(files[PARTITION_FILE])
    attribute_names, attr = _read_annotation(files[ATTRIBUTE_FILE])

    # pair the rows by image name, in the partition file's order (torchvision's order)
    row_of = {name: i for i, name in enumerate(attribute_names)}
    labelled = [i for i, name in enumerate(partition_names) if name in row_of]
    filenames = [partition_names[i] for i in labelled]
    if not filenames:
        raise ValueError(
            f"{files[ATTRIBUTE_FILE].name} and {files[PARTITION_FILE].name} in {folder} have no image in common "
            f"(the first lists {attribute_names[0]}, ..., the second {partition_names[0]}, ...): they are not "
            f"from the same copy of CelebA. Fetch both again (see {CELEBA_PAGE})."
        )
    attr = torch.from_numpy((attr[[row_of[name] for name in filenames]] + 1) // 2)  # -1/1 -> 0/1, as torchvision
    identity = _identities(files[IDENTITY_FILE], filenames) if IDENTITY_FILE in files else None

    image_dir = image_folder(folder)
    with os.scandir(image_dir) as entries:
        images = {entry.name for entry in entries if entry.name.lower().endswith((".jpg", ".jpeg", ".png"))}
    has_jpeg = np.fromiter((name in images for name in filenames), dtype=bool, count=len(filenames))
    if not has_jpeg.any():
        raise DatasetNotFoundError(
            f"None of the {len(images):,} images in {image_dir} (such as {min(images)}) is listed in both "
            f"{files[ATTRIBUTE_FILE].name} and {files[PARTITION_FILE].name}, which name {filenames[0]}, ...: "
            f"they are not CelebA's aligned faces. Put the images of img_align_celeba.zip there (see {CELEBA_PAGE})."
        )
    return CelebACopy(
        folder=folder,
        image_dir=image_dir,
        files=files,
        filenames=filenames,
        partition=partition[labelled, 0],
        attr=attr,
        identity=identity,
        has_jpeg=has_jpeg,
        unlabelled_jpegs=len(images.difference(filenames)),
        attributes_only=len(attribute_names) - len(filenames),
        partition_only=len(partition_names) - len(filenames),
    )


def annotation_path(folder: Path, name: str) -> Path | None:
    """The file read for an annotation (its official ``.txt`` name): the ``.txt``, else Kaggle's ``.csv``, else None."""
    txt = folder / name
    if txt.is_file():
        return txt
    csv = txt.with_suffix(".csv")
    return csv if ANNOTATION_FILES[name].kaggle and csv.is_file() else None


def image_folder(folder: Path) -> Path | None:
    """The folder of the JPEGs: ``img_align_celeba/``, or Kaggle's ``img_align_celeba/img_align_celeba/``."""
    for candidate in (folder / IMAGE_FOLDER, folder / IMAGE_FOLDER / IMAGE_FOLDER):
        if candidate.is_dir() and _has_jpeg(candidate):
            return candidate
    return None


def _has_jpeg(folder: Path) -> bool:
    with os.scandir(folder) as entries:  # stops at the first JPEG, not after 202,599 of them
        return any(entry.name.lower().endswith(".jpg") for entry in entries)


def _read_annotation(path: Path) -> tuple[list[str], np.ndarray]:
    """Image names and ``(N, k)`` int64 values of an annotation file, official ``.txt`` or Kaggle's ``.csv``.

    Checks what torchvision's parser does not, so that a truncated or foreign file is named here rather
    than failing later: the header, the count line against the rows, k integers per row, each image once,
    the values' range.
    """
    spec = ANNOTATION_FILES[path.with_suffix(".txt").name]
    is_csv = path.suffix == ".csv"
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a CSV saved by Excel starts with a BOM
    except UnicodeDecodeError:
        raise ValueError(_malformed_message(path, "it is not a text file")) from None
    declared, start = _read_header(path, lines, spec, is_csv)
    width = len(spec.columns)
    names, rows = [], []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue  # a blank line, e.g. at the end
        fields = [field.strip() for field in line.split(",")] if is_csv else line.split()
        if len(fields) != width + 1:
            why = f"line {number} has {len(fields)} fields, expected an image name and {width} numbers"
            raise ValueError(_malformed_message(path, why))
        try:
            rows.append([int(field) for field in fields[1:]])
        except ValueError:
            why = f"line {number} holds something other than integers: {line.strip()[:60]!r}"
            raise ValueError(_malformed_message(path, why)) from None
        names.append(fields[0])
    if not names:
        raise ValueError(_malformed_message(path, "it lists no images"))
    if declared is not None and declared != len(names):
        why = f"its first line declares {declared} images but it lists {len(names)}"
        raise ValueError(_malformed_message(path, why))
    if len(set(names)) != len(names):  # two rows for one image: which one holds its labels?
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(_malformed_message(path, f"it lists {name} more than once"))
            seen.add(name)
    values = np.array(rows, dtype=np.int64).reshape(len(rows), width)
    _check_values(path, names, values)
    return names, values


def _read_header(path: Path, lines: list[str], spec: Annotation, is_csv: bool) -> tuple[int | None, int]:
    """The image count the file declares (None when it has no count line) and how many header lines it has."""
    if is_csv:
        expected = ("image_id", *spec.columns)
        found = tuple(field.strip() for field in lines[0].split(",")) if lines else ()
        if found != expected:
            shown = ",".join(expected[:3]) + (",..." if len(expected) > 3 else "")
            got = ",".join(found[:3])[:60]
            why = f"its first line should be Kaggle's header {shown} ({len(expected)} names), got {got!r}"
            raise ValueError(_malformed_message(path, why))
        return None, 1
    if not spec.titled:
        return None, 0
    if len(lines) < 2:
        why = "it ends before its two header lines (a count, then the column names)"
        raise ValueError(_malformed_message(path, why))
    first = lines[0].split()
    if len(first) != 1 or not first[0].isdigit():
        raise ValueError(_malformed_message(path, "its first line should be the number of images"))
    names = tuple(lines[1].split())  # the real line ends in a space: split() drops it
    if names != spec.columns:
        why = f"its second line should name CelebA's 40 attributes in order, got {', '.join(names[:4])}, ..."
        raise ValueError(_malformed_message(path, why))
    return int(first[0]), 2


# the values each file may hold (identities are any integer), and how to say so
VALUE_RULES = {
    ATTRIBUTE_FILE: ((-1, 1), "attribute values must be -1 or 1"),
    PARTITION_FILE: ((0, 1, 2), "partition values must be 0 (train), 1 (valid) or 2 (test)"),
}


def _check_values(path: Path, names: list[str], values: np.ndarray) -> None:
    allowed, rule = VALUE_RULES.get(path.with_suffix(".txt").name, (None, ""))
    if allowed is None:
        return
    bad = np.argwhere(~np.isin(values, allowed))
    if len(bad):
        row, column = bad[0]
        raise ValueError(_malformed_message(path, f"{rule}; {names[row]} has {values[row, column]}"))


def _identities(path: Path, filenames: list[str]) -> torch.Tensor:
    """Identity of each labelled image; the file may list more images (a partial copy), not fewer."""
    names, values = _read_annotation(path)
    identity_of = dict(zip(names, values[:, 0].tolist()))
    lacking = [name for name in filenames if name not in identity_of]
    if lacking:
        why = (
            f"it has no row for {len(lacking):,} of the {len(filenames):,} labelled images (the first: {lacking[0]}), "
            "which the attribute and partition files list"
        )
        fix = f"Face editing does not use identities: delete the file, or fetch it again (see {CELEBA_PAGE})"
        raise ValueError(_malformed_message(path, why, fix))
    return torch.tensor([identity_of[name] for name in filenames], dtype=torch.long)


# --------------------------------------------------------------------------- missing and malformed files


def missing_files(root: str | Path) -> list[str]:
    """What face editing needs that is missing under ``root`` (the data root): file names, ``img_align_celeba/``.

    An annotation is named as the copy would have it: ``.csv`` when the copy's other annotation is Kaggle's.
    """
    folder = Path(root).expanduser() / CELEBA_FOLDER
    kaggle = any(
        (path := annotation_path(folder, name)) is not None and path.suffix == ".csv" for name in ANNOTATION_FILES
    )
    missing = [
        str(Path(name).with_suffix(".csv")) if kaggle else name
        for name, spec in ANNOTATION_FILES.items()
        if spec.required and annotation_path(folder, name) is None
    ]
    if image_folder(folder) is None:
        missing.append(f"{IMAGE_FOLDER}/")
    return missing


def not_found_message(root: Path, missing: list[str]) -> str:
    """What is missing, the layouts that work, where to get them and how to unpack them."""
    folder = root / CELEBA_FOLDER
    required = sum(spec.required for spec in ANNOTATION_FILES.values()) + 1
    absent = "none of its files is there" if len(missing) == required else f"missing {', '.join(missing)}"
    lines = [f"CelebA is not in {folder}: {absent}.", ""]
    lines += ["Expected layout, under the data root (official names; Kaggle's in brackets):"]
    lines += [f"    {root}/", f"    └── {CELEBA_FOLDER}/"]
    faces = f"202,599 aligned faces 000001.jpg ... 202599.jpg, 178x218 [{IMAGE_FOLDER}/{IMAGE_FOLDER}/]"
    entries = [(f"{IMAGE_FOLDER}/", True, faces)]
    for name, spec in ANNOTATION_FILES.items():
        kaggle = f"[{Path(name).with_suffix('.csv')}]" if spec.kaggle else "[not in Kaggle's copy]"
        entries.append((name, spec.required, f"{spec.what} {kaggle}"))
    for i, (name, required_file, what) in enumerate(entries):
        branch = "└──" if i == len(entries) - 1 else "├──"
        is_missing = name in missing or str(Path(name).with_suffix(".csv")) in missing
        mark = "MISSING" if is_missing else ("" if required_file else "optional")
        lines.append(f"        {branch} {name:<27}{mark:<9}{what}")
    lines += [
        f"Nothing else is read: {' and '.join(NOT_NEEDED)} (face boxes, landmarks) are not needed.",
        "",
        "To get them, either",
        f"* the official release: the CelebA page {CELEBA_PAGE} links to a Google Drive folder, {CELEBA_DRIVE}.",
        f"  Download Img/img_align_celeba.zip (1.4 GB), Anno/{ATTRIBUTE_FILE} and Eval/{PARTITION_FILE} "
        f"(Anno/{IDENTITY_FILE} if you want identities) into {folder}/,",
        f"  then unzip the images there: cd {folder} && unzip -q img_align_celeba.zip (it creates {IMAGE_FOLDER}/).",
        "  torchvision.datasets.CelebA(download=True) fetches the same Google Drive files but is known to fail on "
        "Google Drive's download quota ('too many users have viewed or downloaded this file'), so it is not relied on.",
        f"* or Kaggle's copy, {KAGGLE_PAGE}: download it (archive.zip, 1.4 GB) into {folder}/ and unzip it there:",
        f"  cd {folder} && unzip -q archive.zip (it creates {IMAGE_FOLDER}/{IMAGE_FOLDER}/ and the .csv files).",
        f"Set {config.DATA_ENV} to use another data root.",
    ]
    hints = []
    if f"{IMAGE_FOLDER}/" in missing:
        for archive in sorted(folder.glob("*.zip")) if folder.is_dir() else []:
            hints.append(f"{archive.name} is there but not extracted: cd {folder} && unzip -q {archive.name}")
    if annotation_path(root, ATTRIBUTE_FILE) is not None:
        if root.name == CELEBA_FOLDER:
            hints.append(f"{root} looks like the celeba folder itself: pass its parent, {root.parent}, as root")
        else:
            hints.append(f"the CelebA files are in {root} itself: move them into {folder}/")
    return "\n".join(lines + [f"Hint: {hint}" for hint in hints])


def _missing_image_message(path: Path) -> str:
    return (
        f"{path} is missing: it was in {path.parent.name}/ when the dataset was opened. "
        f"Put it back (unzip img_align_celeba.zip again, see {CELEBA_PAGE}), or open the dataset again "
        "to use only the images that are there."
    )


def _unreadable_image_message(path: Path, err: OSError) -> str:
    return (
        f"{path} is not a readable image ({err}): its download or extraction was cut short. "
        f"Extract it again from img_align_celeba.zip (or Kaggle's archive), or delete it to leave that image out."
    )


def _malformed_message(path: Path, why: str, fix: str | None = None) -> str:
    if fix is None:
        source = (
            f"Kaggle's copy, {KAGGLE_PAGE}, or use the official .txt file (see {CELEBA_PAGE})"
            if path.suffix == ".csv"
            else f"the Google Drive folder linked on {CELEBA_PAGE}"
        )
        fix = f"The file is truncated or not CelebA's: fetch it again from {source}"
    return f"{path.name} is malformed ({path}): {why}. {fix}."


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_checksums(copy: CelebACopy) -> None:
    """md5 of each annotation file read against the official release's; names those that differ.

    Only the official files have published checksums: a Kaggle ``.csv`` cannot be verified, and a
    text file trimmed to a partial copy's images differs from the official one by construction.
    """
    csv = [path.name for path in copy.files.values() if path.suffix == ".csv"]
    if csv:
        raise ValueError(
            f"verify_checksums=True compares CelebA's official text files with their published md5, and "
            f"{', '.join(csv)} (Kaggle's format) {'has' if len(csv) == 1 else 'have'} none, so cannot be verified. "
            "Put the official "
            f"{', '.join(str(Path(name).with_suffix('.txt')) for name in csv)} in {copy.folder} (a .txt is read before "
            f"a .csv; see {CELEBA_PAGE}), or pass verify_checksums=False: the format and values are checked either way."
        )
    bad = [name for name, path in copy.files.items() if _md5(path) != ANNOTATION_FILES[name].md5]
    if bad:
        raise ValueError(
            f"{', '.join(bad)} in {copy.folder} differ from the official CelebA release (md5 mismatch): "
            "truncated, edited, another version, or trimmed to a partial copy's images (which can never match: "
            "pass verify_checksums=False for such a copy). "
            f"Otherwise fetch them again from the Google Drive folder linked on {CELEBA_PAGE}."
        )


# --------------------------------------------------------------------------- loaders


def load_celeba(
    subset: str | Sequence[str] | None = None,
    image_size: int = 64,
    split: str = "train",
    root: str | Path | None = None,
    negatives_per_positive: int | str | None = None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> CelebAFaces:
    """CelebA's official ``split`` as a dataset of ``(image, label)`` for a ``DataLoader``; see :class:`CelebAFaces`."""
    return CelebAFaces(
        root,
        split,
        image_size=image_size,
        subset=subset,
        negatives_per_positive=negatives_per_positive,
        limit=limit,
        cache_dir=cache_dir,
    )


def load_celeba_in_memory(
    subset: str | Sequence[str] | None = None,
    image_size: int = 64,
    root: str | Path | None = None,
    negatives_per_positive: int | str | None = None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> FaceImages:
    """The official train and test splits as tensors (:class:`FaceImages`, all 42 attribute columns), for CPU runs.

    ``limit`` keeps the first ``limit`` images of each split after balancing. Without it the whole
    train split is loaded: 162,770 images, 8 GB of float32 at 64x64; use :func:`load_celeba` for that.
    """
    parts = [
        load_celeba(subset, image_size, split, root, negatives_per_positive, cache_dir, limit)
        for split in ("train", "test")
    ]
    (x_train, a_train), (x_test, a_test) = (_stack(part) for part in parts)
    train = parts[0]
    subset_text = "all attributes" if subset is None else _subset_text(subset)
    balance = "" if train.negatives_per_positive is None else f", {train.negatives_per_positive} negatives per positive"
    first = "" if limit is None else f", first {limit} per split"
    return FaceImages(
        name="CelebA",
        source=f"{config.shown_path(train.folder)} ({train.copy_summary}; official train/test split; {PREPROCESSING} to {image_size}x{image_size}; "
        f"subset {subset_text}{balance}{first})",
        x_train=x_train,
        attributes_train=a_train,
        x_test=x_test,
        attributes_test=a_test,
        attribute_names=ATTRIBUTE_NAMES,
    )


def _stack(dataset: CelebAFaces) -> tuple[torch.Tensor, torch.Tensor]:
    from tqdm.auto import tqdm

    n, s = len(dataset), dataset.image_size
    x = torch.empty(n, 3, s, s)
    for i in tqdm(range(n), desc=f"CelebA {dataset.split}", unit="img", disable=n < 20_000):  # a sample loads in seconds: no bar
        x[i] = dataset[i][0]
    return x, dataset.attributes.clone()
