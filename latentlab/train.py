"""The one training loop. Every model plugs in through ``training_step`` and ``configure_optimizers``.

What the loop owns, so models do not have to:

* device choice, seeding, a data order that is a pure function of (seed, epoch), so a run
  can stop anywhere and continue exactly where it stopped;
* per-epoch history of every loss term the model reports;
* the GPU fast paths, each switchable and on by default on CUDA: bf16 mixed precision,
  channels_last memory layout, ``torch.compile`` of the sub-networks, pinned host memory and
  DataLoader worker processes;
* data-parallel training over several processes started by ``torchrun`` (see
  :mod:`latentlab.distributed`): the global batch is split over processes, gradients averaged,
  checkpoints and progress written by rank 0 alone;
* checkpoints every N steps, written atomically (temporary file, fsync, rename) and read
  back with ``torch.load(weights_only=True)``; resume restores model, optimizers,
  schedulers, history and RNG state;
* a guard that stops training with a clear error when a loss term becomes NaN or inf,
  before anything is written, so the last good checkpoint stays the newest.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import random
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from . import config, distributed
from .models.base import LatentVariableModel

CHECKPOINT_FORMAT = "latentlab-checkpoint-v1"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{9})\.pt$")

History = dict[str, list[float]]


class CheckpointError(RuntimeError):
    """A checkpoint could not be read, or does not belong to this run."""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; training stopped and nothing was written."""


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step-{step:09d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _CHECKPOINT_NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT_NAME.match(p.name).group(1)))


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a reader sees the old file or the new one, never half."""
    return write_atomically(path, lambda f: torch.save(state, f))


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, make it durable, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; a damaged file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        older = [p for p in list_checkpoints(path.parent) if p != path]
        fallback = (
            f" The previous checkpoint {older[-1]} is untouched: move {path.name} aside to resume from it."
            if older
            else " Delete it to start the run again."
        )
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}).{fallback}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a latentlab checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state


# Buffers that hold a model's *settings* (fixed likelihood scale, CSVAE's priors), not learned state:
# loading a checkpoint would silently replace the settings the model was built with.
SETTINGS_BUFFERS = ("decoder_log_std", "w_prior_mean", "w_prior_log_var")


def _check_settings_match(model: torch.nn.Module, saved: dict, path: Path) -> None:
    """Refuse a checkpoint whose settings buffers differ from the model's (e.g. another ``decoder_std``)."""
    for name, value in model.named_buffers():
        if name.rsplit(".", 1)[-1] in SETTINGS_BUFFERS and name in saved:
            old = saved[name].to(value.device)
            if old.shape != value.shape or not torch.allclose(old, value):
                raise CheckpointError(
                    f"{path} was trained with {name} = {old.tolist()}, but this model was built with "
                    f"{value.tolist()} (another setting, e.g. decoder_std or the priors). Build the model as that "
                    f"run did to resume it, or delete {path.parent} (or use another checkpoint_dir) to train anew."
                )


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    # random.setstate needs tuples all the way down; a round trip may hand back lists
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


# ----------------------------------------------------------------------------- data order


def as_dataset(data: Dataset | torch.Tensor | Sequence[torch.Tensor]) -> Dataset:
    """Accept a Dataset, a tensor ``x``, or a tuple ``(x, y, ...)`` of tensors of equal length."""
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, (tuple, list)):
        if not data or not all(isinstance(t, torch.Tensor) for t in data):
            raise ValueError("data must be a Dataset, a tensor, or a tuple of tensors such as (x, y)")
        lengths = {len(t) for t in data}
        if len(lengths) != 1:
            raise ValueError(
                f"the tensors in data have different lengths {sorted(lengths)}; "
                "x and y must hold one row per example"
            )
        data = TensorDataset(*data)
    if len(data) == 0:
        raise ValueError("the training data is empty; pass at least one example")
    return data


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


