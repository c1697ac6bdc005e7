"""CelebA read from a tiny copy written in the real on-disk format: torchvision's parsing and official
split, IntroVAC's preprocessing (checked with a marker at a known place), derived attributes, subsets,
balance, the preprocessed cache, and what the user sees when files are missing or malformed."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab.data.celeba import (
    ANNOTATION_FILES,
    ATTRIBUTE_NAMES,
    CELEBA_ATTRIBUTES,
    CELEBA_PAGE,
    CelebAFaces,
    load_celeba,
    load_celeba_in_memory,
)
from latentlab.data.faces import FaceImages
from latentlab.data.mnist import DatasetNotFoundError

WIDTH, HEIGHT = 178, 218  # CelebA's aligned images
RED_BOX = (60, 90, 100, 130)  # left, upper, right, lower: inside the crop, lands where the math says
BLUE_BOX = (0, 0, 16, 16)  # top-left corner: outside the central crop, must vanish

# Hand-made attributes: image -> (partition, Eyeglasses, No_Beard, Goatee, Mustache, Smiling), 1/-1 as in the file.
# Facial_Hair = (not No_Beard) or Goatee or Mustache.
ROWS = {
    1: (0, 1, 1, -1, -1, 1),  # glasses, no facial hair
    2: (0, -1, -1, -1, -1, -1),  # beard
    3: (0, -1, 1, 1, -1, 1),  # goatee only
    4: (0, -1, 1, -1, 1, -1),  # mustache only: Facial_Hair though No_Beard
    5: (0, -1, 1, -1, -1, 1),
    6: (0, 1, -1, -1, 1, -1),  # glasses and beard and mustache
    7: (0, -1, 1, -1, -1, -1),
    8: (0, -1, 1, -1, -1, 1),
    9: (1, 1, 1, -1, -1, 1),
    10: (1, -1, 1, -1, -1, -1),
    11: (2, 1, -1, -1, -1, 1),
    12: (2, -1, 1, -1, -1, -1),
}
HAND_COLUMNS = ("Eyeglasses", "No_Beard", "Goatee", "Mustache", "Smiling")
TRAIN = [f"{i:06d}.jpg" for i in range(1, 9)]


def _name(i: int) -> str:
    return f"{i:06d}.jpg"


def _background(i: int) -> int:
    return 30 + 12 * i  # a grey level per image, so a served image can be told from the others


def _attribute_rows() -> dict[int, list[int]]:
    """All 40 values per image: the hand-made columns, the rest seeded -1/1."""
    rng = np.random.default_rng(0)
    rows = {}
    for i, (_, *hand) in ROWS.items():
        values = rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES)).tolist()
        for name, value in zip(HAND_COLUMNS, hand):
            values[CELEBA_ATTRIBUTES.index(name)] = value
        rows[i] = values
    return rows


def _write_image(path, i: int) -> None:
    pixels = np.full((HEIGHT, WIDTH, 3), _background(i), dtype=np.uint8)
    left, upper, right, lower = RED_BOX
    pixels[upper:lower, left:right] = (230, 20, 20)
    left, upper, right, lower = BLUE_BOX
    pixels[upper:lower, left:right] = (20, 20, 230)
    Image.fromarray(pixels).save(path, quality=95)


def _write_celeba(folder) -> None:
    """CelebA's files as the official release has them (header lines, padding, trailing space)."""
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    for i in ROWS:
        _write_image(images / _name(i), i)
    n = len(ROWS)
    attributes = _attribute_rows()
    # the real second line ends in a space; the values are right-aligned in 2 characters
    lines = [str(n), " ".join(CELEBA_ATTRIBUTES) + " "]
    lines += [_name(i) + "".join(f" {v:>2}" for v in attributes[i]) for i in ROWS]
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{_name(i)} {row[0]}\n" for i, row in ROWS.items()))
    (folder / "identity_CelebA.txt").write_text("".join(f"{_name(i)} {2880 + i}\n" for i in ROWS))
    lines = [str(n), "image_id x_1 y_1 width height"] + [f"{_name(i)}    95  71 226 313" for i in ROWS]
    (folder / "list_bbox_celeba.txt").write_text("\n".join(lines) + "\n")
    header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    lines = [str(n), header] + [f"{_name(i)} 69  109  106  113   77  142   73  152  108  154" for i in ROWS]
    (folder / "list_landmarks_align_celeba.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def celeba_root(tmp_path):
    root = tmp_path / "data"
    _write_celeba(root / "celeba")
    return root


def _hand(i: int, name: str) -> int:
    """0/1 value of a hand-made or derived attribute of image ``i``, from first principles."""
    _, glasses, no_beard, goatee, mustache, smiling = ROWS[i]
    beard = no_beard == -1
    value = {
        "Eyeglasses": glasses == 1,
        "Smiling": smiling == 1,
        "Beard": beard,
        "Facial_Hair": beard or goatee == 1 or mustache == 1,
    }[name]
    return int(value)


def _assert_raised_here(excinfo) -> None:
    """The error comes from latentlab's check, not from deep inside torchvision or csv."""
    assert excinfo.traceback[-1].path.name == "celeba.py"
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__context__ is None or excinfo.value.__suppress_context__


# --------------------------------------------------------------------------- split, images, preprocessing


def test_official_split_sizes_and_order(celeba_root):
    sizes = {split: len(CelebAFaces(celeba_root, split)) for split in ("train", "valid", "test", "all")}
    assert sizes == {"train": 8, "valid": 2, "test": 2, "all": 12}
    assert CelebAFaces(celeba_root, "test").filename == ["000011.jpg", "000012.jpg"]
    assert CelebAFaces(celeba_root, "train").filename == TRAIN


@pytest.mark.parametrize("size", [32, 64, 128])
def test_images_are_float_in_unit_range(celeba_root, size):
    x, _ = CelebAFaces(celeba_root, "valid", image_size=size)[1]
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x.max()) > 0.8  # the red marker survived: not an all-dark image


