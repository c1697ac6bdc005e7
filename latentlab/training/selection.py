"""Choosing the training epoch on held-out data: train one epoch at a time, score, keep the best.

Semi-supervised results are reported this way in the literature (Pyro's M2 tutorial prints the test
accuracy at the epoch of best validation accuracy), so a test set is read once, for the model the
validation data chose. Everything is resumable: the epoch scores and the best weights are written
atomically beside the run's checkpoints, and a finished selection reloads without training.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..checks import check_count
from ..models.base import LatentVariableModel
from .checkpoints import save_checkpoint, write_atomically
from .loop import fit

SCORES_NAME = "epoch-scores.json"
BEST_NAME = "best-weights.pt"


@dataclass
class EpochSelection:
    """What :func:`fit_selecting_epoch` chose: the epoch, its score, every epoch's score, the training time."""

    best_epoch: int
    best_score: float
    scores: list[float]
    seconds: float


def fit_selecting_epoch(
    model: LatentVariableModel,
    data,
    *,
    epochs: int,
    score: Callable[[LatentVariableModel], float],
    checkpoint_dir: str | os.PathLike,
    **fit_settings,
) -> EpochSelection:
    """Train ``model`` for ``epochs`` epochs with :func:`latentlab.fit`, score it after each, and leave it
    holding the weights of the best-scoring epoch (higher is better; the earliest wins a tie).

    ``score(model)`` is called in eval mode, on held-out data, never the test set. ``fit_settings``
    go to :func:`latentlab.fit` (batch size, seed, device...). An interrupted run continues from its
    last checkpoint and its recorded scores; ``seconds`` counts the training of every session.
    """
    check_count(epochs, "epochs", minimum=1)
    directory = Path(checkpoint_dir)
    record_path, best_path = directory / SCORES_NAME, directory / BEST_NAME
    record = json.loads(record_path.read_text()) if record_path.exists() else {"scores": [], "seconds": 0.0}
    if len(record["scores"]) > epochs:
        raise ValueError(f"{record_path} holds {len(record['scores'])} epochs' scores but epochs={epochs}: "
                         "pass the run's own number of epochs, or another checkpoint_dir for a shorter run")
    for epoch in range(len(record["scores"]) + 1, epochs + 1):
        start = time.perf_counter()
        fit(model, data, epochs=epoch, checkpoint_dir=directory, **fit_settings)
        record["seconds"] += time.perf_counter() - start
        model.eval()  # fit sets train mode again at the next epoch
        with torch.no_grad():
            value = float(score(model))
        if not record["scores"] or value > max(record["scores"]):
            save_checkpoint(model.state_dict(), best_path)
        record["scores"].append(value)
        # the scores are written after the weights, so a crash between the two only re-scores an epoch
        write_atomically(record_path, lambda f: f.write(json.dumps(record).encode()))
    model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    model.eval()
    scores = record["scores"]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return EpochSelection(best + 1, scores[best], scores, record["seconds"])
