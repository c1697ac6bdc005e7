"""latentlab's IntroVAC training step against the authors' own, timed side by side in one process.

    python -m latentlab bench-introvac --official ~/src/IntroVAC              # 128 px, batch 16 and 64
    python -m latentlab bench-introvac --official ~/src/IntroVAC --sizes 64 --batch-sizes 16 --rounds 3 --profile

The official code (github.com/marcomgg/IntroVAC) is not part of latentlab: give the path of a
checkout of it. Its networks (``introvac.modules.models``) and its step (``program.step_intro``)
are imported from there and run as they are; modules it imports only for logging and plots
(seaborn, tensorflow, torchnet, sklearn, torchsummary) are replaced by empty stand-ins when they
are not installed. ``program.py`` turns autograd's anomaly detection on when imported; it is turned
off again, since it would time the checks, not the step.

Both sides get the same architecture at the same size (the parameter counts are printed), the
same batch of images in [0, 1] with one binary attribute, Adam at lr 2e-4, and the steady-state
introspective step (no VAC warm-up), in one process with one allocator setting
(:func:`~latentlab.training.keep_freed_memory`, as ``fit`` sets it on a CPU). latentlab's step runs
with ``fit``'s switches, by ``--latentlab``:

* ``default``: ``fit``'s defaults on a CPU: float32, channels_last;
* ``nchw``: float32 in the official code's layout, to tell the layout's share from the step's;
* ``bf16``: channels_last and bf16 autocast (a CPU with native bf16 only; skipped elsewhere).

The official step runs as its code runs it (float32, NCHW). Steps go round every side in turn, each
round in another order, after untimed warm-up steps of each, so a slow spell of the machine, or going
first, falls on all; the medians and their ratios are printed. ``--profile`` adds each side's top
operators by CPU time (``torch.profiler``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from ..models import face_model
from ..nets.faces import default_channels
from ..training import cpu_has_native_bf16, keep_freed_memory, resolve_switches, to_device
from .bench import hardware

#: the authors' loss weights (their __main__.py): b_CL, b_AE, b_reg, b_EC, b_G
OFFICIAL_BETAS = [10.0, 100.0, 0.1, 0.01, 5.0]
#: imported by the official program for logging and plots only
LOGGING_ONLY = ("seaborn", "tensorflow", "torchnet", "torchnet.meter", "sklearn", "sklearn.metrics", "torchsummary")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--official", type=Path, default=None, help="path of a checkout of marcomgg/IntroVAC")
    parser.add_argument("--sizes", nargs="+", type=int, choices=(64, 128), default=[128])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds: one step of every side each")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each side first")
    parser.add_argument("--latent-dim", type=int, default=256)
    parser.add_argument("--latentlab", nargs="+", choices=tuple(SETTINGS), default=["default", "bf16"],
                        help="latentlab's switches: fit's CPU defaults, float32 NCHW, bf16 autocast")
    parser.add_argument("--profile", action="store_true", help="print each side's top operators")


#: latentlab's settings by name: (channels_last, bf16 autocast); None: fit's own CPU defaults
SETTINGS = {"default": None, "nchw": (False, False), "bf16": (True, True)}


def switches(setting: str) -> tuple[bool, bool]:
    """(channels_last, bf16 autocast) of ``setting``; "default" asks ``fit``'s resolver, so it cannot drift."""
    if SETTINGS[setting] is None:
        amp, channels_last, _ = resolve_switches(torch.device("cpu"), None, None, False)
        return channels_last, amp
    return SETTINGS[setting]


class _StandIn(types.ModuleType):
    """An empty module: any attribute is a function that does nothing (``sns.set_style(...)``)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # what importlib expects of a module

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def load_official(checkout: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """``(program, models)`` of the official IntroVAC code at ``checkout``; a clear error if it is not one."""
    checkout = Path(checkout).expanduser().resolve()
    if not (checkout / "introvac" / "program.py").is_file():
        raise SystemExit(
            f"bench-introvac: {checkout} is not a checkout of the official IntroVAC code (no introvac/program.py); "
            "run `git clone https://github.com/marcomgg/IntroVAC` and pass its path with --official"
        )
    import torch._dynamo  # noqa: F401: imported by torchvision, it scans for installed modules: before any stand-in
    import torchvision  # noqa: F401

    added = []  # stand-ins for what is not installed: only the program's logging and plots use them
    for name in LOGGING_ONLY:
        top = name.split(".")[0]
        if name not in sys.modules and (top in added or (top not in sys.modules and importlib.util.find_spec(top) is None)):
            sys.modules[name] = _StandIn(name)
            added.append(name)
    sys.path.insert(0, str(checkout))
    try:
        program = importlib.import_module("introvac.program")
        models = importlib.import_module("introvac.modules.models")
    finally:
        sys.path.remove(str(checkout))
        for name in added:  # the official modules keep theirs; nobody else must find a fake tensorflow
            del sys.modules[name]
    torch.autograd.set_detect_anomaly(False)  # program.py switches it on at import
    return program, models


def count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def official_step(program, models, size: int, latent_dim: int, x: torch.Tensor, y: torch.Tensor):
    """The authors' step on (x, y): their Encoder, Decoder and logistic classifier, their three Adams."""
    opt = {"dim": latent_dim, "channels": list(default_channels(size)), "image_size": size,
           "num_classes": 3, "betas": OFFICIAL_BETAS}  # one attribute + the 'fake' logit: num_classes - 1 = 2
    torch.manual_seed(0)
    encoder, decoder, classifier = models.Encoder(opt), models.Decoder(opt), models.log_reg(opt)
    ctx = types.SimpleNamespace(
        encoder=encoder.train(), decoder=decoder.train(), classifier=classifier.train(), opt=opt,
        device=torch.device("cpu"),
        optimizer_enc=torch.optim.Adam(encoder.parameters(), lr=2e-4, weight_decay=1e-5),
        optimizer_dec=torch.optim.Adam(decoder.parameters(), lr=2e-4, weight_decay=1e-5),
        optimizer_class=torch.optim.Adam(classifier.parameters(), lr=2e-4, weight_decay=1e-5),
    )
    labels = y.float()[:, None]
    return (lambda: program.step_intro(ctx, x, labels)), (count(encoder), count(decoder), count(classifier))


