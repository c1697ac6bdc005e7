"""Label splits for semi-supervised training: which examples keep their label (seeded, stratified by
class), and the training set with every other label hidden as :data:`latentlab.checks.UNLABELLED`."""

from __future__ import annotations

import numpy as np
import torch

from ..checks import UNLABELLED, check_tensor


def label_split(
    y: torch.Tensor,
    num_labelled: float | str | None,  # an int count, a float fraction, None or "all"
    *,
    seed: int = 0,
    num_classes: int | None = None,
) -> torch.Tensor:
    """A bool mask marking which examples keep their label, seeded and stratified by class.

    ``num_labelled`` is a count (an int, e.g. 100: spread evenly over the classes, 10 each for 10
    classes, any remainder to seeded randomly chosen classes), a fraction (a float in (0, 1]: that
    fraction of each class) or ``None`` / ``"all"``. Every class gets at least one label, so a
    classifier trained on the labelled part has seen them all. The classes are ``0..num_classes-1``,
    or the labels present in ``y`` when ``num_classes`` is None.
    """
    y = check_tensor(y, "y")
    if y.dim() != 1 or torch.is_floating_point(y) or y.dtype == torch.bool:
        raise ValueError(f"y must be a 1-D integer tensor of class indices, got shape {tuple(y.shape)} and {y.dtype}")
    n = len(y)
    if n == 0:
        raise ValueError("y is empty; pass the labels of the training set")
    if int(y.min()) < 0:
        raise ValueError(
            f"y holds negative labels (UNLABELLED={UNLABELLED} marks a missing label); "
            "label_split needs the true label of every example, before any are hidden"
        )
    if num_classes is None:
        classes = torch.unique(y).tolist()
    else:
        if int(y.max()) >= num_classes:
            raise ValueError(f"y holds label {int(y.max())} but num_classes={num_classes}; pass the right num_classes")
        classes = list(range(num_classes))
    if num_labelled is None or num_labelled == "all":
        return torch.ones(n, dtype=torch.bool)

    y_np = y.cpu().numpy()
    counts = np.array([(y_np == c).sum() for c in classes])
    rng = np.random.default_rng(seed)
    if isinstance(num_labelled, (float, np.floating)):
        take = _fraction_per_class(float(num_labelled), counts, classes, rng)
    elif isinstance(num_labelled, (int, np.integer)) and not isinstance(num_labelled, bool):
        take = _count_per_class(int(num_labelled), counts, classes, rng)
    else:
        raise ValueError(  # noqa: TRY004 - a bad argument value, ValueError like every check in latentlab
            f"num_labelled must be an int count, a float fraction in (0, 1], None or 'all', got {num_labelled!r}"
        )

    mask = np.zeros(n, dtype=bool)
    for c, k in zip(classes, take):
        mask[rng.permutation(np.flatnonzero(y_np == c))[:k]] = True
    return torch.as_tensor(mask, device=y.device)


def _count_per_class(count: int, counts: np.ndarray, classes: list[int], rng: np.random.Generator) -> np.ndarray:
    n, num = int(counts.sum()), len(classes)
    if count > n:
        raise ValueError(f"num_labelled={count} but there are only {n} examples; use at most {n}, or 'all'")
    if count < num:
        raise ValueError(
            f"num_labelled={count} is fewer than the {num} classes; each class needs at least one label, "
            f"so use at least {num}"
        )
    base, extra = divmod(count, num)
    short = [(c, int(k)) for c, k in zip(classes, counts) if k < base]
    if short:
        c, k = short[0]
        raise ValueError(
            f"class {c} has only {k} examples but num_labelled={count} gives each of the {num} classes {base} labels; "
            f"use at most {num * int(counts.min())} labels, or a fraction to label each class in proportion"
        )
    take = np.full(num, base)
    # the remainder goes to classes in a seeded random order, those with an example to spare first
    order = np.lexsort((rng.permutation(num), counts <= base))
    if (counts[order[:extra]] <= base).any():
        raise ValueError(
            f"num_labelled={count} cannot be spread evenly: {extra} classes need {base + 1} labels but fewer classes "
            f"have that many examples (counts {counts.tolist()}); use {num * base} labels, or a fraction"
        )
    take[order[:extra]] += 1
    return take


