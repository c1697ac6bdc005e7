"""CelebA: 202,599 aligned celebrity faces with 40 binary attributes, read from disk as torchvision lays it out.

Layout, under the data root (``config.data_root()``: ``data/`` or ``$LATENTLAB_DATA``)::

    data/celeba/
    ├── img_align_celeba/                  000001.jpg ... 202599.jpg, 178x218 (unzip img_align_celeba.zip here)
    ├── list_attr_celeba.txt               40 attributes per image, -1/1
    ├── list_eval_partition.txt            the official split: 0 train, 1 valid, 2 test
    ├── identity_CelebA.txt                who is in each image
    ├── list_bbox_celeba.txt               face boxes (of the unaligned images)
    └── list_landmarks_align_celeba.txt    eyes, nose and mouth corners in the aligned images

The files are placed by hand (see :data:`CELEBA_PAGE`): torchvision's ``download=True`` fetches them
from Google Drive, whose download quota for these files is often exhausted, so the loader never
relies on it. When something is missing, :class:`CelebAFaces` raises
:class:`~latentlab.data.mnist.DatasetNotFoundError` listing what is missing, the layout and where to
get it; a file that is there but truncated raises a ``ValueError`` that names it.

* **Parsing and split.** :class:`CelebAFaces` subclasses ``torchvision.datasets.CelebA``, so the
  attribute table (-1/1 mapped to 0/1) and the official train/valid/test partition are torchvision's.
  Only the integrity check is replaced: torchvision md5-checks every text file on each load and says
  only "Dataset not found or corrupted"; here the files' presence and shape are checked, and the md5
  check runs on request (``verify_checksums=True``).
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
  images it holds; when it no longer matches the split, the cache is rebuilt (and says so).

:func:`load_celeba` returns the dataset for a ``DataLoader``; :func:`load_celeba_in_memory` returns
the first images of the official train and test splits as tensors (:class:`FaceImages`), for CPU runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import CelebA
from torchvision.datasets.utils import check_integrity

from .. import config
from .faces import (
    FACE_SUBSETS,
    INTROVAC_NEGATIVES_PER_POSITIVE,
    FaceImages,
    balance_indices,
    select_attributes,
    subset_attributes,
)
from .mnist import DatasetNotFoundError

CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_DRIVE = (
    "https://drive.google.com/drive/folders/0B7EVK8r0v71pWEZsZE9oNnFzTm8?resourcekey=0-5BR16BdXnb8hVj6CNHKzLg"
)
IMAGE_FOLDER = "img_align_celeba"
SPLITS = ("train", "valid", "test", "all")
IMAGE_SIZES = (32, 64, 128)

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

# The text files torchvision reads: what each holds (for the layout in error messages), whether it
# starts with a count line and a header line, and how many integer columns follow the image name.
ANNOTATION_FILES: dict[str, tuple[str, bool, int]] = {
    "list_attr_celeba.txt": ("40 attributes per image, -1/1 (Anno/)", True, 40),
    "list_eval_partition.txt": ("the official split: 0 train, 1 valid, 2 test (Eval/)", False, 1),
    "identity_CelebA.txt": ("who is in each image (Anno/)", False, 1),
    "list_bbox_celeba.txt": ("face boxes of the unaligned images (Anno/)", True, 4),
    "list_landmarks_align_celeba.txt": ("5 landmarks per aligned image (Anno/)", True, 10),
}
PARTITION_FILE = "list_eval_partition.txt"

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
    with Image.open(path) as image:
        return to_float(preprocess_image(image, image_size))


class CelebAFaces(CelebA):
    """CelebA's official split, preprocessed as IntroVAC does, labelled by an attribute subset.

    Each item is ``(image, label)``: ``image`` float32 ``(3, S, S)`` in [0, 1]; ``label`` a long 0/1
    scalar for a one-attribute subset, ``(k,)`` for ``k`` attributes, ``(42,)`` for ``subset=None``.

    Args:
        root: the data root holding ``celeba/`` (default ``config.data_root()``), as for torchvision.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"all"`` (``list_eval_partition.txt``).
        image_size: side of the square images, 64 or 128 (32 for quick runs).
        subset: a name of ``FACE_SUBSETS``, a list of attribute names, or ``None`` for all 42.
        negatives_per_positive: keep every positive and the first ``r`` negatives per positive
            (``None``: keep all; ``"introvac"``: the IntroVAC value for the subset).
        limit: keep only the first ``limit`` images (after balancing), for quick runs.
        cache_dir: folder of the preprocessed uint8 cache (``None``: decode the JPEGs per item).
        verify_checksums: md5-check the five text files against the official release (reads about 50 MB).

    Attributes beyond torchvision's: ``attributes`` (N, 42) long 0/1 with ``attribute_names``,
    ``labels`` (the subset's columns), ``indices`` (positions of the kept images in the split),
    ``split_size`` (images in the split before balancing and limit), ``cache_path``.
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
        if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {IMAGE_SIZES} (IntroVAC uses 64 and 128), got {image_size!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        if subset is not None:
            unknown = [name for name in subset_attributes(subset) if name not in ATTRIBUTE_NAMES]
            if unknown:
                raise ValueError(f"attribute(s) {unknown} are not in this dataset; it has {', '.join(ATTRIBUTE_NAMES)}")
        ratio = _negatives_per_positive(negatives_per_positive, subset)

        data_root = Path(config.data_root() if root is None else root).expanduser()
        missing = missing_files(data_root)
        if missing:
            raise DatasetNotFoundError(not_found_message(data_root, missing))
        if verify_checksums:
            _verify_checksums(data_root / self.base_folder)

        self._partition_index: list[str] | None = None  # filled by _load_csv, to check the other files against
        # download=False always; the parent parses the five text files through our _load_csv and
        # calls our _check_integrity, which passes: presence was checked above, md5 on request.
        super().__init__(str(data_root), split=split, target_type="attr", download=False)

        self.data_root = data_root
        self.folder = data_root / self.base_folder
        self.image_size = image_size
        self.subset = subset
        self.negatives_per_positive = ratio
        self.limit = limit
        # the real header line ends in a space, which the csv reader turns into an empty last name
        self.attr_names = [name for name in self.attr_names if name]
        self.split_filenames = list(self.filename)
        self.split_size = len(self.split_filenames)

        self.attributes = with_derived_attributes(self.attr)
        self.attribute_names = ATTRIBUTE_NAMES
        labels = self.attributes if subset is None else select_attributes(self.attributes, ATTRIBUTE_NAMES, subset)
        keep = balance_indices(labels, ratio)
        if limit is not None:
            keep = keep[:limit]
        self.indices = keep
        self.filename = [self.split_filenames[i] for i in keep.tolist()]
        self.attr, self.identity = self.attr[keep], self.identity[keep]
        self.bbox, self.landmarks_align = self.bbox[keep], self.landmarks_align[keep]
        self.attributes, self.labels = self.attributes[keep], labels[keep]

        self.cache_path: Path | None = None
        self._cache: np.ndarray | None = None  # the memory map, opened lazily in each process
        if cache_dir is not None:
            self.cache_path = self._prepare_cache(Path(cache_dir).expanduser())
        else:
            self._check_images_present()

    # ------------------------------------------------------------------ torchvision hooks

    def _check_integrity(self) -> bool:
        return True  # replaced by missing_files() and, on request, _verify_checksums(), run before parsing

    def _load_csv(self, filename: str, header: int | None = None):
        """torchvision's parser, with a ValueError naming the file when the file is malformed."""
        path = Path(self.root) / self.base_folder / filename
        try:
            table = super()._load_csv(filename, header)
        except (ValueError, IndexError, RuntimeError, TypeError, UnicodeDecodeError) as err:
            why = _first_bad_line(path) or f"{type(err).__name__}: {err}"
            # from None: the parser's own traceback (csv, int(), torch.tensor) says nothing about the file
            raise ValueError(_malformed_message(path, why)) from None
        why = self._table_problem(path, table)
        if why is not None:
            raise ValueError(_malformed_message(path, why))
        if filename == PARTITION_FILE:  # torchvision reads it first: the others are checked against it
            self._partition_index = list(table.index)
        return table

    def _table_problem(self, path: Path, table) -> str | None:
        """What is wrong with a parsed file that torchvision does not check, e.g. a file cut after a whole line."""
        name = path.name
        _, has_header, width = ANNOTATION_FILES.get(name, ("", False, None))
        rows = len(table.index)
        if rows == 0:
            return "it lists no images"
        if width is not None and tuple(table.data.shape) != (rows, width):
            return f"expected {width} numbers per image, read a table of shape {tuple(table.data.shape)}"
        if has_header:
            declared = _declared_count(path)
            if declared is None:
                return "its first line should be the number of images"
            if declared != rows:
                return f"its first line declares {declared} images but it lists {rows}"
        if name == PARTITION_FILE and not ((table.data >= 0) & (table.data <= 2)).all():
            return "partition values must be 0 (train), 1 (valid) or 2 (test)"
        expected = self._partition_index
        if name != PARTITION_FILE and expected is not None and list(table.index) != expected:
            # every file must list the same images in the same order, or rows would be paired wrongly
            if rows != len(expected):
                return f"it lists {rows} images but {PARTITION_FILE} lists {len(expected)}"
            return f"its images are not those of {PARTITION_FILE}, in the same order"
        if name == "list_attr_celeba.txt":
            names = tuple(n for n in table.header if n)
            if names != CELEBA_ATTRIBUTES:
                return f"its second line should name CelebA's 40 attributes in order, got {', '.join(names[:4])}, ..."
            if not (table.data.abs() == 1).all():
                return "attribute values must be -1 or 1"
        return None

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.filename)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache_path is not None:
            if self._cache is None:
                self._cache = np.load(self.cache_path, mmap_mode="r")
            image = to_float(np.array(self._cache[int(self.indices[index])]))  # copy out of the map
        else:
            path = self.folder / IMAGE_FOLDER / self.filename[index]
            try:
                image = load_image(path, self.image_size)
            except FileNotFoundError:
                raise DatasetNotFoundError(_missing_image_message(path)) from None
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
        s = self.image_size
        return (
            f"CelebA {self.split} from {self.folder}: {len(self)} images at {s}x{s}, "
            f"subset {subset}, balance {balance}{extra}"
        )

    def extra_repr(self) -> str:
        return self.describe()

    # ------------------------------------------------------------------ cache

    def _prepare_cache(self, cache_dir: Path) -> Path:
        """Path of a cache holding this split at this size: reused when it matches, else (re)built."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        stem = f"celeba_{self.split}_{self.image_size}px"
        path, sidecar = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
        why = self._cache_mismatch(path, sidecar)
        if why is None:
            return path
        if why != "absent":
            print(f"CelebA cache {path} is stale ({why}); rebuilding it")
            sidecar.unlink(missing_ok=True)  # first, so an interrupted rebuild is never mistaken for valid
        self._check_images_present()
        self._build_cache(path, sidecar)
        return path

    def _cache_description(self) -> dict:
        return {
            "split": self.split,
            "image_size": self.image_size,
            "preprocessing": PREPROCESSING,
            "built_from": str(self.folder),
            "filenames": self.split_filenames,
        }

    def _cache_mismatch(self, path: Path, sidecar: Path) -> str | None:
        """Why the cache cannot be used (``"absent"`` when there is none), or None when it can."""
        if not path.is_file() and not sidecar.is_file():
            return "absent"
        if not path.is_file() or not sidecar.is_file():
            return f"{path.name if not path.is_file() else sidecar.name} is missing"
        try:
            stored = json.loads(sidecar.read_text())
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as err:
            return f"unreadable: {err}"
        wanted = self._cache_description()
        for key in ("image_size", "preprocessing"):
            if stored.get(key) != wanted[key]:
                return f"{key} {stored.get(key)!r}, wanted {wanted[key]!r}"
        held = stored.get("filenames") or []
        if held != wanted["filenames"]:
            if len(held) != self.split_size:
                return f"it holds {len(held)} images, the split has {self.split_size}"
            changed = sum(a != b for a, b in zip(held, wanted["filenames"]))
            return f"{changed} of its {len(held)} images are not those of the split"
        if shape != (self.split_size, 3, self.image_size, self.image_size):
            return f"array of shape {shape}"
        return None

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
                _JpegFiles(self.folder / IMAGE_FOLDER, self.split_filenames, s),
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

    def _check_images_present(self) -> None:
        """The first and last image of the split are there: catches a half-extracted zip before an epoch starts."""
        image_dir = self.folder / IMAGE_FOLDER
        ends = dict.fromkeys(self.split_filenames[:1] + self.split_filenames[-1:])  # one name if the split has one
        absent = [name for name in ends if not (image_dir / name).is_file()]
        if absent:
            raise DatasetNotFoundError(
                f"{image_dir} lacks {', '.join(absent)}, listed in {PARTITION_FILE}: the images are incomplete. "
                f"Unzip img_align_celeba.zip again in {self.folder} (see {CELEBA_PAGE})."
            )


class _JpegFiles(torch.utils.data.Dataset):
    """JPEGs as preprocessed uint8 arrays: what the cache builder's DataLoader reads."""

    def __init__(self, folder: Path, filenames: list[str], image_size: int) -> None:
        self.folder, self.filenames, self.image_size = folder, filenames, image_size

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.folder / self.filenames[index]
        try:
            with Image.open(path) as image:
                return torch.from_numpy(preprocess_image(image, self.image_size))
        except FileNotFoundError:
            raise DatasetNotFoundError(_missing_image_message(path)) from None


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


# --------------------------------------------------------------------------- missing and malformed files


def missing_files(root: str | Path) -> list[str]:
    """What of CelebA is missing under ``root`` (the data root): text file names, ``img_align_celeba/``."""
    folder = Path(root).expanduser() / CelebA.base_folder
    missing = [name for name in ANNOTATION_FILES if not (folder / name).is_file()]
    image_dir = folder / IMAGE_FOLDER
    if not image_dir.is_dir() or not _has_jpeg(image_dir):
        missing.append(f"{IMAGE_FOLDER}/")
    return missing


def _has_jpeg(folder: Path) -> bool:
    with os.scandir(folder) as entries:  # stops at the first JPEG, not after 202,599 of them
        return any(entry.name.lower().endswith(".jpg") for entry in entries)


def not_found_message(root: Path, missing: list[str]) -> str:
    """What is missing, the layout expected, where to get it and how to unpack it."""
    folder = root / CelebA.base_folder
    everything = len(missing) == len(ANNOTATION_FILES) + 1
    absent = "none of its files is there" if everything else f"missing {', '.join(missing)}"
    lines = [f"CelebA is not in {folder}: {absent}.", "", "Expected layout (torchvision's), under the data root:"]
    lines += [f"    {root}/", f"    └── {CelebA.base_folder}/"]
    entries = [(f"{IMAGE_FOLDER}/", "202,599 aligned faces 000001.jpg ... 202599.jpg, 178x218")]
    entries += [(name, what) for name, (what, _, _) in ANNOTATION_FILES.items()]
    for i, (name, what) in enumerate(entries):
        branch = "└──" if i == len(entries) - 1 else "├──"
        mark = "MISSING" if name in missing else ""
        lines.append(f"        {branch} {name:<34}{mark:<9}{what}")
    lines += [
        "",
        f"To get them: the official CelebA page {CELEBA_PAGE} links to a Google Drive folder, {CELEBA_DRIVE}.",
        "Download Img/img_align_celeba.zip (1.4 GB), the four .txt files of Anno/ listed above and "
        f"Eval/{PARTITION_FILE} into {folder}/,",
        f"then unzip the images there: cd {folder} && unzip -q img_align_celeba.zip (it creates {IMAGE_FOLDER}/).",
        "torchvision.datasets.CelebA(download=True) fetches the same Google Drive files but is known to fail on "
        "Google Drive's download quota ('too many users have viewed or downloaded this file'), so it is not relied on.",
        f"Set {config.DATA_ENV} to use another data root.",
    ]
    hints = []
    if f"{IMAGE_FOLDER}/" in missing and (folder / "img_align_celeba.zip").is_file():
        hints.append(f"img_align_celeba.zip is there but not extracted: cd {folder} && unzip -q img_align_celeba.zip")
    if (folder / IMAGE_FOLDER / IMAGE_FOLDER).is_dir():
        nested = folder / IMAGE_FOLDER / IMAGE_FOLDER
        hints.append(f"the images are one folder too deep: move {nested}/*.jpg up into {nested.parent}")
    if root.name == CelebA.base_folder and (root / "list_attr_celeba.txt").is_file():
        hints.append(f"{root} looks like the celeba folder itself: pass its parent, {root.parent}, as root")
    if any(folder.glob("list_*.csv")):
        hints.append("Kaggle's copy has .csv files instead of the official .txt files: fetch the .txt files from Drive")
    return "\n".join(lines + [f"Hint: {hint}" for hint in hints])


def _missing_image_message(path: Path) -> str:
    return (
        f"{path} is missing: {IMAGE_FOLDER}/ does not hold every image listed in {PARTITION_FILE}. "
        f"Unzip img_align_celeba.zip again in {path.parent.parent} (see {CELEBA_PAGE})."
    )


def _malformed_message(path: Path, why: str) -> str:
    return (
        f"{path.name} is malformed ({path}): {why}. The file is truncated or not CelebA's: "
        f"fetch it again from the Google Drive folder linked on {CELEBA_PAGE} "
        "(verify_checksums=True compares every text file with the official release)."
    )


def _declared_count(path: Path) -> int | None:
    with open(path) as f:
        first = f.readline().split()
    return int(first[0]) if len(first) == 1 and first[0].isdigit() else None


def _first_bad_line(path: Path) -> str | None:
    """Where a CelebA text file departs from its format: 'line 9: ...', or None when no line does."""
    _, has_header, width = ANNOTATION_FILES.get(path.name, ("", False, None))
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        return "it is not a text file"
    if has_header and len(lines) < 2:
        return "it ends before its two header lines (a count, then the column names)"
    start = 2 if has_header else 0
    for number, line in enumerate(lines[start:], start=start + 1):
        fields = line.split()
        if width is not None and len(fields) != width + 1:
            return f"line {number} has {len(fields)} fields, expected an image name and {width} numbers"
        try:
            [int(field) for field in fields[1:]]
        except ValueError:
            return f"line {number} holds something other than integers: {line.strip()[:60]!r}"
    return None


def _verify_checksums(folder: Path) -> None:
    """md5 of every text file against torchvision's list of the official files; names those that differ."""
    bad = [
        name
        for _, md5, name in CelebA.file_list
        if not name.endswith((".zip", ".7z")) and not check_integrity(str(folder / name), md5)
    ]
    if bad:
        raise ValueError(
            f"{', '.join(bad)} in {folder} differ from the official CelebA release (md5 mismatch): "
            "truncated, edited or another version. "
            f"Fetch them again from the Google Drive folder linked on {CELEBA_PAGE}."
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
        source=f"{train.folder} (official train/test split; {PREPROCESSING} to {image_size}x{image_size}; "
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
    for i in tqdm(range(n), desc=f"CelebA {dataset.split}", unit="img", disable=n < 2000):
        x[i] = dataset[i][0]
    return x, dataset.attributes.clone()
