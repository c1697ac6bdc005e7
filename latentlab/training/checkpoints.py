"""Checkpoint files: written atomically, read with ``weights_only=True``, one run per directory.

A checkpoint is a dict (model, optimizers, schedulers, RNG state, the run's position and history),
saved to a temporary file, fsynced and renamed over ``step-<9 digits>.pt``, so a reader sees the old
file or the new one, never half. :func:`claim_checkpoint_dir` holds a directory for one run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import socket
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import torch


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


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or written, or does not belong to this run."""


class CheckpointWriteError(CheckpointError):
    """A file could not be written (disk full, no permission); ``errno`` is the operating system's code."""

    def __init__(self, message: str, errno_code: int | None = None):
        super().__init__(message)
        self.errno = errno_code


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step-{step:09d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _CHECKPOINT_NAME.match(p.name)]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(path: Path) -> int:
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


DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}  # out of space, or over a disk quota


def write_error(path: Path, err: OSError) -> CheckpointWriteError:
    """A write failure as a message naming the file, the cause and the fix."""
    if err.errno in DISK_FULL:
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
        raise write_error(path, err) from err
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
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}).{fallback_advice(path)}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a latentlab checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state


def fallback_advice(path: Path) -> str:
    """What to do about a bad newest checkpoint: resume from the previous one, or start again."""
    older = [p for p in list_checkpoints(path.parent) if p != path]
    if older:
        return f" The previous checkpoint {older[-1]} is untouched: move {path.name} aside to resume from it."
    return " Delete it to start the run again."


def save_keeping(state: dict, directory: Path, keep: int) -> Path:
    """Write the checkpoint of ``state["step"]``, then keep the newest ``keep``.

    Needs room for ``keep`` checkpoints, not ``keep + 1``: when the disk is full, the oldest is removed
    and the write tried once more (``keep - 1`` good checkpoints stay meanwhile).
    """
    path = checkpoint_path(directory, state["step"])
    try:
        save_checkpoint(state, path)
    except CheckpointWriteError as err:
        older = [p for p in list_checkpoints(directory) if p != path]
        if err.errno not in DISK_FULL or len(older) < keep:
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
        raise write_error(lock_file, err) from err
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
