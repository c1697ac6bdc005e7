"""Training: the one loop (:func:`fit`), and around it, one concern a file: the batches, the GPU
switches, checkpoints and resuming, the NaN guard, and choosing the epoch on held-out data."""

from .batches import as_dataset, check_data, epoch_order, step_batches, to_device
from .checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointWriteError,
    checkpoint_path,
    claim_checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    write_atomically,
)
from .guard import NonFiniteLossError, NonFiniteStateError
from .loop import History, fit
from .selection import EpochSelection, fit_selecting_epoch
from .switches import compile_subnetworks, cpu_has_native_bf16, keep_freed_memory, resolve_amp, resolve_switches

__all__ = [
    "fit", "History", "fit_selecting_epoch", "EpochSelection",
    "CheckpointError", "CheckpointWriteError", "NonFiniteLossError", "NonFiniteStateError", "CHECKPOINT_FORMAT",
    "checkpoint_path", "claim_checkpoint_dir", "list_checkpoints", "load_checkpoint", "save_checkpoint", "write_atomically",
    "as_dataset", "check_data", "epoch_order", "step_batches", "to_device",
    "compile_subnetworks", "cpu_has_native_bf16", "keep_freed_memory", "resolve_amp", "resolve_switches",
]
