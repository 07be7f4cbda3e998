"""ops.moment_cross_entropy: literal reference, a hand-computed case, masks and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning import ops
from reference_ops import ref_moment_cross_entropy


def test_hand_computed_case():
    # softmax of [0, 0, ln 2] is [1/4, 1/4, 1/2]; the last clip padded in the second row
    c = torch.tensor([[0.0, 0.0, math.log(2.0)], [0.0, 0.0, 99.0]], dtype=torch.float64)
    target = torch.tensor([[False, False, True], [True, False, True]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    got = ops.moment_cross_entropy(c, target, mask, temperature=1.0)
    # row 0: -log(1/2); row 1: the padded clip is neither in the softmax nor in the target: -log(1/2)
    torch.testing.assert_close(got, torch.tensor([math.log(2.0), math.log(2.0)], dtype=torch.float64))
    two = ops.moment_cross_entropy(c[:1], torch.tensor([[True, False, True]]), mask[:1], temperature=1.0)
    torch.testing.assert_close(two, torch.tensor([1.5 * math.log(2.0)], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_matches_literal_loops(seed, temperature):
    g = torch.Generator().manual_seed(seed)
    B, Nv = 5, 9
    c = torch.randn(B, Nv, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, Nv + 1, (B,), generator=g)
    mask = torch.arange(Nv)[None, :] < lengths[:, None]
    target = torch.rand(B, Nv, generator=g) < 0.4
    target[0] = False  # no target clip: 0
    got = ops.moment_cross_entropy(c, target, mask, temperature)
    torch.testing.assert_close(got, ref_moment_cross_entropy(c, target, mask, temperature))
    assert got[0] == 0


def test_gradient_raises_the_target_clips():
    c = torch.zeros(1, 4, requires_grad=True)
    ops.moment_cross_entropy(c, torch.tensor([[False, True, True, False]]), torch.ones(1, 4, dtype=torch.bool), 0.1).sum().backward()
    assert (c.grad[0, 1:3] < 0).all() and (c.grad[0, [0, 3]] > 0).all()


def test_bad_input_is_refused():
    c, m = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="temperature"):
        ops.moment_cross_entropy(c, m, m, 0.0)
    with pytest.raises(ValueError, match="moment_cross_entropy"):
        ops.moment_cross_entropy(c, m[:, :2], m, 1.0)