def _batches(
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


def to_device(t: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    t = t.to(device, non_blocking=True)
    if t.dim() == 4:
        if t.dtype == torch.uint8:  # images stored as bytes travel 4x lighter and become [0, 1] floats here
            t = t.float().div_(255)
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
    return t


# ----------------------------------------------------------------------------- the loop


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
        epochs: passes over the data.
        batch_size: examples per step (the last batch of an epoch may be smaller). Under
            ``torchrun`` this is the *global* batch, split over the processes, so a run gives the
            same steps on one GPU or eight.
        seed: seeds parameters' noise and the data order; the same seed gives the same run.
        device: defaults to :func:`latentlab.config.default_device` (under ``torchrun``, pass the
            device :func:`latentlab.distributed.setup` returned).
        checkpoint_dir: where checkpoints go; with ``resume=True`` an existing run there
            continues from its newest checkpoint (a finished run returns at once); with
            ``resume=False`` a directory that already holds checkpoints is refused. Only rank 0 writes.
        checkpoint_every: steps between checkpoints (default: once per epoch). A final
            checkpoint is always written at the end.
        keep_checkpoints: how many recent checkpoints to keep (at least 2, so a damaged newest
            file never leaves the run without a good one).
        amp: bf16 autocast; ``None`` turns it on for CUDA devices that support bf16.
        channels_last: NHWC memory layout for image batches and conv weights (faster convolutions
            on tensor cores); ``None`` turns it on for CUDA.
        compile: ``torch.compile`` each of the model's sub-networks in place (state-dict keys do not
            change, so checkpoints stay interchangeable); ``True`` uses the default backend, a string
            names one (``"eager"`` checks the wiring without code generation); ``None`` turns it on
            for CUDA, where the first steps then pay a minute or more of compilation.
        max_steps: stop after this many optimisation steps in total (counting resumed ones).
        progress: show a tqdm bar (a widget in notebooks, text elsewhere; rank 0 only).
        num_workers: DataLoader worker processes for Dataset inputs (tensor inputs are indexed
            directly and need none); ``None``: up to 8 on CUDA (with pinned memory), else 0.

    Images given as ``uint8`` tensors (N, C, H, W) are moved to the device as bytes and turned into
    floats in [0, 1] there.

    Raises:
        NonFiniteLossError: a loss term became NaN or inf (on any process); nothing was written.
        CheckpointError: the newest checkpoint is damaged or belongs to another run.
    """
    if not isinstance(model, LatentVariableModel):
        raise ValueError(f"fit() trains latentlab models, got {type(model).__name__}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
    if keep_checkpoints < 2:
        raise ValueError("keep_checkpoints must be at least 2 so a damaged newest checkpoint has a fallback")
    rank, world = distributed.rank(), distributed.world_size()
    if batch_size < world:
        raise ValueError(
            f"batch_size={batch_size} is smaller than the {world} processes; each needs at least one example per step"
        )
    dataset = as_dataset(data)
    if device is None and world > 1 and torch.distributed.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())  # the GPU distributed.setup gave this process
    device = torch.device(device) if device is not None else config.default_device()
    amp, channels_last, compile = resolve_switches(device, amp, channels_last, compile)
    num_workers = (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0) if num_workers is None else num_workers
    pin_memory = device.type == "cuda"
    main = rank == 0

    config.seed_everything(seed + rank)  # each process draws its own noise; rank 0 keeps the plain seed
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    distributed.broadcast_module(model)  # every process starts from rank 0's parameters
    if pin_memory and isinstance(dataset, TensorDataset):
        dataset = TensorDataset(*(t.pin_memory() for t in dataset.tensors))  # once, so copies can be asynchronous
    optimizers = model.configure_optimizers()
    schedulers = model.configure_schedulers(optimizers)

    steps_per_epoch = len(step_batches(torch.arange(len(dataset)), batch_size, 0, world))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} examples cannot feed {world} processes; use more data or fewer processes")
    checkpoint_every = checkpoint_every or steps_per_epoch
    run = {"step": 0, "epoch": 0, "step_in_epoch": 0, "epoch_sums": {}, "history": {}}

    existing = list_checkpoints(checkpoint_dir) if checkpoint_dir is not None else []
    if existing and not resume:
        raise CheckpointError(
            f"{checkpoint_dir} already holds checkpoints of another run (newest: {existing[-1].name}); "
            "pass resume=True to continue it, or a new checkpoint_dir to start afresh (nothing is overwritten)."
        )
    if existing:
        newest = existing[-1]
        state = load_checkpoint(newest, map_location=device)
        if (state["seed"], state["batch_size"], state["num_examples"]) != (seed, batch_size, len(dataset)):
            raise CheckpointError(
                f"{newest} belongs to a run with seed={state['seed']}, batch_size={state['batch_size']}, "
                f"{state['num_examples']} examples; this call has seed={seed}, batch_size={batch_size}, "
                f"{len(dataset)} examples. Use the same settings to resume, or a new checkpoint_dir."
            )
        _check_settings_match(model, state["model"], newest)
        model.load_state_dict(state["model"])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        run = {k: state[k] for k in run}
        if main:
            _set_rng_state(state["rng"])
        else:  # the checkpoint holds rank 0's generator; the others continue on fresh noise
            config.seed_everything(seed + rank + 7919 * run["step"])
    if compile:
        compile_subnetworks(model, compile)

    def write_checkpoint() -> Path:
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_class": type(model).__name__,
            "model": model.state_dict(),
            "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
            "seed": seed,
            "batch_size": batch_size,
            "num_examples": len(dataset),
            "rng": _rng_state(),
            **run,
        }
        path = save_checkpoint(state, checkpoint_path(checkpoint_dir, run["step"]))
        for old in list_checkpoints(checkpoint_dir)[:-keep_checkpoints]:
            old.unlink()
        return path

    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    bar = _progress_bar(progress and main, total_steps, run["step"], type(model).__name__)
    model.train()
    try:
        while run["epoch"] < epochs and run["step"] < total_steps:
            model.on_epoch_start(run["epoch"])
            steps = step_batches(epoch_order(len(dataset), seed, run["epoch"]), batch_size, rank, world)
            global_sizes = [min(batch_size, len(dataset) - i * batch_size) for i in range(len(steps))]
            steps, global_sizes = steps[run["step_in_epoch"] :], global_sizes[run["step_in_epoch"] :]
            for batch, global_size in zip(_batches(dataset, steps, num_workers, pin_memory), global_sizes):
                batch = tuple(to_device(t, device, channels_last) for t in batch)
                distributed.set_batch_share(len(batch[0]), global_size)
                with torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext():
                    terms = model.training_step(batch, optimizers)
                terms = distributed.average_terms(terms)  # a NaN on any process now stops them all
                _check_finite(terms, run, checkpoint_dir)
                for name, value in terms.items():
                    run["epoch_sums"][name] = run["epoch_sums"].get(name, 0.0) + value
                run["step"] += 1
                run["step_in_epoch"] += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=run["epoch"] + 1, loss=f"{terms.get('loss', float('nan')):.4g}")
                epoch_done = run["step_in_epoch"] == steps_per_epoch
                if epoch_done:
                    for name, total in run["epoch_sums"].items():
                        run["history"].setdefault(name, []).append(total / steps_per_epoch)
                    run["epoch"] += 1
                    run["step_in_epoch"] = 0
                    run["epoch_sums"] = {}
                    for sched in schedulers.values():
                        sched.step()
                stopping = run["step"] >= total_steps
                if checkpoint_dir is not None and (run["step"] % checkpoint_every == 0 or stopping):
                    if main:
                        write_checkpoint()
                    distributed.barrier()  # nobody runs ahead of a checkpoint it might resume from
                if stopping or epoch_done:
                    break
    finally:
        if bar is not None:
            bar.close()
    distributed.broadcast_module(model)  # batch-norm statistics differ per process: keep rank 0's, as saved
    model.eval()
    return run["history"]


def compile_subnetworks(model: LatentVariableModel, backend: bool | str) -> None:
    """``torch.compile`` every direct sub-network in place (``Module.compile``), leaving parameter names as they are.

    Models call their sub-networks (encoder, decoder, classifier...) rather than one ``forward``,
    so those are what get compiled; containers (ModuleList/ModuleDict) are compiled through their members.
    """
    kwargs = {} if backend is True else {"backend": backend}
    for child in model.children():
        if isinstance(child, nn.ModuleDict):
            nets = list(child.values())
        elif isinstance(child, nn.ModuleList):
            nets = list(child)
        else:
            nets = [child]
        for net in nets:
            net.compile(**kwargs)


def resolve_switches(
    device: torch.device, amp: bool | None, channels_last: bool | None, compile: bool | str | None
) -> tuple[bool, bool, bool | str]:
    """The GPU switches ``fit`` (and the benchmark) run with: each ``None`` means on for CUDA, off elsewhere."""
    cuda = device.type == "cuda"
    return (
        resolve_amp(amp, device),
        cuda if channels_last is None else channels_last,
        cuda if compile is None else compile,
    )


def resolve_amp(amp: bool | None, device: torch.device) -> bool:
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if amp is None:
        return cuda_bf16
    if amp and not cuda_bf16:
        raise ValueError(
            f"amp=True needs a CUDA device with bf16 support, but training runs on {device}; pass amp=False"
        )
    return amp


def _check_finite(terms: dict[str, float], run: dict, checkpoint_dir) -> None:
    bad = {name: value for name, value in terms.items() if not math.isfinite(value)}
    if not bad:
        return
    saved = list_checkpoints(checkpoint_dir) if checkpoint_dir is not None else []
    where = (
        f"The last good checkpoint is {saved[-1]} and was not overwritten; resume from it with a "
        "lower learning rate or smaller loss weights."
        if saved
        else "No checkpoint was written; pass checkpoint_dir= to keep good states."
    )
    raise NonFiniteLossError(
        f"loss term(s) {bad} became non-finite at step {run['step'] + 1} (epoch {run['epoch'] + 1}); "
        f"training stopped. {where}"
    )


def _progress_bar(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"training {name}", leave=False)
