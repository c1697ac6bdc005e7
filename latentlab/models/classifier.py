"""A plain classifier trained by the same loop as every model: cross entropy on labelled examples.

Two jobs in the book, neither of them a generative model:

* the *labelled-only baseline* of semi-supervised learning (Kingma et al. 2014, table 1): the
  same kind of network, trained on the few labelled images alone; a semi-supervised model is
  only worth its cost where it beats this;
* the *independent judge*: trained on all real training images of a dataset, never on a
  model's output, it scores generated and edited images (Creswell et al. 2017, sec. 5).

Unlabelled examples (label ``UNLABELLED``) in a batch are skipped, so the same semi-supervised
tensors can be passed to every model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, LatentVariableModel, split_batch, split_partial_batch


class Classifier(LatentVariableModel):
    """Any ``x -> logits`` network, trained on cross entropy with Adam.

    Args:
        net: module ``x -> logits`` over ``num_classes`` (e.g. :class:`~latentlab.nets.ConvClassifier`).
        num_classes: number of label values.
        learning_rate: Adam learning rate.
        weight_decay: Adam's L2 penalty; a little helps when only a hundred labels exist.
    """

    def __init__(self, net: nn.Module, *, num_classes: int, learning_rate: float = 1e-3, weight_decay: float = 0.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.net, self.num_classes = net, num_classes
        self.learning_rate, self.weight_decay = learning_rate, weight_decay

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        split_batch(batch, "Classifier")  # a clear error when the labels are missing
        x, y, labelled = split_partial_batch(batch, self.num_classes)
        if not bool(labelled.any()):
            raise ValueError("a Classifier batch holds no labelled example; train it on the labelled images only")
        logits = self.net(x[labelled])
        y = y[labelled]
        return {"loss": F.cross_entropy(logits, y), "accuracy": (logits.argmax(-1) == y).float().mean()}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)}

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.net(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; call :meth:`predict` for labels."""
        return self.net(x)
