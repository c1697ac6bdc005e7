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
* checks of the arguments and the data before any step (:mod:`latentlab.checks`), so a user's
  mistake gets a message naming it and the fix instead of a silent wrong run or a torch traceback;
* checkpoints every N steps, written atomically (temporary file, fsync, rename) and read
  back with ``torch.load(weights_only=True)``; resume restores model, optimizers,
  schedulers, history and RNG state, after checking that the checkpoint belongs to the model
  given (class, architecture, settings) and is finite;
* one run per checkpoint directory: a lock held for the run (:func:`claim_checkpoint_dir`);
* a guard that stops training with a clear error when a loss term becomes NaN or inf, or the
  parameters or optimizer state about to be saved do, so the checkpoints left are good ones.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import pickle
import random
import re
import socket
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from . import config, distributed
from .checks import check_count, check_dataset_item, check_finite_values, check_training_input
from .models.base import LatentVariableModel

try:  # POSIX; elsewhere the directory lock is skipped (see claim_checkpoint_dir)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

CHECKPOINT_FORMAT = "latentlab-checkpoint-v1"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{9})\.pt$")
#: what a run killed mid-write leaves behind: its temporary checkpoint, its writability probe
_ORPHAN_NAME = re.compile(r"^(step-\d{9}\.pt\.tmp\d+|\.write-test\d+)$")
LOCK_NAME = ".lock"
#: suffix of a checkpoint moved aside because the loss right after it was NaN or inf
NONFINITE_SUFFIX = ".nonfinite"

History = dict[str, list[float]]


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or written, or does not belong to this run."""


class CheckpointWriteError(CheckpointError):
    """A file could not be written (disk full, no permission); ``errno`` is the operating system's code."""

    def __init__(self, message: str, errno_code: int | None = None):
        super().__init__(message)
        self.errno = errno_code


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; training stopped and no bad checkpoint was left as the newest."""


class NonFiniteStateError(NonFiniteLossError):
    """The parameters or optimizer state about to be saved hold NaN or inf; training stopped, nothing was written.

    A subclass of :class:`NonFiniteLossError`, so one ``except`` catches every divergence.
    """


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step-{step:09d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _CHECKPOINT_NAME.match(p.name)]
    return sorted(found, key=_checkpoint_step)


def _checkpoint_step(path: Path) -> int:
    return int(_CHECKPOINT_NAME.match(path.name).group(1))


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a reader sees the old file or the new one, never half."""
    return write_atomically(path, lambda f: torch.save(state, f))


class _RecordingFile:
    """A file that remembers the OSError its ``write`` raised: torch.save reports a failed write as an
    ``inline_container.cc`` enforce failure, which names neither the cause (a full disk) nor the file."""

    def __init__(self, file: BinaryIO):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str):
        return getattr(self.file, name)


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}  # out of space, or over a disk quota


def _write_error(path: Path, err: OSError) -> CheckpointWriteError:
    """A write failure as a message naming the file, the cause and the fix."""
    if err.errno in _DISK_FULL:
        fix = f"the disk holding {path.parent} is full: free space there, or write to a directory on another disk"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"{path.parent} is not writable: fix its permissions, or choose a writable directory"
    else:
        fix = "check that the directory exists and the disk works"
    return CheckpointWriteError(f"could not write {path} ({err.strerror or err}); {fix}", err.errno)


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, make it durable, then rename it over ``path``.

    An ``OSError`` on the way (no space, no permission) becomes a :class:`CheckpointWriteError` naming
    ``path``; the temporary file is removed and an existing ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            recording = _RecordingFile(f)
            try:
                write(recording)
            except RuntimeError as err:
                if recording.error is None:
                    raise
                raise recording.error from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as err:
        raise _write_error(path, err) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; a damaged file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}).{_fallback(path)}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a latentlab checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state


def _fallback(path: Path) -> str:
    """What to do about a bad newest checkpoint: resume from the previous one, or start again."""
    older = [p for p in list_checkpoints(path.parent) if p != path]
    if older:
        return f" The previous checkpoint {older[-1]} is untouched: move {path.name} aside to resume from it."
    return " Delete it to start the run again."


