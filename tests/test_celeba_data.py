"""CelebA read from tiny copies written in the real on-disk formats (the official text files, Kaggle's
.csv files): torchvision's parsing and official split, IntroVAC's preprocessing (checked with a marker
at a known place), derived attributes, subsets, balance, the preprocessed cache, partial copies, and
what the user sees when files are missing or malformed."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab.data import celeba
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
from latentlab.data import DatasetNotFoundError

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


def _write_kaggle(folder) -> None:
    """The same images and labels as Kaggle's copy has them: .csv files, images one folder deeper, no identities."""
    images = folder / "img_align_celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    for i in ROWS:
        _write_image(images / _name(i), i)
    attributes = _attribute_rows()
    lines = ["image_id," + ",".join(CELEBA_ATTRIBUTES)]
    lines += [_name(i) + "".join(f",{v}" for v in attributes[i]) for i in ROWS]
    (folder / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
    lines = ["image_id,partition"] + [f"{_name(i)},{row[0]}" for i, row in ROWS.items()]
    (folder / "list_eval_partition.csv").write_text("\n".join(lines) + "\n")
    # Kaggle's box and landmark files, which face editing does not read
    lines = ["image_id,x_1,y_1,width,height"] + [f"{_name(i)},95,71,226,313" for i in ROWS]
    (folder / "list_bbox_celeba.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def celeba_root(tmp_path):
    root = tmp_path / "data"
    _write_celeba(root / "celeba")
    return root


@pytest.fixture
def kaggle_root(tmp_path):
    root = tmp_path / "kaggle"
    _write_kaggle(root / "celeba")
    return root


def _drop_lines(path, *names) -> None:
    """Remove the rows of these images from an annotation file (a trimmed or partial copy)."""
    lines = path.read_text().splitlines()
    kept = [line for line in lines if not line.startswith(tuple(names))]
    assert len(kept) == len(lines) - len(names)
    path.write_text("\n".join(kept) + "\n")


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


def test_copy_summary_counts_labelled_photographs_and_identities(celeba_root, kaggle_root):
    """The launch note says how much of CelebA ran: photographs with labels and a JPEG, and whose they are."""
    from latentlab.data.celeba import read_celeba

    assert read_celeba(celeba_root).summary() == "12 labelled photographs of 12 identities, a part of CelebA's 202,599"
    assert read_celeba(kaggle_root).summary() == "12 labelled photographs, a part of CelebA's 202,599"  # no identities
    copy = read_celeba(celeba_root)
    for name in ("000003.jpg", "000010.jpg"):
        (copy.image_dir / name).unlink()
    assert read_celeba(celeba_root).summary() == "10 labelled photographs of 10 identities, a part of CelebA's 202,599"
    faces = load_celeba_in_memory(None, image_size=32, root=celeba_root)
    assert "(10 labelled photographs of 10 identities, a part of CelebA's 202,599; official train/test split" in faces.source


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


def test_cache_build_with_an_unreadable_image_fails_cleanly(celeba_root, tmp_path):
    cache = tmp_path / "cache"
    (celeba_root / "celeba" / "img_align_celeba" / "000004.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="000004.jpg is not a readable image"):
        CelebAFaces(celeba_root, "train", cache_dir=cache)
    assert list(cache.iterdir()) == []  # no half-written cache, no temporary file left behind


def test_cache_of_a_partial_copy_is_rebuilt_when_images_arrive(celeba_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    jpeg = celeba_root / "celeba" / "img_align_celeba" / "000005.jpg"
    kept = jpeg.read_bytes()
    jpeg.unlink()
    partial = CelebAFaces(celeba_root, "train", cache_dir=cache)
    assert "000005.jpg" not in partial.filename and np.load(partial.cache_path).shape[0] == 7
    jpeg.write_bytes(kept)  # the rest of the download arrives
    capsys.readouterr()
    full = CelebAFaces(celeba_root, "train", cache_dir=cache)
    assert "is stale (it holds 7 images, the split has 8)" in capsys.readouterr().out
    assert full.filename == TRAIN and np.load(full.cache_path).shape[0] == 8
    assert abs(float(full[4][0][:, 2, -3].mean()) * 255 - _background(5)) < 3


# --------------------------------------------------------------------------- layouts and partial copies


def test_only_the_files_face_editing_reads_are_needed(celeba_root):
    folder = celeba_root / "celeba"
    expected = CelebAFaces(celeba_root, "all")
    for name in ("list_bbox_celeba.txt", "list_landmarks_align_celeba.txt", "identity_CelebA.txt"):
        (folder / name).unlink()
    data = CelebAFaces(celeba_root, "all")
    assert data.filename == expected.filename and torch.equal(data.attributes, expected.attributes)
    assert data.identity is None and expected.identity.tolist() == [2880 + i for i in ROWS]
    assert data.coverage == "" and "partial" not in data.describe()


def test_kaggle_layout_gives_the_text_layouts_dataset(celeba_root, kaggle_root, capsys):
    for split in ("train", "valid", "test", "all"):
        text, kaggle = CelebAFaces(celeba_root, split), CelebAFaces(kaggle_root, split)
        assert kaggle.filename == text.filename and len(kaggle) > 0
        assert torch.equal(kaggle.attr, text.attr) and torch.equal(kaggle.attributes, text.attributes)
        for index in range(len(text)):
            assert torch.equal(kaggle[index][0], text[index][0])
    kaggle = CelebAFaces(kaggle_root, "train", subset="Eye", negatives_per_positive=1)
    assert kaggle.image_dir == kaggle_root / "celeba" / "img_align_celeba" / "img_align_celeba"
    assert kaggle.annotation_files["list_attr_celeba.txt"].name == "list_attr_celeba.csv"
    assert kaggle.identity is None  # Kaggle has no identity file
    assert kaggle.labels.tolist() == [_hand(int(n[:6]), "Eyeglasses") for n in kaggle.filename]
    assert "annotations from Kaggle's .csv files" in kaggle.describe()
    assert capsys.readouterr().out == ""  # a complete copy loads without a word


def test_text_file_is_read_before_a_csv(celeba_root):
    (celeba_root / "celeba" / "list_attr_celeba.csv").write_text("not,Kaggle's\n")
    data = CelebAFaces(celeba_root, "test")
    assert data.annotation_files["list_attr_celeba.txt"].suffix == ".txt" and len(data) == 2


def test_mixed_layout_reads_each_file_where_it_is(celeba_root, kaggle_root):
    folder = celeba_root / "celeba"
    (folder / "list_eval_partition.txt").unlink()
    (folder / "list_eval_partition.csv").write_bytes((kaggle_root / "celeba" / "list_eval_partition.csv").read_bytes())
    data = CelebAFaces(celeba_root, "train")
    assert data.filename == TRAIN
    assert "list_attr_celeba.txt, list_eval_partition.csv" in data.describe()


@pytest.mark.parametrize("layout", ["text", "kaggle"])
def test_partial_copy_rows_without_images(celeba_root, kaggle_root, layout, capsys):
    root = celeba_root if layout == "text" else kaggle_root
    data = CelebAFaces(root, "all")
    for name in ("000003.jpg", "000010.jpg"):  # one train image, one valid image: never downloaded
        (data.image_dir / name).unlink()
    capsys.readouterr()
    train = CelebAFaces(root, "train")
    assert train.filename == [n for n in TRAIN if n != "000003.jpg"] and train.split_size == 7
    said = "partial copy: 7 of the 8 labelled images of the split have a JPEG in"
    assert said in capsys.readouterr().out and said in train.describe() and "(1 left out)" in train.coverage
    for index, name in enumerate(train.filename):  # the rows stay paired with their images
        x, label = train[index]
        assert abs(float(x[:, 2, -3].mean()) * 255 - _background(int(name[:6]))) < 3
        assert torch.equal(label[:40], torch.tensor([(v + 1) // 2 for v in _attribute_rows()[int(name[:6])]]))
    assert CelebAFaces(root, "valid").filename == ["000009.jpg"]
    assert CelebAFaces(root, "test").coverage == ""  # the test split is complete


@pytest.mark.parametrize("layout", ["text", "kaggle"])
def test_partial_copy_images_without_rows(celeba_root, kaggle_root, layout, capsys):
    root = celeba_root if layout == "text" else kaggle_root
    folder = root / "celeba"
    image_dir = CelebAFaces(root, "all").image_dir
    _write_image(image_dir / "000013.jpg", 13)  # an image with no row anywhere
    suffix = ".txt" if layout == "text" else ".csv"
    attributes = folder / f"list_attr_celeba{suffix}"
    _drop_lines(attributes, "000012.jpg")  # a row the partition file has but the attribute file lacks
    if layout == "text":  # the official file declares its row count
        attributes.write_text(attributes.read_text().replace("12\n", "11\n", 1))
    capsys.readouterr()
    test = CelebAFaces(root, "test")
    out = capsys.readouterr().out
    assert test.filename == ["000011.jpg"]  # 000012.jpg has no labels, 000013.jpg no labels nor split
    assert f"2 images in {image_dir.relative_to(folder).as_posix()}/ lack a row" in out
    assert f"1 images of list_eval_partition{suffix} have no row in list_attr_celeba{suffix} (no labels)" in out
    assert "000013.jpg" not in CelebAFaces(root, "all").filename


def test_trimmed_annotations_of_a_sample(celeba_root, capsys):
    """A sample copy: every file lists only its images (the partition file keeps rows it has no attributes for)."""
    folder = celeba_root / "celeba"
    _drop_lines(folder / "list_attr_celeba.txt", "000002.jpg", "000011.jpg")
    attributes = folder / "list_attr_celeba.txt"
    attributes.write_text(attributes.read_text().replace("12\n", "10\n", 1))
    for name in ("000002.jpg", "000011.jpg"):
        (folder / "img_align_celeba" / name).unlink()
    data = CelebAFaces(celeba_root, "all")
    assert data.filename == [_name(i) for i in ROWS if i not in (2, 11)]
    assert "2 images of list_eval_partition.txt have no row in list_attr_celeba.txt" in data.describe()
    expected = torch.tensor([[(v + 1) // 2 for v in _attribute_rows()[int(n[:6])]] for n in data.filename])
    assert torch.equal(data.attr, expected)


def test_rows_are_paired_by_image_name(celeba_root):
    """torchvision pairs the files' rows by position; a copy whose files differ in order must still pair by name."""
    path = celeba_root / "celeba" / "list_attr_celeba.txt"
    count, header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([count, header, *reversed(rows)]) + "\n")
    data = CelebAFaces(celeba_root, "all")
    assert data.filename == [_name(i) for i in ROWS]  # list_eval_partition's order
    expected = torch.tensor([[(v + 1) // 2 for v in _attribute_rows()[i]] for i in ROWS])
    assert torch.equal(data.attr, expected)


def test_empty_split_is_an_error_not_an_empty_dataset(celeba_root):
    for name in ("000011.jpg", "000012.jpg"):
        (celeba_root / "celeba" / "img_align_celeba" / name).unlink()
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CelebAFaces(celeba_root, "test")
    _assert_raised_here(excinfo)
    message = str(excinfo.value)
    assert "test split is empty" in message and "none of its 2 labelled images has a JPEG" in message
    assert "8 train, 2 valid, 0 test" in message
    assert len(CelebAFaces(celeba_root, "train")) == 8


def test_images_not_named_as_celeba_are_refused(celeba_root):
    image_dir = celeba_root / "celeba" / "img_align_celeba"
    for jpeg in sorted(image_dir.iterdir()):
        jpeg.rename(image_dir / f"face_{jpeg.name}")
    with pytest.raises(DatasetNotFoundError, match="None of the 12 images in .* is listed"):
        CelebAFaces(celeba_root)


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


def test_image_gone_after_opening_is_named(celeba_root):
    data = CelebAFaces(celeba_root, "all")
    (celeba_root / "celeba" / "img_align_celeba" / "000008.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="000008.jpg is missing") as excinfo:
        data[7]
    _assert_raised_here(excinfo)


def test_unreadable_image_is_named(celeba_root):
    (celeba_root / "celeba" / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8 cut short")
    data = CelebAFaces(celeba_root, "train")
    with pytest.raises(ValueError, match="000003.jpg is not a readable image") as excinfo:
        data[2]
    _assert_raised_here(excinfo)
    assert "Extract it again" in str(excinfo.value)


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
    "layout, name, old, new, why",
    [
        ("celeba_root", "list_attr_celeba.txt", f"000005.jpg {_attribute_rows()[5][0]:>2}", "000005.jpg  0", "must be -1 or 1"),
        ("celeba_root", "list_attr_celeba.txt", "Eyeglasses", "Glasses", "should name CelebA's 40 attributes"),
        ("celeba_root", "list_eval_partition.txt", "000005.jpg 0", "000005.jpg 3", "partition values must be 0"),
        ("celeba_root", "list_attr_celeba.txt", "12\n", "", "first line should be the number of images"),
        ("celeba_root", "list_eval_partition.txt", "000007.jpg 0", "000007.jpg O", "line 7 holds something other than integers"),
        ("celeba_root", "list_eval_partition.txt", "000007.jpg 0", "000005.jpg 0", "it lists 000005.jpg more than once"),
        ("celeba_root", "identity_CelebA.txt", "000005.jpg 2885", "000005.jpg 2885 7", "line 5 has 3 fields"),
        ("kaggle_root", "list_attr_celeba.csv", "image_id,5_o_Clock_Shadow", "image,5_o_Clock_Shadow", "should be Kaggle's header"),
        ("kaggle_root", "list_attr_celeba.csv", "000004.jpg,", "000004.jpg;", "line 5 has 40 fields, expected an image"),
        ("kaggle_root", "list_attr_celeba.csv", "000004.jpg,", "000004.jpg,0,", "line 5 has 42 fields"),
        ("kaggle_root", "list_eval_partition.csv", "000009.jpg,1", "000009.jpg,5", "partition values must be 0"),
        ("kaggle_root", "list_eval_partition.csv", "000009.jpg,1", "000009.jpg,one", "line 10 holds something other than integers"),
    ],
)
def test_malformed_files_are_named(request, layout, name, old, new, why):
    """In both layouts a malformed annotation file is named, with what is wrong (and, for Kaggle's, its source)."""
    root = request.getfixturevalue(layout)
    path = root / "celeba" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError) as excinfo:
        CelebAFaces(root)
    _assert_raised_here(excinfo)
    message = str(excinfo.value)
    assert f"{name} is malformed" in message and why in message
    assert ("kaggle.com" in message) == name.endswith(".csv")

def test_identity_file_must_cover_the_labelled_images(celeba_root):
    path = celeba_root / "celeba" / "identity_CelebA.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    with pytest.raises(ValueError, match="identity_CelebA.txt is malformed.*no row for 1 of the 12 labelled") as e:
        CelebAFaces(celeba_root)
    assert "000012.jpg" in str(e.value) and "delete the file" in str(e.value)  # identities are optional


def test_missing_kaggle_file_is_named_as_kaggle_names_it(kaggle_root):
    (kaggle_root / "celeba" / "list_eval_partition.csv").unlink()
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CelebAFaces(kaggle_root)
    message = str(excinfo.value)
    assert message.splitlines()[0].endswith("missing list_eval_partition.csv.")
    assert "kaggle.com" in message and "img_align_celeba/img_align_celeba/" in message





def test_truncated_kaggle_file_mid_line_is_named(kaggle_root):
    path = kaggle_root / "celeba" / "list_attr_celeba.csv"
    path.write_text(path.read_text()[:-30])
    with pytest.raises(ValueError, match="list_attr_celeba.csv is malformed .*line 13 has"):
        CelebAFaces(kaggle_root)


def test_verify_checksums_refuses_kaggle_files(kaggle_root):
    with pytest.raises(ValueError, match="cannot be verified") as excinfo:
        CelebAFaces(kaggle_root, verify_checksums=True)
    assert "list_attr_celeba.csv" in str(excinfo.value) and "verify_checksums=False" in str(excinfo.value)
    assert len(CelebAFaces(kaggle_root, "test")) == 2  # without it, the same copy loads


def test_files_unzipped_in_the_data_root_get_a_hint(tmp_path):
    _write_kaggle(tmp_path / "data")  # Kaggle's archive unzipped in data/ rather than data/celeba/
    with pytest.raises(DatasetNotFoundError, match="are in .*data itself: move them into"):
        CelebAFaces(tmp_path / "data")


def test_verify_checksums_names_the_files_that_differ(celeba_root):
    with pytest.raises(ValueError) as excinfo:
        CelebAFaces(celeba_root, verify_checksums=True)
    assert "md5" in str(excinfo.value) and "partial copy" in str(excinfo.value)
    for name in ANNOTATION_FILES:  # none of the fixture's files is the official one
        assert name in str(excinfo.value)


def test_verify_checksums_compares_the_files_read(celeba_root, monkeypatch):
    folder = celeba_root / "celeba"
    for name, spec in ANNOTATION_FILES.items():  # pretend the fixture's files are the official release
        md5 = hashlib.md5((folder / name).read_bytes()).hexdigest()
        monkeypatch.setitem(celeba.ANNOTATION_FILES, name, spec._replace(md5=md5))
    assert len(CelebAFaces(celeba_root, "test", verify_checksums=True)) == 2
    (folder / "identity_CelebA.txt").unlink()  # optional: not read, so not checked
    assert len(CelebAFaces(celeba_root, "test", verify_checksums=True)) == 2
    partition = folder / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace("000012.jpg 2", "000012.jpg 1"))
    with pytest.raises(ValueError, match="md5") as excinfo:
        CelebAFaces(celeba_root, "test", verify_checksums=True)
    assert "list_eval_partition.txt" in str(excinfo.value) and "list_attr_celeba.txt" not in str(excinfo.value)


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
