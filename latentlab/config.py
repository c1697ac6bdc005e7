"""Run profile, device, data root and seeding: read once, used everywhere.

A *profile* says how big a run is. Chapters and scripts ask the profile for their
sizes instead of hard-coding them, so one notebook runs in seconds in CI (``smoke``),
in minutes on a laptop (``cpu``) and at paper scale on a GPU workstation (``gpu``)::

    from latentlab import config
    profile = config.profile()
    epochs = profile.choose(smoke=2, cpu=40, gpu=150)

The profile comes from the environment variable ``LATENTLAB_PROFILE``; when it is not
set, the hardware decides (``gpu`` when CUDA is available, else ``cpu``).
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

PROFILE_ENV = "LATENTLAB_PROFILE"
DEVICE_ENV = "LATENTLAB_DEVICE"
DATA_ENV = "LATENTLAB_DATA"
PROFILES = ("smoke", "cpu", "gpu")

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """How big a run is. ``name`` is one of ``smoke``, ``cpu``, ``gpu``."""

    name: str
    source: str  # where the choice came from, printed so a reader knows why

    def choose(self, *, smoke: T, cpu: T, gpu: T) -> T:
        """Pick the value for this profile, e.g. ``profile.choose(smoke=2, cpu=40, gpu=150)``."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.name]

    def __str__(self) -> str:
        return f"{self.name} ({self.source})"


def parse_profile(value: str | None) -> Profile:
    """Turn a ``LATENTLAB_PROFILE`` value into a :class:`Profile` (``None``: from hardware)."""
    if value is None or value.strip() == "":
        if torch.cuda.is_available():
            return Profile("gpu", "default: CUDA is available")
        return Profile("cpu", "default: no CUDA device")
    name = value.strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={value!r} is not a profile. Use one of {', '.join(PROFILES)}, "
            f"for example `{PROFILE_ENV}=cpu make book`, or unset it to choose from the hardware."
        )
    return Profile(name, f"from {PROFILE_ENV}")


@functools.lru_cache(maxsize=1)
def profile() -> Profile:
    """The run profile, read once from the environment."""
    return parse_profile(os.environ.get(PROFILE_ENV))


def check_device(device: str | torch.device, source: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine, or a ValueError naming it and the fix.

    ``source`` names where the value came from (``"device"``, ``"LATENTLAB_DEVICE"``) so the message
    points at what to change.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{source}={device!r} is not a device name; use 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from None
    where = f"unset {DEVICE_ENV} or set it to 'cpu'" if source == DEVICE_ENV else "pass device='cpu' (or None: the best available)"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{source}={device!r} but CUDA is not available on this machine; {where}.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"{source}={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0; {where}."
            )
    if parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{source}={device!r} but Apple's MPS is not available on this machine; {where}.")
    return parsed


def default_device() -> torch.device:
    """``LATENTLAB_DEVICE`` if set, else the best available: cuda, then mps, then cpu."""
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        return check_device(requested, DEVICE_ENV)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def data_root() -> Path:
    """Where datasets live: ``LATENTLAB_DATA`` if set, else ``data/`` at the repository root."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


def shown_path(path: str | os.PathLike) -> Path:
    """``path`` as a chapter prints it: relative to the folder holding the data root (``data/MNIST/raw``)
    when it lies inside it, so stored outputs do not carry one machine's absolute paths."""
    path, top = Path(path), data_root().parent
    try:
        return path.resolve().relative_to(top.resolve())
    except ValueError:
        return path


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe_run(data: str, device: torch.device | None = None) -> str:
    """One line every chapter prints: profile, device, data and library versions."""
    device = device or default_device()
    return (
        f"profile: {profile()} | device: {device} | data: {data} | "
        f"torch {torch.__version__}"
    )


@dataclass(frozen=True)
class LaunchNote:
    """The note at the top of every chapter: how to run it locally, and which run produced the outputs shown.

    Displays as a boxed note in the rendered book and Jupyter (HTML) and as plain lines elsewhere.
    """

    chapter: str  # the notebook's path from the repository root, e.g. "book/mnist_ccvae.ipynb"
    run: str  # describe_run's line for the run that produced the outputs
    date: str
    hardware: str
    extra: str = ""

    def lines(self) -> list[str]:
        return [
            f"Outputs on this page: {self.run} | run on {self.date}, {self.hardware}",
            f"Run it yourself: `make setup`, then `LATENTLAB_PROFILE=cpu .venv/bin/jupyter lab {self.chapter}` "
            "(profiles: smoke = seconds, the CI check; cpu = minutes on a laptop; gpu = paper scale, "
            "with the data in data/, see data/README.md)." + (f" {self.extra}" if self.extra else ""),
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        import html

        def code(text: str) -> str:  # `...` spans as <code>
            parts = html.escape(text).split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

        outputs, run_it = self.lines()
        return (
            '<div class="admonition note latentlab-launch-note">'
            '<p class="admonition-title">About this page\'s outputs, and running it yourself</p>'
            f"<p>{code(outputs)}</p><p>{code(run_it)}</p></div>"
        )


def launch_note(chapter: str, data: str, device: torch.device | None = None, extra: str = "") -> LaunchNote:
    """The launch note for ``chapter`` (its path, e.g. ``"book/elbo.ipynb"``) run on ``data`` here, now."""
    import datetime
    import platform

    device = device or default_device()
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{os.cpu_count()} CPU cores ({platform.machine() or 'unknown'})"
    return LaunchNote(chapter, describe_run(data, device), datetime.date.today().isoformat(), hardware, extra)
