"""Face metrics on hand-made inputs: identity factors, locality, add/remove edit success, FID, the judge's model."""

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from latentlab.evaluation import fid, metrics
from latentlab.models import AttributeClassifier


def test_factor_agreement_by_hand():
    before = torch.tensor([[0.0, 1.0], [1.0, 2.0], [2.0, 0.0], [3.0, 1.0]])
    after = before.clone()
    after[:, 0] += torch.tensor([0.5, -0.5, 0.0, 0.0])
    after[1, 1] = 1.0  # one categorical disagreement
    scores = metrics.factor_agreement(before, after, ["width", "style"], categorical=["style"])
    # R^2 = 1 - 0.5 / 5 for width (mean 1.5, spread 2.25 + 0.25 + 0.25 + 2.25 = 5)
    assert scores["width"] == pytest.approx(1 - 0.5 / 5)
    assert scores["style"] == pytest.approx(0.75)
    assert scores["mean"] == pytest.approx((0.9 + 0.75) / 2)
    assert metrics.factor_agreement(before, before, ["width", "style"], ["style"])["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="factors"):
        metrics.factor_agreement(before, after[:, :1], ["width", "style"])


def test_identity_preservation_uses_the_factor_predictor_on_both_image_sets():
    x = torch.rand(6, 3, 4, 4)
    brighter = (x + 0.2).clamp(0, 1)

    def mean_brightness(images):  # a stand-in "identity" predictor with one factor
        return images.mean(dim=(1, 2, 3))[:, None]

    kept = metrics.identity_preservation(mean_brightness, x, x.clone(), ["tone"])
    changed = metrics.identity_preservation(mean_brightness, x, brighter, ["tone"])
    assert kept["tone"] == pytest.approx(1.0) and changed["tone"] < 0.5
    with pytest.raises(ValueError, match="same shape"):
        metrics.identity_preservation(mean_brightness, x, x[:3], ["tone"])


def test_edit_locality_by_hand():
    x = torch.zeros(2, 3, 4, 4)
    edited = x.clone()
    edited[0, :, 0, 0] = 1.0  # inside the region: 3 units of change
    edited[0, 0, 3, 3] = 1.0  # outside: 1 unit
    edited[1, :, 2, 2] = 0.5  # image 1: all outside
    regions = torch.zeros(2, 4, 4, dtype=torch.bool)
    regions[:, :2, :2] = True
    assert metrics.edit_locality(x, edited, regions) == pytest.approx((0.75 + 0.0) / 2)
    untouched = edited.clone()
    untouched[1] = 0  # an image the edit did not change is skipped, not counted as 0 or 1
    assert metrics.edit_locality(x, untouched, regions) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no pixel"):
        metrics.edit_locality(x, x.clone(), regions)
    with pytest.raises(ValueError, match="regions"):
        metrics.edit_locality(x, edited, regions[:, :2])


def test_attribute_edit_success_names_both_directions():
    x = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    y = torch.tensor([0, 0, 1, 1])

    def edit(x, y, target):  # adds the attribute always, removes it only for the first example
        out = target.float()[:, None].clone()
        if bool((target == 0).all()):
            out[1:] = 1.0
        return out

    scores = metrics.attribute_edit_success(edit, lambda images: (images[:, 0] > 0.5).long(), x, y)
    assert scores == {"add": 1.0, "remove": 0.5}


def _channel_means(images):
    return images.mean(dim=(2, 3))


def _fid_by_hand(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_frechet_distance_matches_the_formula_on_custom_features():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(64, 3, 8, 8, generator=generator)
    fake = (torch.rand(64, 3, 8, 8, generator=generator) * 0.6 + 0.3).clamp(0, 1)
    extractor = fid.FeatureExtractor(_channel_means, 3, "channel means")
    result = fid.frechet_distance(real, fake, features=extractor, batch_size=16)
    expected = _fid_by_hand(_channel_means(real).double().numpy(), _channel_means(fake).double().numpy())
    assert result.value == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert result.features == "channel means" and not result.comparable_with_papers
    assert "not comparable" in str(result) and "64 real vs 64 generated" in str(result)
    same = fid.frechet_distance(real, real.clone(), features=extractor)
    assert abs(same.value) < 1e-4


def test_frechet_distance_refuses_bad_images():
    extractor = fid.FeatureExtractor(_channel_means, 3, "channel means")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fid.frechet_distance(torch.rand(4, 3, 8, 8) * 2, torch.rand(4, 3, 8, 8), features=extractor)
    with pytest.raises(ValueError, match="RGB"):
        fid.frechet_distance(torch.rand(4, 1, 8, 8), torch.rand(4, 3, 8, 8), features=extractor)
    with pytest.raises(ValueError, match="features must be"):
        fid.frechet_distance(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8), features="vgg")


def _no_network(*args, **kwargs):
    raise AssertionError("FID reached for the network")


def test_without_inception_weights_the_fallback_is_named_and_nothing_is_downloaded(monkeypatch, tmp_path):
    """No weights file: 'auto' falls back and says why in words; 'inception' explains the fix; no download starts."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    metric, reason = fid.inception_metric()
    assert metric is None
    assert "not on this machine" in reason and "fetch-inception" in reason
    real, fake = torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16)
    extractor = fid.FeatureExtractor(_channel_means, 3, "channel means")
    result = fid.frechet_distance(real, fake, fallback=extractor)
    assert result.features == "channel means (fallback)" and not result.comparable_with_papers
    assert result.fallback_reason == reason
    assert "not comparable" in str(result) and "missing" not in str(result)  # the reason is said once, apart
    with pytest.raises(RuntimeError, match="fetch-inception") as info:
        fid.frechet_distance(real, fake, features="inception")
    assert str(tmp_path / "checkpoints" / fid.INCEPTION_WEIGHTS) in str(info.value)  # where to put it by hand
    given = fid.frechet_distance(real, fake, features=extractor)
    assert given.features == "channel means" and given.fallback_reason == ""


def test_download_inception_weights_writes_the_file_or_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append((url, progress))
        Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = fid.download_inception_weights(progress=False)
    assert path == tmp_path / "checkpoints" / fid.INCEPTION_WEIGHTS and path.read_bytes() == b"weights"
    assert calls == [(fid.INCEPTION_URL, False)]
    fid.download_inception_weights()  # already there: nothing fetched again
    assert len(calls) == 1

    def failing_download(url, dst, progress=True):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "other"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    with pytest.raises(RuntimeError, match="place it at .*other/checkpoints"):
        fid.download_inception_weights()


def test_attribute_classifier_loss_by_hand():
    net = torch.nn.Linear(4, 3)  # 2 attribute logits + 1 factor
    model = AttributeClassifier(net, num_attributes=2, num_factors=1, factor_mean=torch.tensor([5.0]),
                                factor_std=torch.tensor([2.0]))
    x = torch.randn(6, 4)
    attributes = torch.randint(0, 2, (6, 2))
    factors = torch.randn(6, 1) * 2 + 5
    terms = model.loss_terms((x, attributes, factors))
    out = net(x)
    bce = F.binary_cross_entropy_with_logits(out[:, :2], attributes.float())
    mse = ((out[:, 2:] - (factors - 5) / 2) ** 2).mean()
    assert terms["attributes"].item() == pytest.approx(bce.item(), rel=1e-6)
    assert terms["factors"].item() == pytest.approx(mse.item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx((bce + mse).item(), rel=1e-6)
    probabilities, predicted = model.outputs(x)
    assert torch.allclose(probabilities, torch.sigmoid(out[:, :2].detach()), atol=1e-6)
    assert torch.allclose(predicted, out[:, 2:].detach() * 2 + 5, atol=1e-5)  # back in the factor's own units
    with pytest.raises(ValueError, match="factors"):
        model.loss_terms((x, attributes))
    with pytest.raises(ValueError, match="attribute columns"):
        model.loss_terms((x, attributes[:, :1], factors))


# ----------------------------------------------------------------------------- on synthetic faces


@pytest.fixture(scope="module")
def faces():
    from latentlab.data.synthfaces import synthetic_faces

    return synthetic_faces(num_train=600, num_test=200, image_size=32, seed=3)


def test_ground_truth_edits_are_local_and_keep_identity(faces):
    """The generator's own edit (re-render with one attribute flipped) is the ideal edit the metrics describe."""
    from latentlab.data.synthfaces import ATTRIBUTES, attribute_regions, render

    x, attributes, identity = faces.x_test[:40], faces.attributes_test[:40], faces.identity_test[:40]
    j = ATTRIBUTES.index("Eyeglasses")
    flipped = attributes.clone()
    flipped[:, j] = 1 - flipped[:, j]
    edited = render(flipped, identity, 32)
    regions = attribute_regions(attributes, identity, 32)[:, j]
    assert metrics.edit_locality(x, edited, regions) == pytest.approx(1.0)
    brighter = (x + 0.1).clamp(0, 1)  # a global change: locality near the region's share of the image
    share = float(regions.float().mean())
    assert metrics.edit_locality(x, brighter, regions) == pytest.approx(share, abs=0.1)
    assert metrics.edit_locality(x, brighter, regions) < 0.5


def test_independent_judge_trains_saves_reloads_and_refuses_other_data(faces, tmp_path):
    from latentlab import IndependentJudge
    from latentlab.data.synthfaces import synthetic_faces

    path = tmp_path / "judge.pt"
    judge = IndependentJudge.for_faces(faces, path=path, epochs=6, batch_size=64, channels=(16, 32, 32), seed=0)
    assert path.is_file()
    # it sees the attributes of held-out real images clearly above the majority rate
    for j, name in enumerate(faces.attribute_names):
        majority = max(float(faces.attributes_test[:, j].float().mean()), 1 - float(faces.attributes_test[:, j].float().mean()))
        assert judge.report[f"accuracy {name}"] > majority + 0.1, (name, judge.report)
    assert any(key.startswith("identity ") for key in judge.report)
    again = IndependentJudge.for_faces(faces, path=path, epochs=999)  # loaded, not retrained
    x = faces.x_test[:16]
    for (name, saved), loaded in zip(judge.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(saved, loaded), name  # the same weights, bit for bit
    # the same outputs up to the convolution algorithm (the trained one is in fit's channels_last)
    torch.testing.assert_close(again.probabilities(x), judge.probabilities(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again.factors(x), judge.factors(x), rtol=1e-5, atol=1e-6)
    assert again.features(x).shape == (16, again.feature_dim)
    smiling = judge.predictor("Smiling")(x)
    assert smiling.dtype == torch.long and set(smiling.tolist()) <= {0, 1}
    assert metrics.identity_preservation(judge.factors, x, x.clone(), judge.factor_names,
                                         judge.categorical_factors)["mean"] == pytest.approx(1.0)
    other = synthetic_faces(num_train=50, num_test=10, image_size=32, seed=4)
    with pytest.raises(ValueError, match="trained on"):
        IndependentJudge.for_faces(other, path=path)
    with pytest.raises(ValueError, match="not 'Bald'"):
        judge.predictor("Bald")
    captions = judge.reading(["Smiling", "Eyeglasses"])(x[:2])
    p = judge.probabilities(x[:2])
    assert captions[1] == f"judge: Smiling {float(p[1, 1]):.0%}, Eyeglasses {float(p[1, 0]):.0%}"
    with pytest.raises(ValueError, match="not Bald"):
        judge.reading(["Bald"])
    state = torch.load(path, weights_only=True)  # a plain weights-only file
    assert state["format"] == "latentlab-judge-v1"
