"""Scores that take any model through its interface: reconstruction, probes, edit success.

* :func:`reconstruction_error`: mean squared error of decoding the posterior means.
* :func:`probe_accuracy`: how much label information a code holds, measured by a *fresh*
  classifier trained after the fact on frozen training codes and scored on test codes, next to
  the majority-class rate that a constant guess reaches.
* :func:`edit_success`: the share of edited points that an *independent* classifier, trained on
  the data space (never a model's own head), assigns to the target label; reported for each
  direction, because an edit can work one way and fail the other.
* :func:`evaluate`: all of the above for one model, as one dict.

They take models and callables rather than toy arrays, so the image chapters reuse them with
their own classifiers (any ``x -> predicted labels`` callable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_labels, check_tensor
from ..models.base import LatentVariableModel

Editor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y, target) -> edited x
Predictor = Callable[[torch.Tensor], torch.Tensor]  # x -> predicted labels (a model's predict, a judge's)


@torch.no_grad()
def latent_means(model: LatentVariableModel, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The posterior mean of every latent part the model encodes, by name (``z``, ``w``, ...).

    Puts the model in eval mode (as ``fit`` leaves it), so layers such as batch norm use their statistics.
    """
    model.eval()
    return {name: q.mean for name, q in model.encode(x, y).items()}


@torch.no_grad()
def reconstruction_error(model: LatentVariableModel, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """Mean over examples and coordinates of (x - decode(posterior means))^2; labelled models decode with the true y."""
    x_hat = model.decode(latent_means(model, x, y), y)
    return float((x_hat - x).pow(2).mean())


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracy of a probe and the rate a constant guess of the majority training class reaches."""

    accuracy: float
    majority_rate: float

    def __str__(self) -> str:
        return f"{self.accuracy:.3f} (majority class: {self.majority_rate:.3f})"


def _numpy(t: torch.Tensor, name: str) -> np.ndarray:
    t = check_tensor(t, name).detach().cpu()
    return t.flatten(1).numpy() if t.dim() > 1 else t.numpy()


def _class_indices(y: object, batch_size: int, name: str) -> torch.Tensor:
    """Labels as class indices 0..C-1 (C read from the labels), one per example."""
    y = check_tensor(y, name)
    return check_labels(y, int(y.max()) + 1 if y.numel() else 1, batch_size, name=name)


def _make_classifier(kind: str, seed: int):
    from sklearn.linear_model import LogisticRegression  # imported here: sklearn is slow to import
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "mlp":  # non-linear: finds label information a line cannot (a ring inside a ring)
        classifier = MLPClassifier((64, 64), learning_rate_init=0.01, max_iter=300, random_state=seed)
    elif kind == "logistic":
        classifier = LogisticRegression(max_iter=1000)
    else:
        raise ValueError(f"probe must be 'mlp' or 'logistic', got {kind!r}")
    # codes come at any scale (a prior at 3 next to one at 0.1): standardise before fitting
    return make_pipeline(StandardScaler(), classifier)


def probe_accuracy(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    test_codes: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    probe: str = "mlp",
    seed: int = 0,
) -> ProbeResult:
    """Fit a fresh classifier on frozen training codes, score it on test codes.

    ``probe="mlp"`` (default) uses a small MLP, ``"logistic"`` a linear probe. High accuracy means
    the code holds label information; the majority rate is the floor a code with none reaches.
    """
    checked = []
    for codes, labels, split in ((train_codes, train_labels, "train"), (test_codes, test_labels, "test")):
        codes = check_tensor(codes, f"{split}_codes")
        if codes.dim() != 2 or len(codes) == 0:
            raise ValueError(f"{split}_codes must be a non-empty (examples, dims) tensor, got shape {tuple(codes.shape)}")
        checked.append(_class_indices(labels, len(codes), f"{split}_labels").cpu().numpy())
    y_train, y_test = checked
    if len(np.unique(y_train)) < 2:
        raise ValueError("train_labels hold a single class; a probe needs examples of at least two")
    classifier = _make_classifier(probe, seed).fit(_numpy(train_codes, "train_codes"), y_train)
    accuracy = float((classifier.predict(_numpy(test_codes, "test_codes")) == y_test).mean())
    majority = np.bincount(y_train).argmax()
    return ProbeResult(accuracy, float((y_test == majority).mean()))


class DataClassifier:
    """An independent judge for edits: a classifier trained on real data points, not on any model.

    Call it on data-space points to get predicted labels. ``accuracy(x, y)`` says how far to trust it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, probe: str = "mlp", seed: int = 0):
        y = _class_indices(y, len(check_tensor(x, "x")), "y").cpu()
        self.classifier = _make_classifier(probe, seed).fit(_numpy(x, "x"), y.numpy())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.classifier.predict(_numpy(x, "x")), dtype=torch.long)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self(x) == y.cpu()).float().mean())


