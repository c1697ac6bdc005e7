"""Resuming a run: the checkpoint must be this model's (class, architecture, settings, seed, data, finite),
and the optimizers take the settings the model was built with now (a lower learning rate after a NaN).
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..models.base import LatentVariableModel
from .. import distributed
from .checkpoints import CheckpointError, fallback_advice
from .guard import nonfinite_tensors


def check_resumable(state: dict, path: Path, model: LatentVariableModel, settings: dict, run_identity: dict) -> None:
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
    bad = nonfinite_tensors(state["model"].items()) + nonfinite_tensors(_saved_optimizer_tensors(state["optimizers"]))
    if bad:
        raise CheckpointError(f"{path} holds NaN or inf (in {', '.join(bad[:4])}), so it is no good state to resume from.{fallback_advice(path)}")


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


def optimizer_settings(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, list[dict]]:
    """Every param group's hyperparameters as the model configured them (before a resume loads the saved ones)."""
    return {
        name: [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
        for name, opt in optimizers.items()
    }


def apply_optimizer_settings(
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


def load_states(state: dict, path: Path, model: nn.Module, optimizers: dict, schedulers: dict) -> None:
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


def _saved_optimizer_tensors(saved: dict) -> Iterator[tuple[str, torch.Tensor]]:
    for opt_name, opt_state in saved.items():
        for index, slots in opt_state.get("state", {}).items():
            for key, value in slots.items():
                yield f"optimizer {opt_name!r} {key} of parameter {index}", value


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    # random.setstate needs tuples all the way down; a round trip may hand back lists
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
