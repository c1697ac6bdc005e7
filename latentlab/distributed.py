"""Data-parallel training across processes, launched by ``torchrun``: one process per GPU (or CPU worker).

``torchrun --standalone --nproc_per_node=gpu -m latentlab train ...`` starts N copies of the
same program with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in their environment. :func:`setup`
joins them into one ``torch.distributed`` process group (NCCL on GPUs, gloo on CPUs); then

* every process starts from rank 0's parameters (:func:`broadcast_module`),
* each step's global batch is cut into one slice per process (``train.fit`` does this), so the
  union of the slices is exactly the batch one process would have taken,
* after every backward pass the gradients are averaged over processes, weighted by slice size
  (:func:`average_gradients`), so each optimizer step equals the single-process step on the
  whole batch: the same arithmetic as ``DistributedDataParallel``,
* rank 0 alone writes checkpoints and logs.

Why not wrap the model in ``torch.nn.parallel.DistributedDataParallel``: DDP's reducer hooks
one forward and one backward pass of the wrapped module per step. Our adversarial models
(CSVAE, IFcVAE-GAN, IntroVAC) run several backward passes per step through different parameter
groups, in the order of their papers' algorithm boxes, and call their sub-networks directly. An
explicit all-reduce after each backward pass (``LatentVariableModel.update``) is correct for all
of them; the cost is that communication does not overlap the backward pass.

Everything here is a no-op in a single process, so models and the loop call it unconditionally.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

_WEIGHT = {"value": 1.0}  # this process's share of the current batch, times the world size


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, logs and progress."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def setup(backend: str | None = None) -> torch.device:
    """Join the process group that ``torchrun`` set up, and return this process's device.

    Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) nothing happens and the
    device is :func:`latentlab.config.default_device`. With CUDA each process takes GPU
    ``LOCAL_RANK`` and NCCL; otherwise gloo on the CPU.
    """
    from . import config

    if not launched_by_torchrun():
        return config.default_device()
    use_cuda = torch.cuda.is_available() and os.environ.get(config.DEVICE_ENV, "").strip() not in ("cpu",)
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process LOCAL_RANK={local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes (torchrun --nproc_per_node=gpu does)"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    return device


def teardown() -> None:
    """Leave the process group (call once at the end of a torchrun program)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def set_batch_share(local_size: int, global_size: int) -> None:
    """Record this process's slice of the current global batch (``fit`` calls it every step)."""
    _WEIGHT["value"] = local_size * world_size() / max(global_size, 1)


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Replace the gradient of each parameter ``optimizer`` owns by its batch-weighted mean over processes.

    One flat all-reduce per call.
    Losses are means over a process's slice, so weighting by slice size makes the result the
    gradient of the mean over the whole global batch, even when the last batch does not split evenly.
    """
    if not is_distributed():
        return
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]) * (_WEIGHT["value"] / world_size())
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_terms(terms: dict[str, float]) -> dict[str, float]:
    """The batch-weighted mean of logged loss terms over processes (so rank 0's log is global)."""
    if not is_distributed() or not terms:
        return terms
    names = sorted(terms)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([terms[n] for n in names], dtype=torch.float64, device=device)
    values *= _WEIGHT["value"] / world_size()
    dist.all_reduce(values)
    return dict(zip(names, values.tolist()))


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (the start state DDP also enforces)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` on every process (a picklable object: a flag, an error message)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
