"""model/norms.py: the thread-invariant BatchNorm (rows) and LayerNorm against torch.nn's, and
their training arithmetic bit for bit on 1 and 2 threads."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from group3ad.model.norms import LayerNorm, batch_norm_rows
from test_determinism import assert_bitwise_stable


def _rows(n=20000, c=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g) * 3 + torch.linspace(-5, 5, c)).requires_grad_()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_rows_equals_batchnorm1d(momentum):
    ref = nn.BatchNorm1d(64, momentum=momentum).train()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-1, 1)
    ours = copy.deepcopy(ref)
    x = _rows()
    for step in range(3):  # running statistics accumulate like nn's, including momentum=None
        xa, xb = (x.detach() + step).requires_grad_(), (x.detach() + step).requires_grad_()
        ya, yb = ref(xa), batch_norm_rows(xb, ours)
        torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(ya)
        ga = torch.autograd.grad(ya, [xa, ref.weight, ref.bias], g)
        gb = torch.autograd.grad(yb, [xb, ours.weight, ours.bias], g)
        # the parameter gradients are float32 sums over 20000 rows: both orders round by ~1e-4
        for a, b in zip(ga, gb):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-5, atol=1e-5)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3


def test_batch_norm_rows_eval_mode_and_one_row_are_nns():
    bn = nn.BatchNorm1d(8)
    x = torch.randn(50, 8)
    bn.eval()
    assert torch.equal(batch_norm_rows(x, bn), bn(x))
    bn.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_rows(torch.randn(1, 8), bn)  # nn's own error, not a division by n - 1 = 0


def test_layernorm_equals_nn_layernorm_and_loads_its_state():
    ref = nn.LayerNorm(96)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-1, 1)
    ours = LayerNorm(96)
    ours.load_state_dict(ref.state_dict())  # same parameter names: Point-MAE checkpoints load
    x = torch.randn(4, 300, 96, requires_grad=True)
    ya, yb = ref(x), ours(x)
    torch.testing.assert_close(yb, ya)
    g = torch.randn_like(ya)
    for a, b in zip(torch.autograd.grad(ya, [x, ref.weight, ref.bias], g),
                    torch.autograd.grad(yb, [x, ours.weight, ours.bias], g)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4)
    with torch.no_grad():  # inference: the fused kernel, bit for bit
        assert torch.equal(ours(x), ref(x))
    ours.weight.requires_grad_(False)  # frozen (the encoder's final norm in IUN/IAN): fused too
    assert torch.equal(ours(x), ref(x))


def test_training_arithmetic_same_bits_on_1_and_2_threads():
    bn = nn.BatchNorm1d(64).train()
    ln = LayerNorm(64)
    x = _rows(60000)

    def step():
        y = batch_norm_rows(x, bn)
        z = ln(y.view(600, 100, 64))
        grads = torch.autograd.grad((z * z.detach().sin()).sum(), [x, bn.weight, bn.bias, ln.weight, ln.bias])
        return (y.detach(), *grads)

    assert_bitwise_stable(step)
