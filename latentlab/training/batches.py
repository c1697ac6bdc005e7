"""What each step reads: the data as a Dataset, checked before any step; an example order that is a pure
function of (seed, epoch), so a run can stop anywhere and continue exactly; each process's share of a batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..checks import check_dataset_item, check_finite_values, check_training_input
from ..models.base import LatentVariableModel


def as_dataset(data: Dataset | torch.Tensor | Sequence[torch.Tensor]) -> Dataset:
    """Accept a Dataset, a tensor ``x``, or a tuple ``(x, y, ...)`` of tensors of equal length."""
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, (tuple, list)):
        if not data or not all(isinstance(t, torch.Tensor) for t in data):
            raise ValueError(
                "data must be a Dataset, a tensor, or a tuple of tensors such as (x, y); "
                "convert NumPy arrays with torch.as_tensor(array)"
            )
        lengths = {len(t) for t in data}
        if len(lengths) != 1:
            raise ValueError(
                f"the tensors in data have different lengths {sorted(lengths)}; "
                "x and y must hold one row per example"
            )
        data = TensorDataset(*data)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")) or isinstance(data, np.ndarray):
        raise ValueError(
            f"data must be a Dataset, a tensor, or a tuple of tensors such as (x, y), got {type(data).__name__}; "
            "convert NumPy arrays with torch.as_tensor(array)"
        )
    if len(data) == 0:
        raise ValueError("the training data is empty; pass at least one example")
    return data


def check_data(model: LatentVariableModel, dataset: Dataset) -> None:
    """Refuse data the model cannot mean to train on, before any step (see ``checks.check_training_input``).

    In-memory tensors are checked whole (dtype, NaN/inf, the model's ``input_range``); a Dataset is
    checked on its first example (what it yields, dtype, range); a NaN it yields later is named by
    the NaN guard as a data problem, not a learning-rate one.
    """
    if isinstance(dataset, TensorDataset):
        x, *rest = dataset.tensors
        check_training_input(x, model.input_range(x))
        for index, t in enumerate(rest, 1):
            check_finite_values(t, "y" if index == 1 else f"data[{index}]")
        return
    item = dataset[0]
    check_dataset_item(item)
    first = torch.as_tensor(item if isinstance(item, torch.Tensor) else item[0])[None]  # one example as a batch
    check_training_input(first, model.input_range(first), name="x (the Dataset's first example)")


def epoch_order(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled example order of one epoch: a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=generator)


def step_batches(order: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1) -> list[torch.Tensor]:
    """This process's example indices for each step of an epoch, given the epoch's ``order``.

    Step i's *global* batch is ``order[i*batch_size : (i+1)*batch_size]``; process ``rank`` takes every
    ``world_size``-th example of it, so the slices of all processes together are exactly the batch a
    single process takes. A last global batch with fewer examples than processes is dropped (every
    process must take part in every step's gradient average).
    """
    steps = []
    for start in range(0, len(order), batch_size):
        global_batch = order[start : start + batch_size]
        if len(global_batch) < world_size:
            break
        steps.append(global_batch[rank::world_size])
    return steps


def batches(
    dataset: Dataset, steps: list[torch.Tensor], num_workers: int, pin_memory: bool
) -> Iterator[tuple[torch.Tensor, ...]]:
    if isinstance(dataset, TensorDataset):  # in-memory data: index directly, no collate cost
        for index in steps:
            yield tuple(t[index] for t in dataset.tensors)
        return
    loader = DataLoader(
        dataset,
        batch_sampler=[index.tolist() for index in steps],
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    for batch in loader:
        yield tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def to_device(
    t: torch.Tensor, device: torch.device, channels_last: bool, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A batch tensor on ``device``; floats in the model's ``dtype``, ``uint8`` images as floats in [0, 1].

    Floating-point data of another precision (float64 from NumPy) is converted rather than refused:
    the model computes in its own precision anyway. Integer tensors (labels) are left as they are.
    """
    t = t.to(device, non_blocking=True)
    if t.dim() == 4 and t.dtype == torch.uint8:  # images stored as bytes travel 4x lighter and become [0, 1] here
        t = t.to(dtype).div_(255)
    elif t.is_floating_point() and t.dtype != dtype:
        t = t.to(dtype)
    if t.dim() == 4 and channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def model_dtype(model: nn.Module) -> torch.dtype:
    """The precision the model computes in: its first floating-point parameter's (float32 if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