def _fraction_per_class(
    fraction: float, counts: np.ndarray, classes: list[int], rng: np.random.Generator
) -> np.ndarray:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"a float num_labelled is a fraction and must lie in (0, 1], got {fraction!r}; "
            "for a count of labels pass an int"
        )
    take = proportional_counts(counts, round(fraction * int(counts.sum())), rng)
    if (take == 0).any():
        c = classes[int(np.flatnonzero(take == 0)[0])]
        raise ValueError(
            f"num_labelled={fraction} leaves class {c} without a label ({int(counts[classes.index(c)])} examples); "
            "each class needs at least one label, so use a larger fraction"
        )
    return take


def semi_supervised(
    x: torch.Tensor,
    y: torch.Tensor,
    labelled: torch.Tensor,
    *,
    labelled_share: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` for the training loop: ``y`` is :data:`UNLABELLED` where ``labelled`` is False.

    With 100 labels among 60000 examples a shuffled batch of 100 holds one labelled example on
    average, too few for the classifier to learn from. ``labelled_share`` (e.g. 0.5) appends copies of
    the labelled examples (whole copies, then an evenly spaced part of them) until they make up about
    that share of the examples; it never removes any. ``x`` comes back unchanged, followed by the copies.
    """
    x = check_tensor(x, "x")
    y = check_tensor(y, "y")
    labelled = check_tensor(labelled, "labelled")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"y must hold one label per example: shape ({len(x)},), got {tuple(y.shape)}")
    if labelled.dtype != torch.bool or labelled.shape != y.shape:
        raise ValueError(
            f"labelled must be a bool mask of shape ({len(x)},), got {tuple(labelled.shape)} and {labelled.dtype}; "
            "make one with label_split(y, num_labelled)"
        )
    num_labelled = int(labelled.sum())
    if num_labelled == 0:
        raise ValueError("labelled marks no example; a semi-supervised run needs at least one label per class")
    y_out = y.long().clone()  # a copy: the caller's labels stay intact
    y_out[~labelled] = UNLABELLED
    if labelled_share is None:
        return x, y_out
    if isinstance(labelled_share, bool) or not isinstance(labelled_share, (float, int)) or not 0 < labelled_share < 1:
        raise ValueError(f"labelled_share must be a float strictly between 0 and 1 (e.g. 0.5), got {labelled_share!r}")

    num_unlabelled = len(y) - num_labelled
    if num_labelled >= labelled_share * len(y):
        return x, y_out  # the labelled examples already make up the share
    target = labelled_share * num_unlabelled / (1.0 - labelled_share)  # l / (l + u) = share, solved for l

    def gap(k: int) -> float:
        return abs(k / (k + num_unlabelled) - labelled_share)

    extra = min(int(np.floor(target)), int(np.ceil(target)), key=gap) - num_labelled
    index = torch.nonzero(labelled, as_tuple=True)[0]
    whole, part = divmod(extra, num_labelled)
    spread = index[torch.arange(part, device=index.device) * num_labelled // part] if part else index[:0]
    repeat = torch.cat([index.repeat(whole), spread])
    return torch.cat([x, x[repeat]]), torch.cat([y_out, y_out[repeat]])


def proportional_counts(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainders, ties broken at random)."""
    n = int(counts.sum())
    share, remainder = np.divmod(total * counts, n)  # exact integer arithmetic: share + remainder / n
    order = np.lexsort((rng.permutation(len(counts)), -remainder))
    share[order[: total - int(share.sum())]] += 1
    return share


# --------------------------------------------------------------------------- scikit-learn digits
