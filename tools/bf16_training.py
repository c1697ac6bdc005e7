"""Does bf16 autocast on a CPU train IntroVAC as well as float32? The same run twice, then the test split.

    python tools/bf16_training.py [--steps 432] [--subset Smiling]

Needs CelebA in data/celeba/ and a CPU with native bf16. Both runs: the editing chapter's cpu
profile (64 px, widths 16/32/64/128, latent 64, batch 64, a VAC warm-up for the first quarter of
the epochs), the same seed, the same batches; only ``fit(amp=...)`` differs. Printed: each run's
time per step, its last epoch's loss terms, and on the test split the L1 reconstruction error and
the accuracy of the model's own attribute head. Nothing is saved.
"""

from __future__ import annotations

import argparse
import time

import torch

from latentlab import fit
from latentlab.chapters.face_editing import reconstructions
from latentlab.data import load_celeba_in_memory
from latentlab.models import face_model
from latentlab.training import cpu_has_native_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=432)
    parser.add_argument("--subset", default="Smiling")
    args = parser.parse_args()
    if not cpu_has_native_bf16():
        raise SystemExit("bf16_training: this CPU has no native bf16 (AVX512-BF16 or AMX): nothing to compare")
    faces = load_celeba_in_memory(args.subset, image_size=64)
    x, y = faces.split(args.subset, "train")
    x_test, y_test = faces.split(args.subset, "test")
    steps_per_epoch = -(-len(x) // 64)
    epochs = -(-args.steps // steps_per_epoch)
    print(f"data: {faces.source}\n{len(x)} train / {len(x_test)} test images, {epochs} epochs of {steps_per_epoch} steps, "
          f"VAC warm-up {epochs // 4} epochs\n")
    print("| precision | s/step | loss | ae (L1) | class | kl | generator | test L1 | own head, test |")
    print("|---|---|---|---|---|---|---|---|---|")
    for amp in (False, True):
        torch.manual_seed(0)
        model = face_model("introvac", image_size=64, latent_dim=64, channels=(16, 32, 64, 128),
                           warmup_epochs=epochs // 4)
        start = time.perf_counter()
        history = fit(model, (x, y), epochs=epochs, batch_size=64, seed=0, device="cpu", amp=amp, progress=False)
        per_step = (time.perf_counter() - start) / (epochs * steps_per_epoch)
        model.eval()
        recon = reconstructions(model, x_test, y_test)
        l1 = float((recon - x_test).abs().mean())
        with torch.no_grad():
            p = torch.cat([model.attribute_probabilities(chunk) for chunk in x_test.split(200)])
        accuracy = float(((p[:, 0] > 0.5).float() == y_test.float()).float().mean())
        last = {k: v[-1] for k, v in history.items()}
        print(f"| {'bf16 autocast' if amp else 'float32'} | {per_step:.2f} | {last['loss']:.3f} | {last['ae']:.4f} | "
              f"{last['class']:.3f} | {last['kl']:.3f} | {last.get('generator', float('nan')):.3f} | {l1:.4f} | "
              f"{accuracy:.1%} |", flush=True)


if __name__ == "__main__":
    main()
