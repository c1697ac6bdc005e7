"""Digit images and semi-supervised labels: MNIST read from real idx files, the offline digits, the
fallback that says so, and label masks with exact, stratified, seeded counts."""

import gzip
from pathlib import Path
import struct
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentlab.data import UNLABELLED, DatasetNotFoundError, label_split, semi_supervised
from latentlab.data.mnist import (
    MNIST_FILES,
    MNIST_MIRROR,
    DigitImages,
    load_digits,
    load_handwritten_digits,
    load_mnist,
)

N_TRAIN, N_TEST = 50, 20


def _fake_images(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct 28x28 uint8 images whose pattern depends on the label (labels cycle 0..9)."""
    labels = (np.arange(n) % 10).astype(np.uint8)
    grid = np.arange(28 * 28).reshape(28, 28)
    images = np.stack([(grid * (int(c) + 1) + 3 * (i + offset)) % 256 for i, c in enumerate(labels)]).astype(np.uint8)
    return images, labels


def _write_idx(path, array: np.ndarray) -> None:
    """The idx format MNIST ships in: big-endian magic 2051 (images, dims N,28,28) or 2049 (labels), then uint8."""
    magic = 2051 if array.ndim == 3 else 2049
    path.write_bytes(struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes())


@pytest.fixture
def fake_mnist(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n, offset in (("train", N_TRAIN, 0), ("t10k", N_TEST, 1000)):
        images, labels = _fake_images(n, offset)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = images, labels
    return tmp_path, arrays


# --------------------------------------------------------------------------- load_mnist


def test_load_mnist_reads_the_idx_files_exactly(fake_mnist):
    root, arrays = fake_mnist
    data = load_mnist(root, download=False)
    assert isinstance(data, DigitImages) and data.name == "MNIST" and data.num_classes == 10
    assert data.x_train.shape == (N_TRAIN, 1, 28, 28) and data.x_test.shape == (N_TEST, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.long
    assert data.image_shape == (1, 28, 28)
    for (x, y), prefix in ((data.train, "train"), (data.test, "t10k")):
        images, labels = arrays[prefix]
        assert torch.equal(x[:, 0], torch.as_tensor(images).float() / 255)
        assert torch.equal(y, torch.as_tensor(labels).long())
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert data.source == str(root / "MNIST" / "raw")
    assert data.describe() == f"MNIST from {root / 'MNIST' / 'raw'}: 50 train / 20 test images (1x28x28, 10 classes)"
    assert "tensor" not in repr(data) and len(repr(data)) < 200


def test_mnist_subsets_are_seeded_and_keep_the_class_proportions(fake_mnist):
    root, _ = fake_mnist
    full = load_mnist(root, download=False)
    sub = load_mnist(root, download=False, train_size=20, test_size=10, seed=3)
    assert sub.x_train.shape == (20, 1, 28, 28) and sub.x_test.shape == (10, 1, 28, 28)
    assert sub.y_train.bincount(minlength=10).tolist() == [2] * 10
    assert sub.y_test.bincount(minlength=10).tolist() == [1] * 10
    # every chosen image is an image of the full set, with its own label
    match = (sub.x_train.flatten(1)[:, None] == full.x_train.flatten(1)[None]).all(-1)
    assert match.sum(1).tolist() == [1] * 20
    assert torch.equal(full.y_train[match.float().argmax(1)], sub.y_train)
    again = load_mnist(root, download=False, train_size=20, test_size=10, seed=3)
    other = load_mnist(root, download=False, train_size=20, test_size=10, seed=4)
    assert torch.equal(sub.x_train, again.x_train) and torch.equal(sub.x_test, again.x_test)
    assert not torch.equal(sub.x_train, other.x_train)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"train_size": 51}, "train_size=51 but only 50 images"),
        ({"test_size": 21}, "test_size=21 but only 20 images"),
        ({"train_size": 0}, "train_size must be a positive int"),
        ({"test_size": -3}, "test_size must be a positive int"),
        ({"train_size": True}, "train_size must be a positive int"),
        ({"train_size": 10.0}, "train_size must be a positive int"),
    ],
)
def test_bad_subset_sizes(fake_mnist, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_mnist(fake_mnist[0], download=False, **kwargs)


def test_missing_mnist_says_which_files_go_where_and_how_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message and f"{name}.gz" in message for name in MNIST_FILES)
    assert MNIST_MIRROR in message and "uncompressed or as its official .gz" in message
    assert "download=False" in message and "load_handwritten_digits()" in message


def test_one_missing_file_is_named(fake_mnist):
    root, _ = fake_mnist
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte missing") as info:
        load_mnist(root, download=False)
    assert "train-images" not in str(info.value).splitlines()[0]


def test_the_official_gz_files_are_read_as_they_are(fake_mnist):
    """A copy of only the four .gz files (as MNIST ships) loads, equal to the uncompressed one."""
    root, _ = fake_mnist
    raw = root / "MNIST" / "raw"
    plain = load_mnist(root, download=False)
    for name in MNIST_FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    packed = load_mnist(root, download=False)
    for a, b in zip((plain.x_train, plain.y_train, plain.x_test, plain.y_test),
                    (packed.x_train, packed.y_train, packed.x_test, packed.y_test)):
        assert torch.equal(a, b)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"an idx file cut short")[:10])
    with pytest.raises(ValueError, match="could not read t10k-images-idx3-ubyte.gz in .*not a readable gzip file"):
        load_mnist(root, download=False)


def test_only_the_test_split_needs_only_its_two_files(fake_mnist):
    root, arrays = fake_mnist
    raw = root / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).unlink()
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte, train-labels-idx1-ubyte missing"):
        load_mnist(root, download=False)
    data = load_mnist(root, download=False, splits=("test",), test_size=10)
    assert data.x_train.shape == (0, 1, 28, 28) and len(data.y_train) == 0 and len(data.x_test) == 10
    assert data.y_test.bincount(minlength=10).tolist() == [1] * 10
    (raw / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte missing") as info:
        load_mnist(root, download=False, splits=("test",))
    assert "train-" not in str(info.value).splitlines()[0]  # only what the split needs is asked for
    for bad in ("test", (), ("valid",)):
        with pytest.raises(ValueError, match="splits must be a tuple of"):
            load_mnist(root, download=False, splits=bad)


def test_a_failed_download_is_quiet_and_explained(tmp_path, monkeypatch, capsys):
    import torchvision

    def failing_download(self):
        print("Downloading https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz")
        print("  0%|          | 0/9912422", file=sys.stderr)
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried mirror, got:\n<urlopen error no DNS>\n"
        )

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", failing_download)
    with pytest.raises(DatasetNotFoundError, match=r"the download failed \(<urlopen error no DNS>\)"):
        load_mnist(tmp_path, download=True)
    assert capsys.readouterr() == ("", "")


def test_a_successful_download_is_used(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def fake_download(self):
        calls.append(self.raw_folder)
        raw = tmp_path / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
            images, labels = _fake_images(n, 0)
            _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_download)
    data = load_mnist(tmp_path, download=True)
    assert len(calls) == 1 and len(data.x_train) == N_TRAIN and len(data.x_test) == N_TEST
    load_mnist(tmp_path, download=True)
    assert len(calls) == 1  # present files are not downloaded again


def test_a_truncated_images_file_is_named_with_the_fix(fake_mnist):
    root, _ = fake_mnist
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        ValueError, match="could not read train-images-idx3-ubyte in .*promises 39200 bytes .* it holds 39100.*delete it and fetch it again"
    ) as info:
        load_mnist(root, download=False)
    assert "train-labels-idx1-ubyte" not in str(info.value)  # the good labels file is not blamed
    assert info.value.__cause__ is not None


def test_a_garbled_labels_file_is_named(fake_mnist):
    root, _ = fake_mnist
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="could not read t10k-labels-idx1-ubyte in") as info:
        load_mnist(root, download=False)
    assert "t10k-images" not in str(info.value)


def test_images_and_labels_of_different_lengths_are_explained(fake_mnist):
    root, _ = fake_mnist
    _write_idx(root / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(49, dtype=np.uint8))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte has 50 images but train-labels-idx1-ubyte has 49"):
        load_mnist(root, download=False)


# --------------------------------------------------------------------------- scikit-learn digits


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


def test_digits_shapes_range_and_stratified_split(digits):
    assert digits.x_train.shape[1:] == (1, 28, 28) and digits.x_test.shape[1:] == (1, 28, 28)
    assert len(digits.x_train) + len(digits.x_test) == 1797 and len(digits.x_test) == round(1797 * 0.2)
    assert digits.x_train.dtype == torch.float32 and digits.y_test.dtype == torch.long
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0 and digits.x_train.max() > 0.9
    assert set(digits.y_train.tolist()) == set(range(10)) and set(digits.y_test.tolist()) == set(range(10))
    per_class = digits.y_test.bincount(minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37  # a fifth of each class (174..183 images)
    assert digits.name == "scikit-learn digits (8x8, resized to 28x28)" and "load_digits" in digits.source
    assert load_digits(image_size=16, seed=0).x_test.shape[1:] == (1, 16, 16)


def test_digits_are_seeded(digits):
    again, other = load_digits(seed=0), load_digits(seed=1)
    assert torch.equal(digits.x_train, again.x_train) and torch.equal(digits.y_test, again.y_test)
    assert not torch.equal(digits.y_test, other.y_test)


def test_the_resize_keeps_each_digit(digits):
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    original = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16
    x = torch.cat([digits.x_train, digits.x_test])
    y = torch.cat([digits.y_train, digits.y_test])
    # the documented transform, applied to every image alike: which original each loaded image came from
    resized = F.interpolate(original, size=(28, 28), mode="bilinear", align_corners=False)
    distance, source = torch.cdist(x.flatten(1), resized.flatten(1), compute_mode="donot_use_mm_for_euclid_dist").min(1)
    assert distance.max() < 1e-4
    assert source.unique().numel() == 1797  # train and test together hold every digit exactly once
    assert torch.equal(torch.as_tensor(raw.target)[source].long(), y)  # with its own label
    # shrunk back to 8x8, each image still looks like its original
    pooled = F.adaptive_avg_pool2d(x, 8).flatten(1)
    own = original[source].flatten(1)
    a, b = pooled - pooled.mean(1, keepdim=True), own - own.mean(1, keepdim=True)
    correlation = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert correlation.min() > 0.9 and correlation.mean() > 0.95  # the bilinear resize blurs a little


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"test_fraction": 0.0}, "test_fraction must lie strictly between 0 and 1"),
        ({"test_fraction": 1.0}, "test_fraction must lie strictly between 0 and 1"),
        ({"test_fraction": 0.0001}, "leaves an empty split"),
        ({"image_size": 0}, "image_size must be a positive int"),
    ],
)
def test_bad_digits_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_digits(**kwargs)


# --------------------------------------------------------------------------- load_handwritten_digits


def test_auto_falls_back_to_the_digits_and_says_so(tmp_path, capsys, monkeypatch):
    data = load_handwritten_digits("auto", root=tmp_path, download=False)
    assert data.name.startswith("scikit-learn digits") and len(data.x_train) == 1797 - 359
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith(f"MNIST is not in {tmp_path / 'MNIST' / 'raw'} (see data/README.md")
    assert "using the scikit-learn digits instead" in out
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path / "data"))  # the default root: shown as data/MNIST/raw
    load_handwritten_digits("auto", download=False)
    assert capsys.readouterr().out.startswith(f"MNIST is not in {Path('data') / 'MNIST' / 'raw'} (")


def test_auto_takes_mnist_when_it_is_there_and_prints_nothing(fake_mnist, capsys):
    data = load_handwritten_digits(root=fake_mnist[0], download=False, train_size=10)
    assert data.name == "MNIST" and len(data.x_train) == 10
    assert capsys.readouterr().out == ""


def test_auto_does_not_hide_a_corrupt_mnist(fake_mnist):
    root, _ = fake_mnist
    (root / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"junk")
    with pytest.raises(ValueError, match="could not read train-images-idx3-ubyte"):
        load_handwritten_digits(root=root, download=False)


def test_explicit_sources(tmp_path, capsys):
    with pytest.raises(DatasetNotFoundError, match="MNIST is not in"):
        load_handwritten_digits("mnist", root=tmp_path, download=False)
    assert load_handwritten_digits("digits", root=tmp_path).name.startswith("scikit-learn digits")
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="source must be one of 'auto', 'mnist', 'digits', got 'emnist'"):
        load_handwritten_digits("emnist")
    with pytest.raises(ValueError, match="train_size must be a positive int"):
        load_handwritten_digits("digits", train_size=0)


# --------------------------------------------------------------------------- label_split

BALANCED = torch.arange(1000) % 10
UNEVEN = torch.cat([torch.full((n,), c) for c, n in enumerate([50, 80, 120, 30, 100, 60, 90, 70, 200, 200])])


def test_a_count_is_spread_evenly_over_the_classes():
    mask = label_split(BALANCED, 100)
    assert mask.dtype == torch.bool and mask.shape == (1000,) and int(mask.sum()) == 100
    assert BALANCED[mask].bincount(minlength=10).tolist() == [10] * 10
    mask = label_split(UNEVEN, 105, seed=2)
    per_class = UNEVEN[mask].bincount(minlength=10)
    assert int(mask.sum()) == 105 and sorted(per_class.tolist()) == [10] * 5 + [11] * 5


def test_same_seed_same_mask_other_seed_other_mask():
    assert torch.equal(label_split(BALANCED, 100, seed=1), label_split(BALANCED, 100, seed=1))
    assert not torch.equal(label_split(BALANCED, 100, seed=1), label_split(BALANCED, 100, seed=2))
    assert not torch.equal(label_split(UNEVEN, 15, seed=0), label_split(UNEVEN, 15, seed=1))


def test_a_fraction_labels_that_fraction_of_each_class():
    mask = label_split(UNEVEN, 0.1)
    assert int(mask.sum()) == 100
    assert UNEVEN[mask].bincount(minlength=10).tolist() == [5, 8, 12, 3, 10, 6, 9, 7, 20, 20]
    assert int(label_split(UNEVEN, 0.25).sum()) == 250


@pytest.mark.parametrize("everything", [None, "all", 1.0])
def test_all_labels(everything):
    assert label_split(UNEVEN, everything).all()


def test_num_classes_counts_classes_that_have_no_examples():
    y = torch.tensor([0, 1, 3] * 10)
    assert int(label_split(y, 6).sum()) == 6  # the three present classes, 2 each
    with pytest.raises(ValueError, match="class 2 has only 0 examples"):
        label_split(y, 8, num_classes=4)
    with pytest.raises(ValueError, match="y holds label 3 but num_classes=3"):
        label_split(y, 6, num_classes=3)


@pytest.mark.parametrize(
    "y,num_labelled,message",
    [
        (BALANCED, 9, "num_labelled=9 is fewer than the 10 classes"),
        (BALANCED, 1001, "num_labelled=1001 but there are only 1000 examples"),
        (UNEVEN, 400, "class 3 has only 30 examples but num_labelled=400 gives each of the 10 classes 40 labels"),
        (BALANCED, 0.0, r"a float num_labelled is a fraction and must lie in \(0, 1\]"),
        (BALANCED, 100.0, r"must lie in \(0, 1\], got 100.0; for a count of labels pass an int"),
        (UNEVEN, 0.01, "num_labelled=0.01 leaves class 0 without a label \\(50 examples\\)"),
        (BALANCED, "some", "num_labelled must be an int count, a float fraction"),
        (BALANCED, True, "num_labelled must be an int count, a float fraction"),
        (BALANCED.float(), 100, "y must be a 1-D integer tensor"),
        (torch.tensor([0, 1, UNLABELLED, 1]), 2, "y holds negative labels"),
    ],
)
def test_label_split_errors(y, num_labelled, message):
    with pytest.raises(ValueError, match=message):
        label_split(y, num_labelled)


def test_uneven_classes_that_cannot_share_the_remainder():
    y = torch.tensor([0, 1] + [2] * 10)
    with pytest.raises(ValueError, match="num_labelled=5 cannot be spread evenly"):
        label_split(y, 5)


# --------------------------------------------------------------------------- semi_supervised


def test_unlabelled_examples_get_minus_one():
    x, y = torch.randn(100, 3), torch.arange(100) % 10
    mask = label_split(y, 10)
    x_out, y_out = semi_supervised(x, y, mask)
    assert x_out is x
    assert (y_out[~mask] == UNLABELLED).all() and torch.equal(y_out[mask], y[mask])
    assert int((y_out != UNLABELLED).sum()) == 10
    assert torch.equal(y, torch.arange(100) % 10)  # the caller's labels are untouched


@pytest.mark.parametrize("share,expected_copies", [(0.5, 80), (0.3, 29), (0.11, 1)])
def test_labelled_examples_are_repeated_to_the_share(share, expected_copies):
    x, y = torch.randn(100, 3), torch.arange(100) % 10
    mask = label_split(y, 10, seed=5)
    x_out, y_out = semi_supervised(x, y, mask, labelled_share=share)
    assert len(x_out) == len(y_out) == 100 + expected_copies
    assert torch.equal(x_out[:100], x)
    labelled = y_out != UNLABELLED
    assert abs(float(labelled.float().mean()) - share) <= 1 / len(y_out)
    assert (y_out[100:] != UNLABELLED).all()
    # every appended row is a labelled example with its own label, and copies are spread evenly
    source = (x_out[100:, None] == x[None]).all(-1).float().argmax(1)
    assert mask[source].all() and torch.equal(y[source], y_out[100:])
    copies = torch.bincount(source, minlength=100)[mask]
    assert copies.max() - copies.min() <= 1 and int(copies.sum()) == expected_copies


def test_no_repetition_when_the_share_is_already_met():
    x, y = torch.randn(100, 3), torch.arange(100) % 10
    mask = torch.arange(100) < 60
    x_out, y_out = semi_supervised(x, y, mask, labelled_share=0.5)
    assert x_out is x and len(y_out) == 100 and int((y_out != UNLABELLED).sum()) == 60


@pytest.mark.parametrize(
    "change,message",
    [
        ({"labelled": (torch.arange(10) < 3).long()}, "labelled must be a bool mask of shape"),
        ({"labelled": torch.ones(9, dtype=torch.bool)}, r"labelled must be a bool mask of shape \(10,\)"),
        ({"labelled": torch.zeros(10, dtype=torch.bool)}, "labelled marks no example"),
        ({"y": torch.zeros(9, dtype=torch.long)}, r"y must hold one label per example: shape \(10,\)"),
        ({"labelled_share": 0.0}, "labelled_share must be a float strictly between 0 and 1"),
        ({"labelled_share": 1.0}, "labelled_share must be a float strictly between 0 and 1"),
        ({"labelled_share": True}, "labelled_share must be a float strictly between 0 and 1"),
    ],
)
def test_semi_supervised_errors(change, message):
    args = {"x": torch.randn(10, 2), "y": torch.arange(10), "labelled": torch.arange(10) < 3, **change}
    share = args.pop("labelled_share", None)
    with pytest.raises(ValueError, match=message):
        semi_supervised(args["x"], args["y"], args["labelled"], labelled_share=share)