@pytest.mark.parametrize("size", [64, 128])
def test_marker_lands_where_resize_crop_resize_predicts(celeba_root, size):
    x, _ = CelebAFaces(celeba_root, "train", image_size=size)[0]
    red = (x[0] - x[1]) > 0.4
    rows, cols = red.nonzero(as_tuple=True)
    assert len(rows) > 0

    def predicted(edge: float, original: int) -> float:  # a pixel edge: 178/218 -> 256, minus 32, 192 -> size
        return (edge * 256 / original - 32) * size / 192

    left, upper, right, lower = RED_BOX
    centre_x = (predicted(left, WIDTH) + predicted(right, WIDTH)) / 2
    centre_y = (predicted(upper, HEIGHT) + predicted(lower, HEIGHT)) / 2
    assert abs(float(cols.float().mean()) + 0.5 - centre_x) < 1.0
    assert abs(float(rows.float().mean()) + 0.5 - centre_y) < 1.0
    width = predicted(right, WIDTH) - predicted(left, WIDTH)
    height = predicted(lower, HEIGHT) - predicted(upper, HEIGHT)
    assert abs(len(cols.unique()) - width) <= 2 and abs(len(rows.unique()) - height) <= 2
    # the blue corner lies outside the central 192x192 of the 256x256 image: cropped away
    assert float((x[2] - x[0]).max()) < 0.1


def test_items_are_the_right_images(celeba_root):
    data = CelebAFaces(celeba_root, "all")
    for index, name in enumerate(data.filename):
        i = int(name[:6])
        x, _ = data[index]
        assert abs(float(x[:, 2, -3].mean()) * 255 - _background(i)) < 3  # a background pixel, right edge


# --------------------------------------------------------------------------- attributes and subsets


