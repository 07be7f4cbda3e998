"""The log clamps of the SAP losses never produce inf; the centred matching score is exact."""
from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning import ops


def _extreme_inputs(B=3, Ns=4, Nv=6):
    g = torch.Generator().manual_seed(0)
    P = torch.randint(0, 2, (B, Ns, Nv), generator=g).double()  # only exact zeros and ones
    P[0] = 0.0
    P[1] = 1.0
    token_mask = torch.ones(B, Ns, dtype=torch.bool)
    clip_mask = torch.ones(B, Nv, dtype=torch.bool)
    clip_mask[2, 4:] = False
    return P, token_mask, clip_mask


def test_inner_and_outer_maps_are_finite_and_bounded_at_exact_zeros_and_ones():
    P, tm, cm = _extreme_inputs()
    eps = 1e-6
    bound = -math.log(eps)
    for loss_map in (ops.inner_loss_map(P, tm, cm, eps=eps), ops.outer_loss_map(P, tm, cm, eps=eps),
                     ops.outer_loss_map(P, tm, cm, eps=eps, form="printed")):
        assert torch.isfinite(loss_map).all()
        assert loss_map.min() >= 0 and loss_map.max() <= bound + 1e-9
    # all-zero map: every segment's inner loss is exactly -log(eps); all-one map: the complement's is
    assert torch.allclose(ops.inner_loss_map(P, tm, cm, eps=eps)[0].diagonal(), torch.full((6,), bound).double())


def test_losses_and_gradients_stay_finite_in_float32_at_the_clamp():
    P, tm, cm = _extreme_inputs()
    P = P.float().requires_grad_(True)
    total = ops.inner_loss_map(P, tm, cm).sum() + ops.outer_loss_map(P, tm, cm).sum()
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(P.grad).all()


def test_centred_matching_score_equals_a_literal_loop():
    from fsan_lightning.models import CentredMatchingScore, FSANOutput

    g = torch.Generator().manual_seed(1)
    cos = torch.rand(2, 3, 5, generator=g).double() * 2 - 1
    tm = torch.tensor([[True, True, False], [True, True, True]])
    vm = torch.tensor([[True, True, True, False, False], [True] * 5])

    out = FSANOutput(A=cos, P=cos, text_features=cos, video_features=cos, video_mask=vm, cosine=cos)
    got = CentredMatchingScore()(out, tm)
    for b in range(2):
        L = int(vm[b].sum())
        vals = []
        for i in range(3):
            if tm[b, i]:
                row = [float(cos[b, i, j]) for j in range(L)]
                mean = sum(row) / L
                vals.append(max(x - mean for x in row))
        assert abs(float(got[b]) - sum(vals) / len(vals)) < 1e-12


def test_smooth_matching_score_equals_a_literal_loop_and_tends_to_max_and_mean():
    from fsan_lightning import ops

    g = torch.Generator().manual_seed(2)
    A = torch.rand(2, 3, 5, generator=g).double() * 2 - 1
    tm = torch.tensor([[True, False, True], [True, True, True]])
    vm = torch.tensor([[True, True, True, True, False], [True] * 5])
    t = 0.2
    got = ops.matching_score(A, tm, vm, temperature=t)
    for b in range(2):
        L = int(vm[b].sum())
        per_token = []
        for i in range(3):
            if tm[b, i]:
                per_token.append(t * math.log(sum(math.exp(float(A[b, i, j]) / t) for j in range(L)) / L))
        assert abs(float(got[b]) - sum(per_token) / len(per_token)) < 1e-12
    hard = ops.matching_score(A, tm, vm)
    assert torch.allclose(ops.matching_score(A, tm, vm, temperature=1e-4), hard, atol=1e-3)
    mean = torch.stack([A[b, tm[b]][:, vm[b]].mean(dim=1).mean() for b in range(2)])
    assert torch.allclose(ops.matching_score(A, tm, vm, temperature=1e4), mean, atol=1e-3)
    assert torch.all(ops.matching_score(A, tm, vm, temperature=t) <= hard + 1e-12)
    with pytest.raises(ValueError, match="temperature"):
        ops.matching_score(A, tm, vm, temperature=0.0)