def _save_keeping(state: dict, directory: Path, keep: int) -> Path:
    """Write the checkpoint of ``state["step"]``, then keep the newest ``keep``.

    Needs room for ``keep`` checkpoints, not ``keep + 1``: when the disk is full, the oldest is removed
    and the write tried once more (``keep - 1`` good checkpoints stay meanwhile).
    """
    path = checkpoint_path(directory, state["step"])
    try:
        save_checkpoint(state, path)
    except CheckpointWriteError as err:
        older = [p for p in list_checkpoints(directory) if p != path]
        if err.errno not in _DISK_FULL or len(older) < keep:
            raise
        size = older[-1].stat().st_size
        older[0].unlink()
        try:
            save_checkpoint(state, path)
        except CheckpointWriteError as again:
            raise CheckpointWriteError(
                f"{again}. The oldest checkpoint was removed to make room and it still does not fit: this run keeps "
                f"{keep} checkpoints of about {size / 1e6:.1f} MB each and needs room for {keep}",
                again.errno,
            ) from again
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- one run per directory


@contextlib.contextmanager
def claim_checkpoint_dir(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold ``directory`` for one run: create it, check it is writable, lock it, clean what dead runs left.

    The lock is an exclusive ``flock`` on ``<directory>/.lock``, held until the block ends. The kernel
    drops it when its process dies, however it dies (``kill -9`` included), so a lock left by a dead
    run never blocks the next; the file keeps the holder's pid and host for the message. With the
    lock held no other run writes here, so temporary checkpoints (``*.pt.tmp<pid>``) found are
    orphans of killed runs and are removed. On systems without ``fcntl`` the lock is skipped.
    """
    directory = Path(directory)
    _make_writable_directory(directory)
    lock_file = directory / LOCK_NAME
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise _write_error(lock_file, err) from err
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = lock_file.read_text(errors="replace").strip() or "another process"
                raise CheckpointError(
                    f"{directory} is in use by another run ({holder}): one checkpoint_dir holds one run, or the two "
                    "would overwrite each other's checkpoints. Wait for that run to finish (or stop it), or pass "
                    "another checkpoint_dir."
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        for orphan in directory.iterdir():
            if _ORPHAN_NAME.match(orphan.name):
                orphan.unlink(missing_ok=True)
        yield directory
    finally:
        os.close(fd)  # releases the lock


def _make_writable_directory(directory: Path) -> None:
    """Create ``directory`` and prove a file can be written there, before the training it is meant to keep."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CheckpointError(
            f"checkpoint_dir {directory} is not a directory (it, or a folder above it, is a file); "
            "pass the path of a directory (it is created if missing)"
        ) from None
    except OSError as err:
        raise CheckpointError(
            f"cannot create checkpoint_dir {directory} ({err.strerror or err}); choose a writable place"
        ) from err
    probe = directory / f".write-test{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"latentlab")
        probe.unlink()
    except OSError as err:
        raise CheckpointError(
            f"checkpoint_dir {directory} is not writable ({err.strerror or err}); fix its permissions or pass "
            "a writable directory (to read a finished run from here, use load_checkpoint)"
        ) from err


def _on_rank0(main: bool, action: Callable[[], object]) -> None:
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


# ----------------------------------------------------------------------------- resuming


def _check_resumable(state: dict, path: Path, model: LatentVariableModel, settings: dict, run_identity: dict) -> None:
    """Refuse a checkpoint that is not this model's run: class, architecture, settings, seed and data, finite values."""
    saved_class, ours = state.get("model_class"), type(model).__name__
    if saved_class is not None and saved_class != ours:
        raise CheckpointError(
            f"{path} holds a {saved_class}, but this model is a {ours}; build a {saved_class} to resume that run, "
            f"or pass a new checkpoint_dir to train the {ours}."
        )
    _check_architecture(state["model"], model, path)
    _check_settings_match(state, settings, model, path)
    saved_identity = {key: state[key] for key in run_identity}
    if saved_identity != run_identity:
        described = ", ".join(f"{k}={v}" for k, v in saved_identity.items())
        ours_described = ", ".join(f"{k}={v}" for k, v in run_identity.items())
        raise CheckpointError(
            f"{path} belongs to a run with {described}; this call has {ours_described}. "
            "Use the same settings to resume, or a new checkpoint_dir."
        )
    bad = _nonfinite(state["model"].items()) + _nonfinite(_saved_optimizer_tensors(state["optimizers"]))
    if bad:
        raise CheckpointError(f"{path} holds NaN or inf (in {', '.join(bad[:4])}), so it is no good state to resume from.{_fallback(path)}")


