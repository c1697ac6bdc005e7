"""Slider benchmark: how long one redraw of a live slider takes, per model, and what a static slider weighs.

    python -m latentlab bench-sliders                      # every slider family at 64 px, on the CPU
    python -m latentlab bench-sliders --sizes 64 128 --moves 100

A *redraw* is what a reader's drag costs in a live kernel: the slider's value changes, its observer
decodes the new setting, encodes the PNG and hands it to the image widget
(:meth:`latentlab.editing.sliders.LiveSliders.redraw`, driven through the widget exactly as the frontend
does). Decoding time does not depend on what the weights learned, so the models are freshly built
with the face models' default (paper-size) networks. The target is under 100 ms per redraw on a CPU for
the 64 px models. The static columns give the cost of the HTML counterpart: the time to decode
every frame and the bytes the slider adds to a page.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from .bench import hardware
from ..editing.sliders import LiveSliders, static_sliders
from ..models import FACE_MODELS, face_model

# every registered face model that decodes images (a plain classifier has no sliders)
SLIDER_MODELS = [name for name, entry in FACE_MODELS.items() if entry.generative]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=sorted(SLIDER_MODELS), default=list(SLIDER_MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, choices=(32, 64, 128), default=[64])
    parser.add_argument("--moves", type=int, default=50, help="timed slider moves per model")
    parser.add_argument("--frames", type=int, default=9, help="frames per axis of the static slider")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")


def measure(name: str, size: int, moves: int, frames: int) -> dict:
    """Redraw times of ``moves`` slider moves (after 5 untimed), and the static slider's cost."""
    torch.manual_seed(0)
    model = face_model(name, image_size=size).eval()
    images, labels = torch.rand(3, 3, size, size), torch.tensor([0, 1, 0])
    reference = torch.rand(64, 3, size, size) if model.sliders_need_reference else None
    live = LiveSliders(model, images, labels, reference=reference)
    slider = live.sliders[0]
    settings = torch.linspace(slider.min, slider.max, moves + 5).tolist()
    for value in settings[:5]:  # untimed: the first calls allocate and pick kernels
        slider.value = value
    live.redraw_seconds.clear()
    for value in settings[5:]:
        slider.value = value  # the observer redraws, as when a reader drags the slider
    start = time.perf_counter()
    live.picker.value = 1
    pick = time.perf_counter() - start
    start = time.perf_counter()
    static = static_sliders(model, images, labels, reference=reference, num_frames=frames)
    build = time.perf_counter() - start
    times = sorted(1000 * t for t in live.redraw_seconds[:moves])
    return {
        "model": type(model).__name__, "size": size, "axes": len(live.sliders), "kind": live.space.kind,
        "median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))], "max_ms": times[-1],
        "pick_ms": 1000 * pick, "static_s": build, "static_kb": static.nbytes / 1024,
    }


def bench_command(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"hardware: {hardware(device)}")
    print(f"redraw = slider move -> decode -> PNG -> image widget, {args.moves} timed moves per model; "
          f"static slider = 3 input images x {args.frames} frames per axis\n")
    print("| model | sliders | px | redraw median (ms) | p95 | max | pick an image (ms) | "
          "static: build (s) | static: size (KB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for name in args.models:
            r = measure(name, size, args.moves, args.frames)
            print(f"| {r['model']} | {r['axes']} x {r['kind']} | {size} | {r['median_ms']:.1f} | "
                  f"{r['p95_ms']:.1f} | {r['max_ms']:.1f} | {r['pick_ms']:.0f} | {r['static_s']:.1f} | "
                  f"{r['static_kb']:.0f} |", flush=True)
