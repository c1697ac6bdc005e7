"""Wrong shapes, dtypes and labels give ValueErrors that name the problem and the fix."""

import pytest
import torch

from latentlab import VAE
from latentlab.checks import check_labels
from latentlab.nets import ConvEncoder, MLPDecoder, MLPEncoder


def test_wrong_feature_shape():
    enc = MLPEncoder(4, 2)
    with pytest.raises(ValueError, match=r"shape \(batch, 4\), got \(3, 5\)"):
        enc(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        enc(torch.zeros(4))


def test_wrong_image_shape_and_missing_channel():
    enc = ConvEncoder(28, 1, 4)
    with pytest.raises(ValueError, match=r"unsqueeze\(1\)"):
        enc(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match=r"\(batch, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        enc(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="28 or 32 px"):
        ConvEncoder(64, 3, 4)


def test_wrong_dtype():
    enc = ConvEncoder(28, 1, 4)
    with pytest.raises(ValueError, match=r"dtype torch.uint8.*float\(\) / 255"):
        enc(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        VAE(MLPEncoder(2, 1), MLPDecoder(1, 2)).loss_terms(([[0.0, 1.0]],))


def test_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        MLPEncoder(3, 1)(torch.zeros(0, 3))


def test_condition_mismatch():
    enc = MLPEncoder(3, 1, condition_dim=2)
    with pytest.raises(ValueError, match="expects a condition of width 2"):
        enc(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="4 rows but the batch has 5"):
        enc(torch.zeros(5, 3), torch.zeros(4, 2))


def test_labels_outside_the_expected_set():
    with pytest.raises(ValueError, match=r"class indices in 0\.\.1, got \[-1, 2\].*\(y \+ 1\) // 2"):
        check_labels(torch.tensor([0, 1, -1, 2]), num_classes=2)
    with pytest.raises(ValueError, match="non-integer"):
        check_labels(torch.tensor([0.0, 0.5]), num_classes=2)
    with pytest.raises(ValueError, match="3 labels but the batch has 4"):
        check_labels(torch.tensor([0, 1, 1]), num_classes=2, batch_size=4)
    assert check_labels(torch.tensor([[1.0], [0.0]]), num_classes=2).tolist() == [1, 0]
