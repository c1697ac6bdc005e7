"""The one training loop. Every model plugs in through ``training_step`` and ``configure_optimizers``.

:func:`fit` reads top to bottom in the order things happen: check the arguments and data, place
the model, resume from the newest checkpoint, then step through the epochs. What surrounds the
loop lives beside it in :mod:`latentlab.training`, one concern a file:

* :mod:`~latentlab.training.batches`: the data as a Dataset, checked before any step; an example
  order that is a pure function of (seed, epoch), so a run continues exactly where it stopped;
* :mod:`~latentlab.training.switches`: the fast paths (bf16 autocast, channels_last,
  ``torch.compile``, on a CPU the allocator kept warm), each switchable;
* :mod:`latentlab.distributed`: data parallelism over processes started by ``torchrun``
  (the global batch split over processes, gradients averaged, rank 0 alone writing);
* :mod:`~latentlab.training.checkpoints` and :mod:`~latentlab.training.resume`: atomic
  checkpoints read with ``weights_only=True``, one run per directory, resume only into the same model;
* :mod:`~latentlab.training.guard`: stop at the first NaN or inf, leaving only good checkpoints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from .. import config, distributed
from ..checks import check_count
from ..models.base import LatentVariableModel
from .batches import as_dataset, batches, check_data, epoch_order, model_dtype, step_batches, to_device
from .checkpoints import CHECKPOINT_FORMAT, CheckpointError, claim_checkpoint_dir, list_checkpoints, load_checkpoint, save_keeping
from .guard import NonFiniteLossError, check_finite_loss, check_finite_state
from .resume import apply_optimizer_settings, check_resumable, load_states, optimizer_settings, rng_state, set_rng_state
from .switches import compile_subnetworks, keep_freed_memory, resolve_switches

History = dict[str, list[float]]


@dataclass
class RunState:
    """Where a run is: what a checkpoint saves and a resume restores, besides the weights and optimizers."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    history: History = field(default_factory=dict)

    def record(self, terms: dict[str, float]) -> None:
        """Add one step's loss terms to the epoch's sums."""
        for name, value in terms.items():
            self.epoch_sums[name] = self.epoch_sums.get(name, 0.0) + value
        self.step += 1
        self.step_in_epoch += 1

    def close_epoch(self, steps_per_epoch: int) -> None:
        """The epoch's mean of every term goes into the history; the next epoch starts."""
        for name, total in self.epoch_sums.items():
            self.history.setdefault(name, []).append(total / steps_per_epoch)
        self.epoch, self.step_in_epoch, self.epoch_sums = self.epoch + 1, 0, {}

    def as_dict(self) -> dict:
        """What a checkpoint saves of the run; :meth:`from_checkpoint` reads it back."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, state: dict) -> RunState:
        return cls(**{f.name: state[f.name] for f in fields(cls)})


def fit(
    model: LatentVariableModel,
    data: Dataset | torch.Tensor | Sequence[torch.Tensor],
    *,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    resume: bool = True,
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool | str | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    num_workers: int | None = None,
) -> History:
    """Train ``model`` on ``data`` and return the per-epoch mean of every loss term.

    Args:
        epochs: passes over the data (a whole number; ``max_steps`` stops part-way).
        batch_size: examples per step (the last batch of an epoch may be smaller). Under
            ``torchrun`` this is the *global* batch, split over the processes, so a run gives the
            same steps on one GPU or eight.
        seed: seeds parameters' noise and the data order; the same seed gives the same run.
        device: defaults to :func:`latentlab.config.default_device` (under ``torchrun``, pass the
            device :func:`latentlab.distributed.setup` returned). A device this machine lacks is refused.
        checkpoint_dir: where checkpoints go, held by this run alone (a lock; another live run
            there is refused; what killed runs left is cleaned) and checked writable before training.
            With ``resume=True`` an existing run there continues from its newest checkpoint (a
            finished run returns at once) if it is this model's: the same class, architecture and
            settings (:meth:`~latentlab.models.base.LatentVariableModel.resume_settings`: likelihood,
            its scale, beta, every loss weight...), else it is refused, naming both values. Optimizer
            settings are the exception: a model built with another learning rate (or weight decay)
            resumes *with the new one*, from the resumed step on, and a warning says so; that is how
            a run that diverged continues more carefully. With ``resume=False`` a directory that
            already holds checkpoints is refused. Only rank 0 writes.
        checkpoint_every: steps between checkpoints (default: once per epoch). A final
            checkpoint is always written at the end.
        keep_checkpoints: how many recent checkpoints to keep (at least 2, so a damaged newest
            file never leaves the run without a good one). A full disk needs room for this many,
            not one more: the oldest is removed to make room before giving up.
        amp: bf16 autocast; ``None`` turns it on for CUDA devices that support bf16. ``True`` on a
            CPU needs native bf16 (AVX512-BF16 or AMX) and is refused elsewhere.
        channels_last: NHWC memory layout for image batches and conv weights (faster convolutions
            on tensor cores and on AVX-512 CPUs); ``None`` turns it on. On a CPU, ``fit`` also calls
            :func:`~latentlab.training.switches.keep_freed_memory` (a process-wide allocator setting).
        compile: ``torch.compile`` each of the model's sub-networks in place (state-dict keys do not
            change, so checkpoints stay interchangeable); ``True`` uses the default backend, a string
            names one (``"eager"`` checks the wiring without code generation); ``None`` turns it on
            for CUDA, where the first steps then pay a minute or more of compilation.
        max_steps: stop after this many optimisation steps in total (counting resumed ones).
        progress: show a tqdm bar (a widget in notebooks, text elsewhere; rank 0 only).
        num_workers: DataLoader worker processes for Dataset inputs (tensor inputs are indexed
            directly and need none); ``None``: up to 8 on CUDA (with pinned memory), else 0.

    The data is checked before any step (:func:`check_data`): NaN or inf, images outside [0, 1],
    values outside the model's ``input_range`` (a Bernoulli likelihood's [0, 1]), a Dataset that
    yields dicts are refused with the fix. Images given as ``uint8`` tensors (N, C, H, W) are moved to
    the device as bytes and turned into floats in [0, 1] there; floating-point data of another
    precision (float64) is converted to the model's.

    Raises:
        NonFiniteLossError: a loss term became NaN or inf (on any process), or
            (:class:`NonFiniteStateError`) the parameters or optimizer state about to be saved did.
            The message names the last good checkpoint: finite, and followed by a finite loss.
        CheckpointError: the newest checkpoint is damaged, non-finite or belongs to another run; the
            directory is another run's, or cannot be written.
    """
    _check_arguments(model, epochs, batch_size, seed, checkpoint_every, keep_checkpoints, max_steps, num_workers)
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    dataset = as_dataset(data)
    check_data(model, dataset)
    steps_per_epoch = _steps_per_epoch(len(dataset), batch_size, world)
    device = _training_device(device, world)
    amp, channels_last, compile = resolve_switches(device, amp, channels_last, compile)
    if device.type == "cpu":
        keep_freed_memory()  # the next step reuses this one's activations' memory instead of faulting it in again
    num_workers = (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0) if num_workers is None else num_workers
    checkpoint_every = checkpoint_every or steps_per_epoch
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    identity = {"seed": seed, "batch_size": batch_size, "num_examples": len(dataset)}

    with contextlib.ExitStack() as held:
        if checkpoint_dir is not None:  # before anything is read there: one run per directory
            on_rank0(main, lambda: held.enter_context(claim_checkpoint_dir(checkpoint_dir)))
        config.seed_everything(seed + rank)  # each process draws its own noise; rank 0 keeps the plain seed
        settings = model.resume_settings()  # as built, before training changes anything
        dataset = _place(model, dataset, device, channels_last)
        optimizers = model.configure_optimizers()
        schedulers = model.configure_schedulers(optimizers)
        run, resumed = _resume(model, optimizers, schedulers, settings, identity, checkpoint_dir, resume, device, seed, rank)
        if compile:
            compile_subnetworks(model, compile)

        def write_checkpoint() -> None:
            state = {"format": CHECKPOINT_FORMAT, "model_class": type(model).__name__, "settings": settings,
                     "model": model.state_dict(), "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
                     "schedulers": {n: s.state_dict() for n, s in schedulers.items()}, **identity,
                     "rng": rng_state(), **run.as_dict()}
            save_keeping(state, checkpoint_dir, keep_checkpoints)

        total_steps = epochs * steps_per_epoch if max_steps is None else min(epochs * steps_per_epoch, max_steps)
        dtype = model_dtype(model)
        unconfirmed = run.step if resumed else -2  # the newest checkpoint whose next step is still to check
        bar = held.enter_context(ProgressBar(progress and main, total_steps, run.step, type(model).__name__))
        model.train()
        while run.epoch < epochs and run.step < total_steps:
            model.on_epoch_start(run.epoch)
            for batch, index, global_size in _epoch_batches(dataset, run, batch_size, seed, rank, world, num_workers, device):
                batch = tuple(to_device(t, device, channels_last, dtype) for t in batch)
                distributed.set_batch_share(len(batch[0]), global_size)
                with torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext():
                    terms = model.training_step(batch, optimizers)
                terms = distributed.average_terms(terms)  # a NaN on any process now stops them all
                check_finite_loss(terms, batch, index, run.step, run.epoch, checkpoint_dir, checkpoint_every, main)
                run.record(terms)
                bar.update(epoch=run.epoch + 1, loss=terms.get("loss", float("nan")))
                epoch_done = run.step_in_epoch == steps_per_epoch
                if epoch_done:
                    run.close_epoch(steps_per_epoch)
                    for scheduler in schedulers.values():
                        scheduler.step()
                stopping = run.step >= total_steps
                writing = checkpoint_dir is not None and (run.step % checkpoint_every == 0 or stopping)
                if writing or run.step == unconfirmed + 1:  # see check_finite_state: what makes a checkpoint good
                    check_finite_state(model, optimizers, run.step, checkpoint_dir, checkpoint_every, main)
                if writing:
                    on_rank0(main, write_checkpoint)  # and nobody runs ahead of a checkpoint it might resume from
                    unconfirmed = run.step
                if stopping or epoch_done:
                    break
    distributed.broadcast_module(model)  # batch-norm statistics differ per process: keep rank 0's, as saved
    model.eval()
    return run.history


def _steps_per_epoch(num_examples: int, batch_size: int, world: int) -> int:
    if batch_size < world:
        raise ValueError(
            f"batch_size={batch_size} is smaller than the {world} processes; each needs at least one example per step"
        )
    steps = len(step_batches(torch.arange(num_examples), batch_size, 0, world))
    if steps == 0:
        raise ValueError(f"{num_examples} examples cannot feed {world} processes; use more data or fewer processes")
    return steps


def _training_device(device: str | torch.device | None, world: int) -> torch.device:
    """The device given (checked), else under torchrun with NCCL the GPU this process was given, else the default."""
    if device is None and world > 1 and torch.distributed.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())  # the GPU distributed.setup gave this process
    return config.check_device(device) if device is not None else config.default_device()


def _place(model: LatentVariableModel, dataset: Dataset, device: torch.device, channels_last: bool) -> Dataset:
    """Move the model to ``device`` (every process from rank 0's parameters); pin in-memory data for CUDA."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    distributed.broadcast_module(model)
    if device.type == "cuda" and isinstance(dataset, TensorDataset):
        dataset = TensorDataset(*(t.pin_memory() for t in dataset.tensors))  # once, so copies can be asynchronous
    return dataset


def _resume(model, optimizers, schedulers, settings, identity, checkpoint_dir, resume, device, seed, rank) -> tuple[RunState, bool]:
    """The run's state: from the newest checkpoint in ``checkpoint_dir`` when there is one (checked to be
    this model's run), else a fresh one. The optimizers keep the settings the model was built with now."""
    existing = list_checkpoints(checkpoint_dir) if checkpoint_dir is not None else []
    if not existing:
        return RunState(), False
    if not resume:
        raise CheckpointError(
            f"{checkpoint_dir} already holds checkpoints of another run (newest: {existing[-1].name}); "
            "pass resume=True to continue it, or a new checkpoint_dir to start afresh (nothing is overwritten)."
        )
    newest = existing[-1]
    configured = optimizer_settings(optimizers)
    state = load_checkpoint(newest, map_location=device)
    check_resumable(state, newest, model, settings, identity)
    load_states(state, newest, model, optimizers, schedulers)
    apply_optimizer_settings(configured, optimizers, schedulers, newest, state["step"])
    run = RunState.from_checkpoint(state)
    if rank == 0:
        set_rng_state(state["rng"])
    else:  # the checkpoint holds rank 0's generator; the others continue on fresh noise
        config.seed_everything(seed + rank + 7919 * run.step)
    return run, True


def _epoch_batches(dataset, run: RunState, batch_size, seed, rank, world, num_workers, device):
    """This process's batches for the rest of the current epoch: (batch, example indices, global batch size)."""
    steps = step_batches(epoch_order(len(dataset), seed, run.epoch), batch_size, rank, world)
    global_sizes = [min(batch_size, len(dataset) - i * batch_size) for i in range(len(steps))]
    steps, global_sizes = steps[run.step_in_epoch:], global_sizes[run.step_in_epoch:]
    return zip(batches(dataset, steps, num_workers, device.type == "cuda"), steps, global_sizes)


def _check_arguments(
    model: object, epochs, batch_size, seed, checkpoint_every, keep_checkpoints, max_steps, num_workers
) -> None:
    """Counts are whole numbers in range: ``epochs=2.5``, ``max_steps=-1`` or ``"10"`` are refused, not rounded."""
    if not isinstance(model, LatentVariableModel):
        raise ValueError(
            f"fit() trains latentlab models, got {type(model).__name__}; subclass "
            "latentlab.LatentVariableModel (loss_terms and configure_optimizers) to train your own"
        )
    check_count(epochs, "epochs", 0, "; to stop part-way through an epoch, pass max_steps=")
    check_count(batch_size, "batch_size", 1)
    check_count(seed, "seed", 0)
    if checkpoint_every is not None:
        check_count(checkpoint_every, "checkpoint_every", 1, " (steps between checkpoints; None: once per epoch)")
    check_count(keep_checkpoints, "keep_checkpoints", 2, " so a damaged newest checkpoint has a fallback")
    if max_steps is not None:
        check_count(max_steps, "max_steps", 0, " (None: no limit)")
    if num_workers is not None:
        check_count(num_workers, "num_workers", 0)


def on_rank0(main: bool, action: Callable[[], object]) -> None:
    """Run ``action`` on rank 0 alone; every process then raises what it raised, so a run stops everywhere at once.

    Also a barrier: nobody runs ahead of a checkpoint it might resume from.
    """
    error = None
    if main:
        try:
            action()
        except (CheckpointError, NonFiniteLossError) as err:
            error = err
    shared = distributed.broadcast_object(None if error is None else (type(error), str(error)))
    if error is not None:
        raise error
    if shared is not None:
        raise shared[0](shared[1])


class ProgressBar:
    """A tqdm bar on rank 0 when asked for (a widget in notebooks, text elsewhere), else nothing."""

    def __init__(self, enabled: bool, total: int, initial: int, name: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"training {name}", leave=False)

    def update(self, epoch: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
