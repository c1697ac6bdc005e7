"""The GPU fast paths, each switchable and on by default on CUDA: bf16 autocast, channels_last, torch.compile."""

from __future__ import annotations

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