def latentlab_step(size: int, latent_dim: int, x: torch.Tensor, y: torch.Tensor, setting: str = "default"):
    """latentlab's IntroVAC step on (x, y) with ``fit``'s switches for ``setting`` (see the module docstring)."""
    channels_last, amp = switches(setting)
    torch.manual_seed(0)
    model = face_model("introvac", image_size=size, latent_dim=latent_dim, warmup_epochs=0).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x = to_device(x, torch.device("cpu"), channels_last)
    optimizers = model.configure_optimizers()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            model.training_step((x, y), optimizers)

    return step, (count(model.encoder), count(model.decoder), count(model.classifier))


def top_operators(step, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def bench_command(args: argparse.Namespace) -> None:
    if args.official is None:
        print("bench-introvac: skipped, no checkout of the official code given. It is not part of latentlab: "
              "`git clone https://github.com/marcomgg/IntroVAC`, then pass its path with --official PATH.")
        return
    settings = list(dict.fromkeys(args.latentlab))
    if "bf16" in settings and not cpu_has_native_bf16():
        settings.remove("bf16")
        print("bench-introvac: no bf16 row: this CPU has no native bf16 (AVX512-BF16 or AMX)")
    if not settings:
        raise SystemExit("bench-introvac: no latentlab setting left to time; add --latentlab default")
    program, models = load_official(args.official)
    kept = keep_freed_memory()
    print(f"hardware: {hardware(torch.device('cpu'))}")
    print(f"{args.rounds} timed rounds after {args.warmup} untimed steps each; latent {args.latent_dim}; "
          f"the introspective step (no warm-up); freed memory kept in the process: {'yes' if kept else 'no'}\n")
    print("| px | batch | latentlab's switches | latentlab ms/step | official ms/step | speed-up "
          "| parameters (encoder / decoder / classifier) |")
    print("|---|---|---|---|---|---|---|")
    profiles = []
    for size in args.sizes:
        for batch in args.batch_sizes:
            g = torch.Generator().manual_seed(0)
            x = torch.rand(batch, 3, size, size, generator=g)
            y = torch.randint(0, 2, (batch,), generator=g)
            sides, counts = {}, {}
            for setting in settings:
                sides[setting], counts[setting] = latentlab_step(size, args.latent_dim, x, y, setting)
            sides["official"], counts["official"] = official_step(program, models, size, args.latent_dim, x, y)
            if len(set(counts.values())) != 1:
                raise SystemExit(f"bench-introvac: the architectures differ: latentlab {counts[settings[0]]}, "
                                 f"official {counts['official']} parameters")
            for step in sides.values():  # untimed: allocations, first-call overheads
                for _ in range(args.warmup):
                    step()
            times = {side: [] for side in sides}
            names = list(sides)
            for round_ in range(args.rounds):  # each round starts elsewhere and alternates direction
                order = names[round_ % len(names):] + names[: round_ % len(names)]
                for side in order if round_ % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    sides[side]()
                    times[side].append(1000 * (time.perf_counter() - start))
            official = statistics.median(times["official"])
            params = " / ".join(f"{n:,}" for n in counts["official"])
            for setting in settings:
                ours = statistics.median(times[setting])
                print(f"| {size} | {batch} | {describe(setting)} | {ours:.0f} | {official:.0f} | {official / ours:.2f}x "
                      f"| {params} (both) |", flush=True)
            if args.profile:
                profiles.append((f"{size} px, batch {batch}", {side: top_operators(step) for side, step in sides.items()}))
    for where, tables in profiles:
        for side, table in tables.items():
            print(f"\n{'official' if side == 'official' else 'latentlab, ' + describe(side)}, {where}:\n{table}")


def describe(setting: str) -> str:
    channels_last, amp = switches(setting)
    return f"{'bf16 autocast' if amp else 'float32'}, {'channels_last' if channels_last else 'NCHW'}"
