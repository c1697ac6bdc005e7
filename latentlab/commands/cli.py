"""Command line: train a face model on one GPU, on all local GPUs, or on CPU; measure throughput.

    python -m latentlab train --model cvae --data synthetic --subset Smiling --image-size 64 --epochs 5
    torchrun --standalone --nproc_per_node=gpu -m latentlab train --model cvae --data celeba --image-size 128
    python -m latentlab bench --sizes 64 128
    python -m latentlab bench-sliders
    python -m latentlab bench-introvac --official PATH   # against a checkout of the official IntroVAC code
    python -m latentlab bench-m2
    python -m latentlab fetch-inception     # the Inception-v3 weights FID uses, downloaded once

``train`` runs :func:`latentlab.fit` (the same loop the book uses) and writes, from rank 0
only, checkpoints under ``<out>/checkpoints`` and the per-epoch history to ``<out>/history.json``.
Run the same command again to resume an interrupted run (another learning rate is applied from
the resumed step on; other changed settings are refused). The model is built after seeding with
``--seed``, so the same command gives the same model; counts are checked by argparse (``--max-steps -1``
is an error, not a run that trains nothing), and a user's mistake ends with its message, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from .. import config, distributed
from ..data.faces import FACE_SUBSETS
from ..models import FACE_MODELS, face_model


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (``--max-steps -1`` must not exit 0 having trained nothing)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def _learning_rate(text: str) -> float:
    """An argparse type: a positive, finite learning rate."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {value}")
    return value


def _switch(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """--name / --no-name, default None (= the loop's own default, see latentlab.training.switches)."""
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m latentlab", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a face model (torchrun-aware)")
    train.add_argument("--model", choices=sorted(FACE_MODELS), required=True)
    train.add_argument("--data", choices=("synthetic", "celeba"), default="synthetic")
    train.add_argument("--subset", default="Smiling", help=f"attribute subset: one of {', '.join(FACE_SUBSETS)}")
    train.add_argument("--image-size", type=int, choices=(32, 64, 128), default=64)
    train.add_argument("--nets", choices=("residual", "dcgan"), default="residual")
    train.add_argument("--latent-dim", type=_at_least(1), default=None)
    train.add_argument("--epochs", type=_at_least(1), default=10)
    train.add_argument("--batch-size", type=_at_least(1), default=64, help="global batch, split over processes")
    train.add_argument("--learning-rate", type=_learning_rate, default=None)
    train.add_argument("--seed", type=_at_least(0), default=0)
    train.add_argument("--max-steps", type=_at_least(1), default=None)
    train.add_argument("--num-train", type=_at_least(1), default=20000, help="synthetic faces to generate")
    train.add_argument("--limit", type=_at_least(1), default=None, help="CelebA: use only the first N training images")
    train.add_argument("--balance", action="store_true", help="CelebA: the IntroVAC positive/negative balance")
    train.add_argument("--out", type=Path, default=None, help="run directory (default runs/<model>-<data>-<size>)")
    train.add_argument("--num-workers", type=_at_least(0), default=None)
    train.add_argument("--checkpoint-every", type=_at_least(1), default=None)
    _switch(train, "amp", "bf16 autocast")
    _switch(train, "channels-last", "NHWC memory layout")
    _switch(train, "compile", "torch.compile the sub-networks")

    bench = commands.add_parser("bench", help="training-step throughput of every face model")
    from .bench import add_arguments

    add_arguments(bench)
    sliders = commands.add_parser("bench-sliders", help="redraw time of the latent sliders (CPU)")
    from .bench_sliders import add_arguments as add_slider_arguments

    add_slider_arguments(sliders)
    official = commands.add_parser("bench-introvac", help="IntroVAC's step against the official code's (CPU)")
    from .bench_introvac import add_arguments as add_official_arguments

    add_official_arguments(official)
    m2 = commands.add_parser("bench-m2", help="M2's sum over labels three ways, and CCVAE, on MNIST-shaped batches (CPU)")
    from .bench_m2 import add_arguments as add_m2_arguments

    add_m2_arguments(m2)
    commands.add_parser("fetch-inception", help="download the Inception-v3 weights FID uses (once, 92 MB)")
    return parser


def _training_data(args: argparse.Namespace):
    """The training set and a line saying exactly which data it is."""
    labelled = FACE_MODELS[args.model].needs_labels
    if args.data == "synthetic":
        from ..data.synthfaces import synthetic_faces

        faces = synthetic_faces(num_train=args.num_train, num_test=1, image_size=args.image_size, seed=args.seed)
        x, y = faces.split(args.subset, "train")
        if y.dim() != 1:
            raise SystemExit(f"subset {args.subset} has several labels; these models take one binary attribute")
        return ((x, y) if labelled else (x,)), faces.describe()
    from ..data.celeba import CelebAFaces

    dataset = CelebAFaces(
        split="train",
        subset=args.subset,
        image_size=args.image_size,
        negatives_per_positive="introvac" if args.balance else None,
        limit=args.limit,
        cache_dir=config.data_root() / "celeba" / "cache",
    )
    return dataset, dataset.describe()


def train_command(args: argparse.Namespace) -> None:
    from ..training import fit, write_atomically

    device = distributed.setup()
    main = distributed.is_main_process()
    try:
        data, description = _training_data(args)
        extra = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
        config.seed_everything(args.seed)  # before the model draws its initial weights: one command, one model
        model = face_model(args.model, image_size=args.image_size, latent_dim=args.latent_dim, nets=args.nets, **extra)
        out = args.out or Path("runs") / f"{args.model}-{args.data}-{args.image_size}"
        if main:
            print(config.describe_run(description, device))
            print(f"model: {type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters), "
                  f"{distributed.world_size()} process(es), global batch {args.batch_size}, run directory {out}")
        history = fit(
            model,
            data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            device=device,
            checkpoint_dir=out / "checkpoints",
            checkpoint_every=args.checkpoint_every,
            amp=args.amp,
            channels_last=args.channels_last,
            compile=args.compile,
            max_steps=args.max_steps,
            num_workers=args.num_workers,
            progress=main and sys.stderr.isatty(),
        )
        if main:
            payload = json.dumps({"data": description, "history": history}, indent=1).encode()
            write_atomically(out / "history.json", lambda f: f.write(payload))
            last = {name: round(values[-1], 5) for name, values in history.items() if values}
            print(f"done: last epoch {last}; history in {out / 'history.json'}")
    finally:
        distributed.teardown()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from ..training import CheckpointError, NonFiniteLossError

        try:
            train_command(args)
        except (ValueError, CheckpointError, NonFiniteLossError) as err:  # a user's mistake: its message, no traceback
            raise SystemExit(f"latentlab train: error: {err}") from err
    elif args.command == "fetch-inception":
        from ..evaluation.fid import download_inception_weights

        print(f"Inception-v3 weights for FID: {download_inception_weights()}")
    elif args.command == "bench-introvac":
        from .bench_introvac import bench_command

        bench_command(args)
    elif args.command == "bench-sliders":
        from .bench_sliders import bench_command

        bench_command(args)
    elif args.command == "bench-m2":
        from .bench_m2 import bench_command

        bench_command(args)
    else:
        from .bench import bench_command

        bench_command(args)
