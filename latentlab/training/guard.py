"""The NaN guard: stop at the first non-finite loss or state, leave only good checkpoints, say where to go on from.

A checkpoint is *good* when it is finite and the step after it ended finite too; one that led
straight into NaN is moved aside (``*.pt.nonfinite``), so a resume never repeats the divergence.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from .. import distributed
from .checkpoints import checkpoint_step, list_checkpoints


NONFINITE_SUFFIX = ".nonfinite"


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; training stopped and no bad checkpoint was left as the newest."""


class NonFiniteStateError(NonFiniteLossError):
    """The parameters or optimizer state about to be saved hold NaN or inf; training stopped, nothing was written.

    A subclass of :class:`NonFiniteLossError`, so one ``except`` catches every divergence.
    """


def nonfinite_tensors(named: Iterable[tuple[str, object]]) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf (one device sync per device, not per tensor)."""
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, value in named:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
            by_device.setdefault(value.device, []).append((name, value))
    bad = []
    for group in by_device.values():
        finite = torch.stack([torch.isfinite(t).all() for _, t in group]).cpu().tolist()
        bad += [name for (name, _), ok in zip(group, finite) if not ok]
    return bad


def optimizer_tensors(model: nn.Module, optimizers: dict) -> Iterator[tuple[str, torch.Tensor]]:
    names = {id(p): n for n, p in model.named_parameters()}
    for opt_name, opt in optimizers.items():
        for param, slots in opt.state.items():
            for key, value in slots.items():
                yield f"optimizer {opt_name!r} {key} of {names.get(id(param), 'a parameter')}", value


def check_finite_loss(
    terms: dict[str, float], batch: tuple, index: torch.Tensor, step: int, epoch: int, checkpoint_dir,
    checkpoint_every: int, main: bool,
) -> None:
    """Stop when a loss term is NaN or inf, naming the cause (the data, when the batch itself holds NaN) and the last good checkpoint.

    The loss of step k is computed from the parameters after step k - 1, before any update. So a
    checkpoint written right after step k - 1 holds exactly the parameters that gave it: resuming
    from it, whatever the learning rate, would give the same loss again (same weights, batch and
    random draws). That checkpoint is moved aside (``*.pt.nonfinite``) and the one before is named.
    """
    bad = {name: value for name, value in terms.items() if not math.isfinite(value)}
    if not bad:
        return
    at = f"at step {step + 1} (epoch {epoch + 1})"
    data = _nonfinite_examples(batch, index)
    if distributed.average_terms({"data": float(data is not None)})["data"] > 0:  # on any process
        raise ValueError(
            f"loss term(s) {bad} became non-finite {at} because the batch itself holds NaN or inf "
            f"({data or 'on another process'}): the data, not the learning rate. Clean the Dataset "
            "(drop or impute those examples) and train again."
        )
    moved = _set_aside(checkpoint_dir, step, "the parameters that gave this loss", main)
    raise NonFiniteLossError(
        f"loss term(s) {bad} became non-finite {at}; training stopped. {moved}{_advice(checkpoint_dir, checkpoint_every)}"
    )


def check_finite_state(model: nn.Module, optimizers: dict, step: int, checkpoint_dir, checkpoint_every: int, main: bool) -> None:
    """Stop when the parameters or optimizer state hold NaN or inf after ``step``: before every write, and
    after the first step following each checkpoint.

    That second check is what makes a checkpoint *good*: the step after it ended finite, loss and state,
    so resuming from it with a lower learning rate replays a step known to work (Adam's moments do not
    depend on the learning rate: weights that give overflowing gradients overflow them at any rate).
    A checkpoint whose next step did not end finite is moved aside, as for a non-finite loss.
    Parameters and optimizer state are identical on every process, so every process decides alike.
    """
    bad = nonfinite_tensors([*model.state_dict().items(), *optimizer_tensors(model, optimizers)])
    if not bad:
        return
    moved = _set_aside(checkpoint_dir, step - 1, "the state this step started from", main)
    raise NonFiniteStateError(
        f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''} became NaN or inf in step {step} (the loss before "
        f"the update was finite); training stopped and nothing was written. {moved}{_advice(checkpoint_dir, checkpoint_every)}"
    )


def _set_aside(checkpoint_dir: Path | None, step: int, holds: str, main: bool) -> str:
    """Move the checkpoint of ``step`` (if it is the newest) to ``*.pt.nonfinite``: what it holds made training diverge.

    Resuming from it would repeat the divergence (same weights, batch and random draws), so it must not
    be the one a resume finds, nor the one the message calls good. Returns the sentence saying so.
    """
    saved = list_checkpoints(checkpoint_dir) if checkpoint_dir is not None else []
    note = ""
    if saved and checkpoint_step(saved[-1]) == step:
        poisoned = saved[-1]
        aside = poisoned.with_name(poisoned.name + NONFINITE_SUFFIX)
        note = f"{poisoned.name} holds {holds} (resuming from it would repeat it), so it was moved aside to {aside.name}. "
        if main:
            try:
                os.replace(poisoned, aside)
            except OSError as err:
                note = f"{poisoned.name} holds {holds} and could not be moved aside ({err.strerror}): delete it before resuming. "
    distributed.barrier()  # the other processes go on (and list the checkpoints) once rank 0 has moved it
    return note


def _nonfinite_examples(batch: tuple, index: torch.Tensor) -> str | None:
    """Which tensor of the batch, and which dataset examples, hold NaN or inf (None: the batch is finite)."""
    for position, t in enumerate(batch):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            rows = ~torch.isfinite(t.reshape(len(t), -1)).all(1)
            name = "x" if position == 0 else f"batch[{position}]"
            return f"{name} of dataset examples {index[rows.cpu()][:5].tolist()}"
    return None


def _advice(checkpoint_dir: Path | None, checkpoint_every: int) -> str:
    """Where a diverged run can go on from: the newest checkpoint left (finite, and followed by a finite loss)."""
    saved = list_checkpoints(checkpoint_dir) if checkpoint_dir is not None else []
    lower = "a lower learning rate (build the model with a smaller learning_rate; --learning-rate on the command line)"
    if saved:
        return (
            f"The last good checkpoint is {saved[-1]}: resume from it with {lower} and the same checkpoint_dir; "
            "fit applies the new rate from there on (other changes, such as loss weights, need a new checkpoint_dir)."
        )
    if checkpoint_dir is not None:
        return (
            f"No good checkpoint exists in {checkpoint_dir} yet (one is written every {checkpoint_every} steps): "
            f"train again with {lower}; the same checkpoint_dir starts afresh."
        )
    return f"No checkpoint was written (no checkpoint_dir was given): train again with {lower}, and pass checkpoint_dir= to keep good states."
