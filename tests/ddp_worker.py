"""Run by tests/test_distributed.py, alone or under ``torchrun``: a short deterministic fit whose result is saved.

Each process builds its model from a *different* seed, so only the loop's broadcast of rank 0's
parameters can make the processes agree.
"""

import sys
from pathlib import Path

import torch

from latentlab import Classifier, distributed, fit
from latentlab.nets import MLP


def run(out: Path) -> None:
    device = distributed.setup()
    x = torch.randn(25, 6, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    torch.manual_seed(100 + distributed.rank())
    model = Classifier(MLP(6, (16,), 3), num_classes=3, learning_rate=0.05)
    # batch 10 over 25 examples: the last global batch (5) splits unevenly, 3 + 2
    history = fit(model, (x, y), epochs=3, batch_size=10, device=device, progress=False, checkpoint_dir=out / "ckpt")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"state": state, "history": history, "world": distributed.world_size()}, out / f"rank{distributed.rank()}.pt")
    distributed.teardown()


if __name__ == "__main__":
    run(Path(sys.argv[1]))