@torch.no_grad()
def edit_success(
    edit: Editor,
    classifier: Predictor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    classes: Sequence[int] = (0, 1),
) -> dict[str, float]:
    """Share of edited points the independent ``classifier`` assigns to the target, per direction.

    For every ordered pair (source, target) of ``classes``, the points of ``x`` labelled source are
    edited with ``edit(x, y, target)`` (e.g. ``model.edit``) and classified. Returns
    ``{"0->1": ..., "1->0": ...}`` for a binary label.
    """
    y = check_labels(y, max(classes) + 1, len(check_tensor(x, "x")))
    scores = {}
    for source in classes:
        chosen = y == source
        if not bool(chosen.any()):
            raise ValueError(f"no example has label {source}; edit success needs examples of every source class")
        for target in classes:
            if target == source:
                continue
            edited = edit(x[chosen], y[chosen], torch.full_like(y[chosen], target))
            predicted = torch.as_tensor(classifier(edited)).cpu()
            scores[f"{source}->{target}"] = float((predicted == target).float().mean())
    return scores


def evaluate(
    model: LatentVariableModel,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    classifier: Predictor,
    *,
    edit: Editor | None = None,
    probe: str = "mlp",
    seed: int = 0,
) -> dict[str, float]:
    """Every score above for one model: test reconstruction error, a probe per latent part, edit success.

    ``train`` and ``test`` are ``(x, y)`` pairs; the probes train on the training codes. ``edit``
    defaults to ``model.edit``; pass e.g. :func:`latentlab.editing.edit.latent_shift_editor` for a model
    without labels. Keys: ``recon``, ``probe z`` (and ``probe w`` ...), ``majority``, ``edit 0->1``, ``edit 1->0``.
    """
    (x_train, y_train), (x_test, y_test) = train, test
    scores = {"recon": reconstruction_error(model, x_test, y_test)}
    codes_train, codes_test = latent_means(model, x_train, y_train), latent_means(model, x_test, y_test)
    for name in codes_train:
        result = probe_accuracy(codes_train[name], y_train, codes_test[name], y_test, probe=probe, seed=seed)
        scores[f"probe {name}"], scores["majority"] = result.accuracy, result.majority_rate
    for direction, rate in edit_success(edit or model.edit, classifier, x_test, y_test).items():
        scores[f"edit {direction}"] = rate
    return scores


# ----------------------------------------------------------------------------- classes of images


