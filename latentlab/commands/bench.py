"""Throughput benchmark: images per second of one training step of each face model, with peak memory.

    python -m latentlab bench                       # every model at 64 and 128 px, this machine's device
    python -m latentlab bench --models vae cvae --sizes 64 --device cpu --batch-size 16

A *training step* is what ``fit`` runs per batch: moving a uint8 batch to the device, the model's
own ``training_step`` (forward, backward, every optimizer's update), with the same switches
(bf16 autocast, channels_last, torch.compile) and their same defaults, and on a CPU the same
allocator setting (``keep_freed_memory``). Each
(model, size) runs in a fresh child process so its peak memory is its own: peak allocated CUDA
memory on a GPU, peak resident set size of the process on a CPU. Warm-up steps (compilation,
cuDNN autotuning) are not timed. The table is Markdown, ready for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

from ..models import FACE_MODELS, face_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=sorted(FACE_MODELS), default=list(FACE_MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, choices=(32, 64, 128), default=[64, 128])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 on GPU, 16 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default: 5 on GPU, 3 on CPU)")
    for name in ("amp", "channels-last", "compile"):
        parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)  # child process


def hardware(device: torch.device) -> str:
    """One line naming what the figures came from."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from ..training import cpu_has_native_bf16

    threads = torch.get_num_threads()
    isa = torch.backends.cpu.get_cpu_capability() + (" with native bf16" if cpu_has_native_bf16() else "")
    return f"{cpu} ({isa}), {os.cpu_count()} cores ({threads} torch threads), torch {torch.__version__}"


def measure(name: str, size: int, device: torch.device, batch_size: int, steps: int, warmup: int,
            amp: bool | None, channels_last: bool | None, compile: bool | None) -> dict:
    """Time ``steps`` training steps of model ``name`` at ``size`` px after ``warmup`` untimed ones."""
    from ..training import compile_subnetworks, keep_freed_memory, resolve_switches, to_device

    amp, channels_last, compile = resolve_switches(device, amp, channels_last, compile)
    if device.type == "cpu":
        keep_freed_memory()  # as fit does
    torch.manual_seed(0)
    model = face_model(name, image_size=size).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        compile_subnetworks(model, compile)
    optimizers = model.configure_optimizers()
    model.train()
    model.on_epoch_start(10**6)  # the steady-state step, past any warm-up (IntroVAC first trains a plain VAC)
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    labels = torch.randint(0, 2, (batch_size,))
    host = (images, labels) if FACE_MODELS[name].needs_labels else (images,)
    if device.type == "cuda":
        host = tuple(t.pin_memory() for t in host)

    def step() -> None:
        batch = tuple(to_device(t, device, channels_last) for t in host)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model.training_step(batch, optimizers)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:  # ru_maxrss is KiB on Linux, bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {
        "model": type(model).__name__, "size": size, "batch": batch_size, "step_ms": 1000 * seconds,
        "images_per_s": batch_size / seconds, "peak_mib": peak / 2**20,
        "settings": f"amp={'bf16' if amp else 'off'}, channels_last={'on' if channels_last else 'off'}, "
                    f"compile={'on' if compile else 'off'}",
    }


def bench_command(args: argparse.Namespace) -> None:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    batch_size = args.batch_size or (64 if gpu else 16)
    steps = args.steps or (20 if gpu else 3)
    # on a CPU the heap that keep_freed_memory keeps grows over the first steps: they fault pages in
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 3)
    if args.one:  # child: one measurement, printed as a JSON line
        name, size = args.one[0], int(args.one[1])
        result = measure(name, size, device, batch_size, steps, warmup, args.amp, args.channels_last, args.compile)
        print(json.dumps(result))
        return
    print(f"hardware: {hardware(device)}")
    print(f"training step = transfer of a uint8 batch + the model's training_step; {warmup} warm-up, {steps} timed steps\n")
    print("| model | px | batch | images/s | ms/step | peak memory (MiB) | settings |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for name in args.models:
            command = [sys.executable, "-m", "latentlab", "bench", "--one", name, str(size), "--device", str(device),
                       "--batch-size", str(batch_size), "--steps", str(steps), "--warmup", str(warmup)]
            for flag in ("amp", "channels_last", "compile"):
                value = getattr(args, flag)
                if value is not None:
                    command.append(f"--{'' if value else 'no-'}{flag.replace('_', '-')}")
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"| {name} | {size} | {batch_size} | failed: {reason} | | | |", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {r['model']} (`{name}`) | {size} | {r['batch']} | {r['images_per_s']:.1f} | {r['step_ms']:.0f} | "
                  f"{r['peak_mib']:.0f} | {r['settings']} |", flush=True)