def _check_architecture(saved: dict[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    """Parameter and buffer names and shapes must match (instead of load_state_dict's list of raw errors)."""
    theirs = {name: tuple(t.shape) for name, t in saved.items()}
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if theirs == ours:
        return
    problems = [f"{n} is {theirs[n]} there and {ours[n]} here" for n in ours if n in theirs and theirs[n] != ours[n]]
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing:
        problems.append(f"this model has {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}, the checkpoint not")
    if extra:
        problems.append(f"the checkpoint has {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}, this model not")
    raise CheckpointError(
        f"{path} holds another architecture than this {type(model).__name__} ({'; '.join(problems[:4])}). "
        "Build the model as that run did (the same networks, widths and latent size) to resume it, or pass a "
        "new checkpoint_dir to train this one."
    )


_MISSING = object()


def _check_settings_match(state: dict, settings: dict, model: LatentVariableModel, path: Path) -> None:
    """Refuse a checkpoint trained with other settings (``LatentVariableModel.resume_settings``) than the model's.

    Checkpoints written before settings were recorded are compared on their settings buffers alone.
    """
    saved = state.get("settings")
    if saved is None:
        saved = {n: t.tolist() for n, t in state["model"].items() if n in model.settings_buffers}
        settings = {n: v for n, v in settings.items() if n in saved}
    for name in sorted(set(saved) | set(settings), key=str):
        old, new = saved.get(name, _MISSING), settings.get(name, _MISSING)
        if not _same(old, new):
            shown_old = "no such setting" if old is _MISSING else f"{name} = {old!r}"
            shown_new = "no such setting" if new is _MISSING else f"{name} = {new!r}"
            raise CheckpointError(
                f"{path} was trained with {shown_old}, but this model was built with {shown_new}. Build the model "
                f"as that run did to resume it, or delete {path.parent} (or use another checkpoint_dir) to train anew."
            )


def _same(a: object, b: object) -> bool:
    """Equal settings: floats to a relative 1e-6 (they travel through float32 buffers), lists element by element."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return type(a) is type(b) and a == b


def _optimizer_settings(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, list[dict]]:
    """Every param group's hyperparameters as the model configured them (before a resume loads the saved ones)."""
    return {
        name: [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
        for name, opt in optimizers.items()
    }


def _apply_optimizer_settings(
    configured: dict[str, list[dict]], optimizers: dict, schedulers: dict, path: Path, step: int
) -> None:
    """Give the resumed optimizers the hyperparameters the model was built with now, and say so.

    A deliberate change (a lower learning rate after a NaN, another weight decay) is honoured from the
    resumed step on, never silently replaced by the saved value, and a warning names it.
    """
    for name, opt in optimizers.items():
        changes = []
        for index, (group, wanted) in enumerate(zip(opt.param_groups, configured[name])):
            for key, value in wanted.items():
                if key in ("lr", "initial_lr") or isinstance(value, torch.Tensor):
                    continue
                if key in group and not _same(_listed(group[key]), _listed(value)):
                    changes.append(f"{key} {group[key]!r} -> {value!r}")
                group[key] = value
            if not isinstance(wanted["lr"], torch.Tensor):
                changes += _set_base_rate(opt, index, wanted.get("initial_lr", wanted["lr"]), schedulers)
        if changes and distributed.is_main_process():
            warnings.warn(
                f"resuming {path} at step {step} with optimizer {name!r} as the model was built now: "
                f"{', '.join(changes)} (the steps before used the old values)",
                stacklevel=3,
            )


def _set_base_rate(opt: torch.optim.Optimizer, index: int, new_base: float, schedulers: dict) -> list[str]:
    """Make ``new_base`` param group ``index``'s base learning rate; the schedule's decay so far carries over.

    The resumed rate is scaled by new/old base, and a scheduler stepping this optimizer gets the new base.
    """
    group = opt.param_groups[index]
    old_base = group.get("initial_lr", group["lr"])
    if _same(float(old_base), float(new_base)):
        return []
    group["lr"] = group["lr"] * new_base / old_base
    if "initial_lr" in group:
        group["initial_lr"] = new_base
    for sched in schedulers.values():
        if getattr(sched, "optimizer", None) is opt and hasattr(sched, "base_lrs"):
            sched.base_lrs[index] = new_base
            sched._last_lr = [g["lr"] for g in opt.param_groups]  # what get_last_lr() reports
    return [f"learning rate {old_base:g} -> {new_base:g}"]


def _listed(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _load_states(state: dict, path: Path, model: nn.Module, optimizers: dict, schedulers: dict) -> None:
    """Load model, optimizer and scheduler states; a mismatch torch finds is reported with the file."""
    try:
        model.load_state_dict(state["model"])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} does not fit this model's optimizers or schedulers ({type(err).__name__}: {err}); "
            "build the model as that run did to resume it, or pass a new checkpoint_dir."
        ) from err


# ----------------------------------------------------------------------------- finite values


def _nonfinite(named: Iterable[tuple[str, object]]) -> list[str]:
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


def _optimizer_tensors(model: nn.Module, optimizers: dict) -> Iterator[tuple[str, torch.Tensor]]:
    names = {id(p): n for n, p in model.named_parameters()}
    for opt_name, opt in optimizers.items():
        for param, slots in opt.state.items():
            for key, value in slots.items():
                yield f"optimizer {opt_name!r} {key} of {names.get(id(param), 'a parameter')}", value


def _saved_optimizer_tensors(saved: dict) -> Iterator[tuple[str, torch.Tensor]]:
    for opt_name, opt_state in saved.items():
        for index, slots in opt_state.get("state", {}).items():
            for key, value in slots.items():
                yield f"optimizer {opt_name!r} {key} of parameter {index}", value


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


def _model_dtype(model: nn.Module) -> torch.dtype:
    """The precision the model computes in: its first floating-point parameter's (float32 if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


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
    if batch_size < world:
        raise ValueError(
            f"batch_size={batch_size} is smaller than the {world} processes; each needs at least one example per step"
        )
    dataset = as_dataset(data)
    check_data(model, dataset)
    if device is None and world > 1 and torch.distributed.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())  # the GPU distributed.setup gave this process
    device = config.check_device(device) if device is not None else config.default_device()
    amp, channels_last, compile = resolve_switches(device, amp, channels_last, compile)
    num_workers = (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0) if num_workers is None else num_workers
    pin_memory = device.type == "cuda"
    main = rank == 0
    steps_per_epoch = len(step_batches(torch.arange(len(dataset)), batch_size, 0, world))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} examples cannot feed {world} processes; use more data or fewer processes")
    checkpoint_every = checkpoint_every or steps_per_epoch

    with contextlib.ExitStack() as held:
        if checkpoint_dir is not None:  # before anything is read there: one run per directory
            checkpoint_dir = Path(checkpoint_dir)
            _on_rank0(main, lambda: held.enter_context(claim_checkpoint_dir(checkpoint_dir)))

        config.seed_everything(seed + rank)  # each process draws its own noise; rank 0 keeps the plain seed
        settings = model.resume_settings()  # as built, before training changes anything
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        distributed.broadcast_module(model)  # every process starts from rank 0's parameters
        if pin_memory and isinstance(dataset, TensorDataset):
            dataset = TensorDataset(*(t.pin_memory() for t in dataset.tensors))  # once, so copies can be asynchronous
        optimizers = model.configure_optimizers()
        schedulers = model.configure_schedulers(optimizers)
        configured = _optimizer_settings(optimizers)
        run = {"step": 0, "epoch": 0, "step_in_epoch": 0, "epoch_sums": {}, "history": {}}
        identity = {"seed": seed, "batch_size": batch_size, "num_examples": len(dataset)}

        existing = list_checkpoints(checkpoint_dir) if checkpoint_dir is not None else []
        if existing and not resume:
            raise CheckpointError(
                f"{checkpoint_dir} already holds checkpoints of another run (newest: {existing[-1].name}); "
                "pass resume=True to continue it, or a new checkpoint_dir to start afresh (nothing is overwritten)."
            )
        if existing:
            newest = existing[-1]
            state = load_checkpoint(newest, map_location=device)
            _check_resumable(state, newest, model, settings, identity)
            _load_states(state, newest, model, optimizers, schedulers)
            _apply_optimizer_settings(configured, optimizers, schedulers, newest, state["step"])
            run = {k: state[k] for k in run}
            if main:
                _set_rng_state(state["rng"])
            else:  # the checkpoint holds rank 0's generator; the others continue on fresh noise
                config.seed_everything(seed + rank + 7919 * run["step"])
        if compile:
            compile_subnetworks(model, compile)

        def write_checkpoint() -> None:
            state = {
                "format": CHECKPOINT_FORMAT,
                "model_class": type(model).__name__,
                "settings": settings,
                "model": model.state_dict(),
                "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
                **identity,
                "rng": _rng_state(),
                **run,
            }
            _save_keeping(state, checkpoint_dir, keep_checkpoints)

        total_steps = epochs * steps_per_epoch
        if max_steps is not None:
            total_steps = min(total_steps, max_steps)
        dtype = _model_dtype(model)
        unconfirmed = run["step"] if existing else -2  # the newest checkpoint whose next step is still to check
        bar = _progress_bar(progress and main, total_steps, run["step"], type(model).__name__)
        model.train()
        try:
            while run["epoch"] < epochs and run["step"] < total_steps:
                model.on_epoch_start(run["epoch"])
                steps = step_batches(epoch_order(len(dataset), seed, run["epoch"]), batch_size, rank, world)
                global_sizes = [min(batch_size, len(dataset) - i * batch_size) for i in range(len(steps))]
                steps, global_sizes = steps[run["step_in_epoch"] :], global_sizes[run["step_in_epoch"] :]
                batches = _batches(dataset, steps, num_workers, pin_memory)
                for batch, index, global_size in zip(batches, steps, global_sizes):
                    batch = tuple(to_device(t, device, channels_last, dtype) for t in batch)
                    distributed.set_batch_share(len(batch[0]), global_size)
                    with torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext():
                        terms = model.training_step(batch, optimizers)
                    terms = distributed.average_terms(terms)  # a NaN on any process now stops them all
                    _check_finite(terms, batch, index, run, checkpoint_dir, checkpoint_every, main)
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
                    writing = checkpoint_dir is not None and (run["step"] % checkpoint_every == 0 or stopping)
                    if writing or run["step"] == unconfirmed + 1:  # see _check_state
                        _check_state(model, optimizers, run["step"], checkpoint_dir, checkpoint_every, main)
                    if writing:
                        _on_rank0(main, write_checkpoint)  # and nobody runs ahead of a checkpoint it might resume from
                        unconfirmed = run["step"]
                    if stopping or epoch_done:
                        break
        finally:
            if bar is not None:
                bar.close()
    distributed.broadcast_module(model)  # batch-norm statistics differ per process: keep rank 0's, as saved
    model.eval()
    return run["history"]


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


def _check_finite(
    terms: dict[str, float], batch: tuple, index: torch.Tensor, run: dict, checkpoint_dir, checkpoint_every: int, main: bool
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
    at = f"at step {run['step'] + 1} (epoch {run['epoch'] + 1})"
    data = _nonfinite_examples(batch, index)
    if distributed.average_terms({"data": float(data is not None)})["data"] > 0:  # on any process
        raise ValueError(
            f"loss term(s) {bad} became non-finite {at} because the batch itself holds NaN or inf "
            f"({data or 'on another process'}): the data, not the learning rate. Clean the Dataset "
            "(drop or impute those examples) and train again."
        )
    moved = _set_aside(checkpoint_dir, run["step"], "the parameters that gave this loss", main)
    raise NonFiniteLossError(
        f"loss term(s) {bad} became non-finite {at}; training stopped. {moved}{_advice(checkpoint_dir, checkpoint_every)}"
    )


def _check_state(model: nn.Module, optimizers: dict, step: int, checkpoint_dir, checkpoint_every: int, main: bool) -> None:
    """Stop when the parameters or optimizer state hold NaN or inf after ``step``: before every write, and
    after the first step following each checkpoint.

    That second check is what makes a checkpoint *good*: the step after it ended finite, loss and state,
    so resuming from it with a lower learning rate replays a step known to work (Adam's moments do not
    depend on the learning rate: weights that give overflowing gradients overflow them at any rate).
    A checkpoint whose next step did not end finite is moved aside, as for a non-finite loss.
    Parameters and optimizer state are identical on every process, so every process decides alike.
    """
    bad = _nonfinite([*model.state_dict().items(), *_optimizer_tensors(model, optimizers)])
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
    if saved and _checkpoint_step(saved[-1]) == step:
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


def _progress_bar(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"training {name}", leave=False)
