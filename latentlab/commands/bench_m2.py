"""M2's sum over labels, timed three ways on MNIST-shaped batches, with CCVAE beside it.

    python -m latentlab bench-m2                       # the MNIST chapter's cpu networks, batch 64
    python -m latentlab bench-m2 --widths 32 64 --hidden 256 --batch-size 256

For each unlabelled image M2 computes the bound L(x, y) of every class y (eq. 7): an encoder pass
with y as condition and a decoder pass, so its step costs about ``num_classes`` VAE steps. The
three ways give the same objective:

* ``per-class loop``: one ``labelled_bound`` call per class (the naive reading of eq. 7, kept here
  only as the reference);
* ``one batched pass``: every class at once, the encoder run on the batch repeated ``num_classes``
  times (latentlab before the encoder shared its convolutions);
* ``shared convolutions``: every class at once, the encoder's label-free convolutions computed once
  per image (:meth:`~latentlab.nets.ConvEncoder.for_every_condition`), latentlab's M2 now.

A step is a whole ``training_step`` (forward, backward, Adam) on a batch with the chapter's share of
labelled examples, with ``fit``'s CPU switches (float32, channels_last, freed memory kept); the
epoch column scales it to 10,000 images.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch

from ..data import UNLABELLED
from ..models import CCVAE, M2
from ..nets import ConvClassifier, ConvDecoder, ConvEncoder
from ..training import keep_freed_memory, resolve_switches, to_device
from .bench import hardware

WAYS = ("per-class loop", "one batched pass", "shared convolutions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--widths", nargs=2, type=int, default=[16, 32], help="encoder conv widths (the chapter's cpu)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden width of the fully connected layers")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--labelled-share", type=float, default=0.2, help="labelled examples per batch")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each way, taken in turns")
    parser.add_argument("--warmup", type=int, default=3)


def per_class_unlabelled_bound(model: M2, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """U(x) of eq. 7 with a Python loop over the classes: the reference the batched passes replace."""
    n, k = len(x), model.num_classes
    parts = [model.labelled_bound(x, torch.full((n,), y, dtype=torch.long, device=x.device)) for y in range(k)]
    per_class = {name: torch.stack([p[name] for p in parts], 1) for name in parts[0]}  # (n, k)
    log_q_y = model.class_log_probs(x)
    q_y = log_q_y.exp()
    return {
        "bound": (q_y * per_class["bound"]).sum(-1) - (q_y * log_q_y).sum(-1),
        "log_px": (q_y * per_class["log_px"]).sum(-1),
        "kl": (q_y * per_class["kl"]).sum(-1),
    }


def build_m2(way: str, widths: tuple[int, int], hidden: int, latent_dim: int = 16) -> M2:
    """The MNIST chapter's M2, computing its sum over labels ``way``."""
    torch.manual_seed(0)
    model = M2(
        ConvEncoder(28, 1, latent_dim, condition_dim=10, widths=widths, hidden_dim=hidden),
        ConvDecoder(28, 1, latent_dim, condition_dim=10, widths=widths[::-1], hidden_dim=hidden),
        ConvClassifier(28, 1, 10, widths=widths, hidden_dim=hidden),
        num_classes=10,
    )
    if way == "per-class loop":
        model.unlabelled_bound = types.MethodType(per_class_unlabelled_bound, model)
    elif way == "one batched pass":
        model.encoder.for_every_condition = None  # M2 then runs the whole encoder on the repeated batch
    return model


def build_ccvae(widths: tuple[int, int], hidden: int) -> CCVAE:
    """The MNIST chapter's CCVAE (characteristic 64, style 16)."""
    torch.manual_seed(0)
    return CCVAE(ConvEncoder(28, 1, 80, widths=widths, hidden_dim=hidden),
                 ConvDecoder(28, 1, 80, widths=widths[::-1], hidden_dim=hidden),
                 num_classes=10, characteristic_dim=64)


def stepper(model, batch):
    """One training step of ``model`` on ``batch`` per call, in the layout ``fit`` picks on a CPU."""
    cpu = torch.device("cpu")
    _, channels_last, _ = resolve_switches(cpu, None, None, False)
    model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    batch = tuple(to_device(t, cpu, channels_last) for t in batch)
    optimizers = model.configure_optimizers()
    return lambda: model.training_step(batch, optimizers)


def time_round_robin(steps: dict, rounds: int, warmup: int) -> dict[str, float]:
    """Median ms per step of each of ``steps``, timed in turns (a slow spell of the machine falls on all)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for round_ in range(rounds):
        for name in (list(steps) if round_ % 2 == 0 else list(steps)[::-1]):
            start = time.perf_counter()
            steps[name]()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def bench_command(args: argparse.Namespace) -> None:
    keep_freed_memory()  # as fit does on a CPU
    widths = tuple(args.widths)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    y[int(args.labelled_share * args.batch_size):] = UNLABELLED
    print(f"hardware: {hardware(torch.device('cpu'))}")
    print(f"MNIST-shaped batch of {args.batch_size}, {int(args.labelled_share * args.batch_size)} labelled; "
          f"conv widths {widths}, hidden {args.hidden}; median of {args.steps} steps each, in turns, after {args.warmup}\n")
    steps = {way: stepper(build_m2(way, widths, args.hidden), (x, y)) for way in WAYS}
    steps["CCVAE"] = stepper(build_ccvae(widths, args.hidden), (x, y))
    ms = time_round_robin(steps, args.steps, args.warmup)
    print("| model | sum over labels | ms/step | s per 10,000 images | against M2's per-class loop |")
    print("|---|---|---|---|---|")
    first = ms[WAYS[0]]
    for name, how in [*((way, way) for way in WAYS), ("CCVAE", "over q(y|z_c) only: no decoder pass per class")]:
        model = "CCVAE" if name == "CCVAE" else "M2"
        print(f"| {model} | {how} | {ms[name]:.1f} | {ms[name] * 10_000 / args.batch_size / 1000:.1f} | "
              f"{first / ms[name]:.2f}x |", flush=True)