def test_attributes_are_zero_one_with_derived_columns(celeba_root):
    data = CelebAFaces(celeba_root, "all")
    assert data.attribute_names == ATTRIBUTE_NAMES and len(ATTRIBUTE_NAMES) == 42
    assert ATTRIBUTE_NAMES[-2:] == ("Beard", "Facial_Hair")
    assert data.attributes.shape == (12, 42) and data.attributes.dtype == torch.long
    assert data.attr_names == list(CELEBA_ATTRIBUTES)  # the trailing space of the header is not a 41st name
    expected = torch.tensor([[(v + 1) // 2 for v in _attribute_rows()[i]] for i in ROWS])
    assert torch.equal(data.attributes[:, :40], expected)  # -1/1 -> 0/1, every column
    for row, i in enumerate(ROWS):
        for name in ("Eyeglasses", "Smiling", "Beard", "Facial_Hair"):
            assert int(data.attributes[row, ATTRIBUTE_NAMES.index(name)]) == _hand(i, name), (i, name)
    # the case the definition exists for: No_Beard=1, Goatee=0, Mustache=1 -> Facial_Hair=1
    row = data.filename.index("000004.jpg")
    assert int(data.attributes[row, ATTRIBUTE_NAMES.index("Beard")]) == 0
    assert int(data.attributes[row, ATTRIBUTE_NAMES.index("Facial_Hair")]) == 1


@pytest.mark.parametrize(
    "subset, names",
    [
        ("Eye", ["Eyeglasses"]),
        ("Facial", ["Facial_Hair"]),
        ("Smiling", ["Smiling"]),
        ("EyeFacial", ["Eyeglasses", "Facial_Hair"]),
        (["Smiling", "Beard"], ["Smiling", "Beard"]),
    ],
)
def test_subset_labels(celeba_root, subset, names):
    data = CelebAFaces(celeba_root, "train", subset=subset)
    for index, name in enumerate(data.filename):
        _, label = data[index]
        expected = [_hand(int(name[:6]), n) for n in names]
        assert label.dtype == torch.long
        if len(names) == 1:
            assert label.shape == () and int(label) == expected[0]
        else:
            assert label.shape == (len(names),) and label.tolist() == expected


def test_no_subset_gives_every_attribute(celeba_root):
    data = CelebAFaces(celeba_root, "test")
    _, label = data[0]
    assert label.shape == (42,) and torch.equal(label, data.attributes[0])


def test_unknown_subset_and_bad_arguments(celeba_root):
    with pytest.raises(ValueError, match="unknown attribute subset"):
        CelebAFaces(celeba_root, subset="Hat")
    with pytest.raises(ValueError, match="not in this dataset"):
        CelebAFaces(celeba_root, subset=["Hat_Wearing"])
    with pytest.raises(ValueError, match="split"):
        CelebAFaces(celeba_root, "validation")
    with pytest.raises(ValueError, match="image_size"):
        CelebAFaces(celeba_root, image_size=100)


# --------------------------------------------------------------------------- balance


@pytest.mark.parametrize("ratio", [1, 2])
def test_balance_keeps_positives_and_first_negatives(celeba_root, ratio):
    data = CelebAFaces(celeba_root, "train", subset="Eye", negatives_per_positive=ratio)
    positives = [n for n in TRAIN if _hand(int(n[:6]), "Eyeglasses")]
    negatives = [n for n in TRAIN if not _hand(int(n[:6]), "Eyeglasses")][: ratio * len(positives)]
    assert positives == ["000001.jpg", "000006.jpg"]
    assert data.filename == sorted(positives + negatives)  # dataset order kept
    assert int(data.labels.sum()) == len(positives) and len(data) == (1 + ratio) * len(positives)
    assert data.split_size == 8
    # the items follow the kept rows: image and label of the same file
    for index, name in enumerate(data.filename):
        x, label = data[index]
        assert int(label) == _hand(int(name[:6]), "Eyeglasses")
        assert abs(float(x[:, 2, -3].mean()) * 255 - _background(int(name[:6]))) < 3


def test_balance_introvac_ratio_and_fewer_negatives_than_asked(celeba_root):
    eye = CelebAFaces(celeba_root, "train", subset="Eye", negatives_per_positive="introvac")
    assert eye.negatives_per_positive == 2 and len(eye) == 6
    # EyeFacial: 5 positives (any label 1), only 3 negatives to keep
    both = CelebAFaces(celeba_root, "train", subset="EyeFacial", negatives_per_positive=1)
    assert len(both) == 8
    with pytest.raises(ValueError, match="introvac"):
        CelebAFaces(celeba_root, subset="Smiling", negatives_per_positive="introvac")
    with pytest.raises(ValueError, match="needs a subset"):
        CelebAFaces(celeba_root, negatives_per_positive=1)


def test_limit_applies_after_balancing(celeba_root):
    data = CelebAFaces(celeba_root, "train", subset="Eye", negatives_per_positive=2, limit=3)
    assert data.filename == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert "first 3" in data.describe()


def test_describe(celeba_root):
    line = CelebAFaces(celeba_root, "train", subset="Eye", negatives_per_positive=1).describe()
    assert line.startswith(f"CelebA train from {celeba_root / 'celeba'}: 4 images at 64x64, subset Eye (Eyeglasses)")
    assert "balance 1 negatives per positive (2 positive, 2 negative of 8)" in line
    assert "balance none" in CelebAFaces(celeba_root, "test").describe()


# --------------------------------------------------------------------------- cache


def test_cache_is_written_then_served_without_the_jpegs(celeba_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    from_jpeg = list(CelebAFaces(celeba_root, "train", subset="Facial"))  # read before a JPEG goes
    first = CelebAFaces(celeba_root, "train", subset="Facial", cache_dir=cache)
    assert first.cache_path == cache / "celeba_train_64px.npy" and first.cache_path.is_file()
    assert (cache / "celeba_train_64px.json").is_file()
    assert "Caching CelebA train" in capsys.readouterr().out
    stored = np.load(first.cache_path)
    assert stored.dtype == np.uint8 and stored.shape == (8, 3, 64, 64)
    assert not list(cache.glob(".*tmp*"))  # the temporary files were renamed or removed

    (celeba_root / "celeba" / "img_align_celeba" / "000003.jpg").unlink()
    second = CelebAFaces(celeba_root, "train", subset="Facial", cache_dir=cache)
    assert capsys.readouterr().out == ""  # reused silently
    for index in range(len(second)):
        x, label = second[index]
        x_jpeg, label_jpeg = from_jpeg[index]
        assert x.dtype == torch.float32 and x.shape == (3, 64, 64)
        assert float((x - x_jpeg).abs().max()) <= 1 / 255 and torch.equal(label, label_jpeg)
    # a balanced subset reads its rows of the same split cache
    eye = CelebAFaces(celeba_root, "train", subset="Eye", negatives_per_positive=1, cache_dir=cache)
    assert eye.filename == ["000001.jpg", "000002.jpg", "000003.jpg", "000006.jpg"]
    assert abs(float(eye[2][0][:, 2, -3].mean()) * 255 - _background(3)) < 3  # 000003.jpg, from the cache
    # workers get the dataset pickled: the memory map must not travel with it
    assert len(pickle.dumps(second)) < stored.nbytes


def test_stale_cache_is_rebuilt(celeba_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert len(CelebAFaces(celeba_root, "train", cache_dir=cache)) == 8
    capsys.readouterr()
    # swap 000008.jpg (train) and 000009.jpg (valid): as many train images as before, but other ones
    partition = celeba_root / "celeba" / "list_eval_partition.txt"
    text = partition.read_text().replace("000008.jpg 0", "000008.jpg 1").replace("000009.jpg 1", "000009.jpg 0")
    partition.write_text(text)
    rebuilt = CelebAFaces(celeba_root, "train", cache_dir=cache)
    out = capsys.readouterr().out
    assert "is stale (1 of its 8 images are not those of the split)" in out and "rebuilding" in out and "Caching" in out
    assert rebuilt.filename[-1] == "000009.jpg" and np.load(rebuilt.cache_path).shape == (8, 3, 64, 64)
    x_jpeg, _ = CelebAFaces(celeba_root, "train")[7]
    assert float((rebuilt[7][0] - x_jpeg).abs().max()) <= 1 / 255
    assert abs(float(rebuilt[7][0][:, 2, -3].mean()) * 255 - _background(9)) < 3
    # another image size is another cache file, not a rebuild of this one
    CelebAFaces(celeba_root, "train", image_size=32, cache_dir=cache)
    assert "rebuilding" not in capsys.readouterr().out and (cache / "celeba_train_32px.npy").is_file()


def test_cache_build_with_a_missing_image_fails_cleanly(celeba_root, tmp_path):
    cache = tmp_path / "cache"
    (celeba_root / "celeba" / "img_align_celeba" / "000004.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="000004.jpg is missing"):
        CelebAFaces(celeba_root, "train", cache_dir=cache)
    assert list(cache.iterdir()) == []  # no half-written cache, no temporary file left behind


# --------------------------------------------------------------------------- missing and malformed files


def test_empty_root_says_what_to_put_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CelebAFaces(tmp_path)
    _assert_raised_here(excinfo)
    message = str(excinfo.value)
    for name in list(ANNOTATION_FILES) + ["img_align_celeba/"]:
        assert name in message
    assert "none of its files is there" in message
    assert "└── celeba/" in message  # the layout, as a tree
    assert CELEBA_PAGE in message and "drive.google.com" in message
    assert "unzip" in message and "img_align_celeba.zip" in message and "quota" in message


def test_missing_partition_file_is_named(celeba_root):
    (celeba_root / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as excinfo:
        load_celeba(root=celeba_root)
    _assert_raised_here(excinfo)
    message = str(excinfo.value)
    assert message.splitlines()[0].endswith("missing list_eval_partition.txt.")
    marked = [line for line in message.splitlines() if "MISSING" in line]
    assert len(marked) == 1 and "list_eval_partition.txt" in marked[0]


def test_unextracted_zip_gets_a_hint(celeba_root):
    folder = celeba_root / "celeba"
    for jpeg in (folder / "img_align_celeba").iterdir():
        jpeg.unlink()
    (folder / "img_align_celeba.zip").write_bytes(b"PK")
    with pytest.raises(DatasetNotFoundError, match="img_align_celeba.zip is there but not extracted"):
        CelebAFaces(celeba_root)


def test_missing_images_of_the_split_are_reported(celeba_root):
    (celeba_root / "celeba" / "img_align_celeba" / "000008.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="000008.jpg"):
        CelebAFaces(celeba_root, "train")
    data = CelebAFaces(celeba_root, "all")  # 000008.jpg is neither first nor last: found when read
    with pytest.raises(DatasetNotFoundError, match="000008.jpg is missing"):
        data[7]


@pytest.mark.parametrize(
    "cut, why",
    [
        (lambda text: "\n".join(text.splitlines()[:9]) + "\n", "declares 12 images but it lists 7"),  # whole lines
        (lambda text: text[: len(text) - 60], "line 14 has"),  # mid-line
        (lambda text: text.splitlines()[0] + "\n", "ends before its two header lines"),
    ],
)
def test_truncated_attribute_file_is_named(celeba_root, cut, why):
    path = celeba_root / "celeba" / "list_attr_celeba.txt"
    path.write_text(cut(path.read_text()))
    with pytest.raises(ValueError) as excinfo:
        CelebAFaces(celeba_root)
    assert type(excinfo.value) is ValueError
    _assert_raised_here(excinfo)
    assert "list_attr_celeba.txt is malformed" in str(excinfo.value) and why in str(excinfo.value)


@pytest.mark.parametrize(
    "name, old, new, why",
    [
        ("list_attr_celeba.txt", f"000005.jpg {_attribute_rows()[5][0]:>2}", "000005.jpg  0", "must be -1 or 1"),
        ("list_attr_celeba.txt", "Eyeglasses", "Glasses", "should name CelebA's 40 attributes"),
        ("list_eval_partition.txt", "000005.jpg 0", "000005.jpg 3", "partition values must be 0"),
        ("list_bbox_celeba.txt", "000005.jpg    95", "000005.jpg    x5", "line 7 holds something other than integers"),
        ("list_landmarks_align_celeba.txt", "12\n", "", "first line should be the number of images"),
    ],
)
def test_malformed_values_are_named(celeba_root, name, old, new, why):
    path = celeba_root / "celeba" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError) as excinfo:
        CelebAFaces(celeba_root)
    _assert_raised_here(excinfo)
    assert f"{name} is malformed" in str(excinfo.value) and why in str(excinfo.value)


def test_annotation_files_must_list_the_same_images(celeba_root):
    path = celeba_root / "celeba" / "identity_CelebA.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    with pytest.raises(ValueError, match="identity_CelebA.txt is malformed.*lists 11 images but list_eval_partition"):
        CelebAFaces(celeba_root)


def test_verify_checksums_names_the_files_that_differ(celeba_root):
    with pytest.raises(ValueError) as excinfo:
        CelebAFaces(celeba_root, verify_checksums=True)
    assert "md5" in str(excinfo.value)
    for name in ANNOTATION_FILES:  # none of the fixture's files is the official one
        assert name in str(excinfo.value)


# --------------------------------------------------------------------------- loaders


def test_load_celeba_in_memory(celeba_root):
    data = load_celeba_in_memory(subset="Eye", root=celeba_root)
    assert isinstance(data, FaceImages) and data.name == "CelebA"
    assert data.x_train.shape == (8, 3, 64, 64) and data.x_test.shape == (2, 3, 64, 64)
    assert data.attributes_train.shape == (8, 42) and data.attribute_names == ATTRIBUTE_NAMES
    assert data.labels("Eye").tolist() == [_hand(int(n[:6]), "Eyeglasses") for n in TRAIN]
    assert data.labels("Facial", "test").tolist() == [1, 0]
    assert str(celeba_root / "celeba") in data.source and "crop" in data.source
    x, y = data.split("EyeFacial", "test")
    assert y.shape == (2, 2) and torch.equal(x, data.x_test)

    small = load_celeba_in_memory(subset="Eye", root=celeba_root, negatives_per_positive=1, limit=3, image_size=32)
    assert small.x_train.shape == (3, 3, 32, 32) and small.x_test.shape == (2, 3, 32, 32)
    assert small.labels("Eye").tolist() == [1, 0, 0]  # 000001 (glasses), then the first negatives 000002, 000003
    assert "first 3 per split" in small.source


def test_default_root_and_dataloader(celeba_root, monkeypatch):
    monkeypatch.setenv("LATENTLAB_DATA", str(celeba_root))
    data = load_celeba(subset="EyeFacial", split="train")
    loader = torch.utils.data.DataLoader(data, batch_size=3, shuffle=False, num_workers=0)
    batches = list(loader)
    assert [len(x) for x, _ in batches] == [3, 3, 2]
    x, y = batches[0]
    assert x.shape == (3, 3, 64, 64) and y.shape == (3, 2) and y.dtype == torch.long