def classification_accuracy(predict: Predictor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` whose predicted label (``predict(x)``, e.g. ``model.predict``) equals ``y``."""
    y = check_tensor(y, "y")
    predicted = torch.as_tensor(predict(check_tensor(x, "x"))).cpu()
    if predicted.shape != y.shape:
        raise ValueError(f"predict returned shape {tuple(predicted.shape)} for labels of shape {tuple(y.shape)}")
    return float((predicted == y.cpu()).float().mean())


@torch.no_grad()
def conditional_generation_accuracy(
    sample: Callable[[torch.Tensor], torch.Tensor],
    judge: Predictor,
    num_classes: int,
    *,
    per_class: int = 100,
) -> dict[str, float]:
    """Share of generated images that an independent ``judge`` assigns to the class they were generated for.

    ``sample(y)`` returns one image per label (e.g. ``model.sample``). Returns the rate per class
    (``"0"`` ... ``"9"``), their mean (``"mean"``), and chance, ``1 / num_classes``, to read it against.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    y = torch.arange(num_classes).repeat_interleave(per_class)
    hits = torch.as_tensor(judge(sample(y))).cpu() == y
    scores = {str(c): float(hits[y == c].float().mean()) for c in range(num_classes)}
    scores["mean"] = float(hits.float().mean())
    scores["chance"] = 1.0 / num_classes
    return scores


@torch.no_grad()
def style_preservation(
    model: LatentVariableModel, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, *, style: str
) -> float:
    """How much of the style code survives an edit: R^2 of the re-encoded style against the original.

    Edits ``x`` from ``y`` to ``target`` with ``model.edit``, encodes the result (with ``target``,
    for models whose encoder reads the label) and compares the posterior means of the latent part
    named ``style`` (``"z_style"`` for CCVAE, ``"z"`` for M2 and the CVAE) with those of ``x``:
    ``1 - sum (s_after - s_before)^2 / sum (s_before - mean s_before)^2``. 1 means the style came
    through the edit untouched; 0 means no better than replacing every style by the average one.
    """
    model.eval()
    before = model.encode(x, y)
    if style not in before:
        raise ValueError(f"{type(model).__name__} has no latent part {style!r}; it has {', '.join(before)}")
    after = model.encode(model.edit(x, y, target), target)[style].mean
    before = before[style].mean
    residual = (after - before).pow(2).sum()
    spread = (before - before.mean(0)).pow(2).sum().clamp_min(1e-12)
    return float(1.0 - residual / spread)


# ----------------------------------------------------------------------------- faces


def attribute_edit_success(edit: Editor, predict: Predictor, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Edit success for one binary attribute, named by direction: ``add`` (0 -> 1) and ``remove`` (1 -> 0).

    ``predict`` is the independent judge's ``x -> 0/1`` for that attribute (e.g.
    ``judge.predictor("Smiling")``): the protocol of Creswell et al. (2017), who report both directions.
    """
    scores = edit_success(edit, predict, x, y)
    return {"add": scores["0->1"], "remove": scores["1->0"]}


def factor_agreement(
    before: torch.Tensor, after: torch.Tensor, names: Sequence[str], categorical: Sequence[str] = ()
) -> dict[str, float]:
    """How well ``after`` (N, F) reproduces ``before`` (N, F), per factor, and their mean.

    Continuous factors: R^2 = 1 - sum (after - before)^2 / sum (before - mean before)^2 (1: identical,
    0: no better than the average face). Categorical factors: the share of rows where they agree.
    """
    before, after = check_tensor(before, "before").float(), check_tensor(after, "after").float()
    if before.shape != after.shape or before.dim() != 2 or before.shape[1] != len(names):
        raise ValueError(
            f"before and after must both be (N, {len(names)}) for factors {list(names)}, "
            f"got {tuple(before.shape)} and {tuple(after.shape)}"
        )
    scores = {}
    for j, name in enumerate(names):
        if name in categorical:
            scores[name] = float((before[:, j].round() == after[:, j].round()).float().mean())
        else:
            spread = (before[:, j] - before[:, j].mean()).pow(2).sum().clamp_min(1e-12)
            scores[name] = float(1 - (after[:, j] - before[:, j]).pow(2).sum() / spread)
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def identity_preservation(factors: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, edited: torch.Tensor,
                          names: Sequence[str], categorical: Sequence[str] = ()) -> dict[str, float]:
    """Does an edit keep the person? Identity factors predicted from ``x`` and from ``edited`` compared.

    ``factors`` maps images to identity factors (e.g. ``judge.factors`` of a judge trained on
    synthetic faces, whose generator knows face shape, skin and hair tone, position, hair style).
    Returns :func:`factor_agreement` of the two predictions: 1 everywhere means the edit changed
    the attribute and nothing of who the face is.
    """
    if x.shape != edited.shape:
        raise ValueError(f"x and edited must have the same shape, got {tuple(x.shape)} and {tuple(edited.shape)}")
    return factor_agreement(factors(x), factors(edited), names, categorical)


def edit_locality(x: torch.Tensor, edited: torch.Tensor, regions: torch.Tensor) -> float:
    """Share of an edit's pixel change that falls inside the edited attribute's region, averaged over images.

    ``regions`` is ``(N, H, W)`` bool (e.g. one attribute's slice of
    :func:`latentlab.data.synthfaces.attribute_regions`). Change is the absolute difference summed
    over channels. 1 means the edit touched only the attribute's pixels; the region's share of the
    image is what an edit that changes everything uniformly would score. Images the edit left
    unchanged are skipped (they have no change to place).
    """
    x, edited = check_tensor(x, "x"), check_tensor(edited, "edited")
    if x.shape != edited.shape or x.dim() != 4:
        raise ValueError(f"x and edited must both be (N, C, H, W), got {tuple(x.shape)} and {tuple(edited.shape)}")
    regions = check_tensor(regions, "regions")
    if regions.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"regions must be (N, H, W) = {(x.shape[0], *x.shape[2:])}, got {tuple(regions.shape)}")
    change = (edited.float() - x.float()).abs().sum(1).cpu()
    total = change.flatten(1).sum(1)
    inside = (change * regions.cpu().float()).flatten(1).sum(1)
    moved = total > 1e-8
    if not bool(moved.any()):
        raise ValueError("the edit changed no pixel of any image; locality is undefined")
    return float((inside[moved] / total[moved]).mean())
