"""The update helpers every training_step goes through: which gradients they compute, and what each optimizer steps on."""

from __future__ import annotations

import torch
from torch import nn

from latentlab.models.base import LatentVariableModel


def two_layers():
    torch.manual_seed(0)
    first, second = nn.Linear(3, 4), nn.Linear(4, 2)
    x = torch.randn(5, 3)
    return first, second, x


def sgd(module):
    return torch.optim.SGD(module.parameters(), lr=1.0)


def test_own_parameters_only_computes_no_gradient_for_the_networks_a_loss_passes_through():
    first, second, x = two_layers()
    loss = second(first(x)).pow(2).sum()
    expected = torch.autograd.grad(loss, list(first.parameters()), retain_graph=True)
    LatentVariableModel.update(sgd(first), loss, own_parameters_only=True, retain_graph=True)
    assert all(p.grad is None for p in second.parameters())  # passed through, never differentiated
    assert all(torch.equal(p.grad, g) for p, g in zip(first.parameters(), expected))
    LatentVariableModel.update(sgd(first), loss)  # the default differentiates everything the loss reaches
    assert all(p.grad is not None for p in second.parameters())


def test_update_simultaneously_takes_every_gradient_before_any_step_and_only_for_its_own_optimizer():
    first, second, x = two_layers()
    through_both = lambda: second(first(x)).pow(2).sum()  # noqa: E731: second's loss, crossing first
    first_only = lambda: first(x).abs().sum()  # noqa: E731
    before = [p.detach().clone() for p in [*first.parameters(), *second.parameters()]]
    want_first = torch.autograd.grad(first_only(), list(first.parameters()))
    want_second = torch.autograd.grad(through_both(), list(second.parameters()))
    for p in [*first.parameters(), *second.parameters()]:
        p.grad = torch.full_like(p, 100.0)  # stale gradients of an earlier step must not be used
    LatentVariableModel.update_simultaneously([(sgd(second), through_both()), (sgd(first), first_only())])
    after = [*first.parameters(), *second.parameters()]
    for p, b, g in zip(after, before, [*want_first, *want_second]):
        torch.testing.assert_close(b - p.detach(), g)  # each optimizer stepped once, on exactly its own gradient
