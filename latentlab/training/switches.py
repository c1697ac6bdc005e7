"""The fast paths of a training step, each switchable: bf16 autocast, channels_last, torch.compile, and
on a CPU the allocator setting that stops large tensors from being page-faulted in again on every step.

Defaults: channels_last on for every device (on the development machine's CPU it made 128 px face
steps 10-40% faster, 64 px ones about the same); bf16 autocast and compile on for CUDA. On a CPU
with native bf16 (AVX512-BF16 or AMX) autocast may be asked for; it stays off unless asked, so a CPU
run gives the same numbers on any CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch
from torch import nn

from ..models.base import LatentVariableModel


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
    # the adversarial models differentiate one graph twice (retain_graph=True), which compiled graphs
    # that donate their saved buffers to the backward pass refuse
    import torch._functorch.config

    torch._functorch.config.donated_buffer = False


def resolve_switches(
    device: torch.device, amp: bool | None, channels_last: bool | None, compile: bool | str | None
) -> tuple[bool, bool, bool | str]:
    """The switches ``fit`` (and the benchmarks) run with; ``None`` means the default of the module docstring."""
    cuda = device.type == "cuda"
    return (
        resolve_amp(amp, device),
        True if channels_last is None else channels_last,
        cuda if compile is None else compile,
    )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where autocast pays."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_amp(amp: bool | None, device: torch.device) -> bool:
    """bf16 autocast: on by default on CUDA with bf16; on a CPU only when asked and native there."""
    if device.type == "cuda":
        supported, where = torch.cuda.is_available() and torch.cuda.is_bf16_supported(), "a CUDA device with bf16"
    elif device.type == "cpu":
        supported, where = cpu_has_native_bf16(), "a CPU with native bf16 (AVX512-BF16 or AMX)"
    else:
        supported, where = False, "CUDA or a CPU with native bf16"
    if amp is None:
        return device.type == "cuda" and supported
    if amp and not supported:
        raise ValueError(f"amp=True needs {where}; training runs on {device}, which lacks it: pass amp=False (float32)")
    return amp


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_kept: bool | None = None  # keep_freed_memory's result, once per process


def keep_freed_memory() -> bool:
    """Keep memory that freed tensors give back inside the process (glibc), ready for the next step.

    PyTorch's CPU allocator caches nothing, and glibc serves every block above its mmap threshold
    (at most 32 MiB) with fresh pages that it unmaps on free, so each step page-faults and zeroes its
    large activations again: at 128 px and batch 64 that was more than half of an IntroVAC step. With
    mmap off and no trimming, freed blocks stay in the heap and the next step reuses them; the
    process's peak memory is about the same. Once per process; returns whether it applies (glibc).
    """
    global _kept
    if _kept is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None
        _kept = bool(libc is not None and hasattr(libc, "mallopt")
                     and libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1)  # -1: never trim
    return _kept
