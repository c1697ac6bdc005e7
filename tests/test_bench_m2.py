"""M2's benchmark: its three ways compute one objective, and the command prints a row for each and CCVAE."""

from __future__ import annotations

import pytest
import torch

from latentlab.commands import bench_m2, cli
from latentlab.data import UNLABELLED
from latentlab.distributions import DiagonalGaussian


@pytest.mark.parametrize("way", bench_m2.WAYS[:2])
def test_each_way_gives_the_objective_and_gradients_of_latentlabs_m2(way, monkeypatch):
    monkeypatch.setattr(DiagonalGaussian, "rsample", lambda self: self.mean)  # the same z in every way
    x = torch.rand(6, 1, 28, 28)
    y = torch.tensor([3, 7, UNLABELLED, UNLABELLED, UNLABELLED, UNLABELLED])
    ours, reference = bench_m2.build_m2("shared convolutions", (4, 8), 16), bench_m2.build_m2(way, (4, 8), 16)
    loss, expected = ours.loss_terms((x, y))["loss"], reference.loss_terms((x, y))["loss"]
    torch.testing.assert_close(loss, expected)
    loss.backward(), expected.backward()
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_the_command_times_every_way_and_ccvae(capsys):
    cli.main(["bench-m2", "--widths", "4", "8", "--hidden", "16", "--batch-size", "10", "--steps", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith(("| M2 |", "| CCVAE |"))]
    assert [row[1] for row in rows[:3]] == list(bench_m2.WAYS) and rows[3][0] == "| CCVAE"
    assert rows[0][4] == "1.00x |" and "2 labelled" in out
