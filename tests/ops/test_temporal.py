"""IoU, NMS, moment ranking and localization diagnostics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning import ops

torch.set_num_threads(1)
INF = math.inf


def test_temporal_iou_hand_cases_and_broadcasting():
    a = torch.tensor([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0], [5.0, 5.0]])
    b = torch.tensor([[5.0, 15.0], [10.0, 20.0], [2.0, 4.0], [5.0, 5.0]])
    torch.testing.assert_close(ops.temporal_iou(a, b), torch.tensor([1 / 3, 0.0, 0.2, 0.0]))
    grid = ops.temporal_iou(
        torch.tensor([[[0.0, 10.0]], [[0.0, 20.0]]]), torch.tensor([[0.0, 10.0], [5.0, 15.0], [30.0, 40.0]])
    )
    assert grid.shape == (2, 3)
    torch.testing.assert_close(grid, torch.tensor([[1.0, 1 / 3, 0.0], [0.5, 0.5, 0.0]]))


def test_temporal_nms_hand_case():
    seg = torch.tensor([[0.0, 10.0], [1.0, 11.0], [20.0, 30.0], [0.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert ops.temporal_nms(seg, scores, 0.5, None).tolist() == [0, 2, 3]
    assert ops.temporal_nms(seg, scores, 0.5, 2).tolist() == [0, 2]
    assert ops.temporal_nms(seg, scores, 0.9, None).tolist() == [0, 1, 2, 3]
    # IoU exactly at the threshold is kept (strictly greater suppresses)
    assert ops.temporal_nms(
        torch.tensor([[0.0, 10.0], [5.0, 15.0]]), torch.tensor([1.0, 0.5]), 1 / 3 + 1e-9, None
    ).tolist() == [0, 1]
    with pytest.raises(ValueError, match="temporal_nms"):
        ops.temporal_nms(seg, scores[:2], 0.5, None)


def _two_samples():
    # sample 0: L = 3, 30 s (10 s clips); sample 1: L = 2 of Nv = 3, 10 s (5 s clips)
    sc = torch.full((2, 3, 3), -INF)
    for (s, e), v in {(0, 0): 0.9, (0, 1): 0.8, (0, 2): 0.1, (1, 1): 0.5, (1, 2): 0.85, (2, 2): 0.2}.items():
        sc[0, s, e] = v
    for (s, e), v in {(0, 0): 0.3, (0, 1): 0.3, (1, 1): 0.7, (0, 2): 5.0, (1, 2): 5.0, (2, 2): 5.0}.items():
        sc[1, s, e] = v  # cells past L hold junk that must be ignored
    cm = torch.tensor([[True, True, True], [True, True, False]])
    return sc, cm, torch.tensor([30.0, 10.0])


def test_rank_moments_all_cells_sorted_invalid_last():
    sc, cm, dur = _two_samples()
    out = ops.rank_moments(sc, cm, dur, top_k=None, nms_threshold=None)
    assert out.shape == (2, 6, 3)
    expected0 = [[10, 30, 0.85], [0, 10, 0.9]]
    expected0 = [[0, 10, 0.9], [10, 30, 0.85], [0, 20, 0.8], [10, 20, 0.5], [20, 30, 0.2], [0, 30, 0.1]]
    torch.testing.assert_close(out[0], torch.tensor(expected0))
    # tie 0.3/0.3 in flat order; invalid cells last, flat order, seconds by the same formula, -inf
    expected1 = [[5, 10, 0.7], [0, 5, 0.3], [0, 10, 0.3], [0, 15, -INF], [5, 15, -INF], [10, 15, -INF]]
    torch.testing.assert_close(out[1], torch.tensor(expected1))


def test_rank_moments_nms_fills_with_suppressed_then_invalid():
    sc, cm, dur = _two_samples()
    out = ops.rank_moments(sc, cm, dur, top_k=4, nms_threshold=0.4)
    # keep [0,10]; it suppresses [0,20] (IoU .5); keep [10,30]; it suppresses [10,20], [20,30], [0,30];
    # nothing left: fill with suppressed in score order
    torch.testing.assert_close(
        out[0], torch.tensor([[0, 10, 0.9], [10, 30, 0.85], [0, 20, 0.8], [10, 20, 0.5]])
    )
    # sample 1: keep [5,10]; [0,5] IoU 0 kept; [0,10] IoU .5 with both -> suppressed, fill; then invalid
    torch.testing.assert_close(out[1], torch.tensor([[5, 10, 0.7], [0, 5, 0.3], [0, 10, 0.3], [0, 15, -INF]]))
    full = ops.rank_moments(sc, cm, dur, top_k=None, nms_threshold=0.4)
    torch.testing.assert_close(full[0, 4:], torch.tensor([[20, 30, 0.2], [0, 30, 0.1]]))
    top1 = ops.rank_moments(sc, cm, dur, top_k=1, nms_threshold=None)
    torch.testing.assert_close(top1[:, 0], torch.tensor([[0, 10, 0.9], [5, 10, 0.7]]))
    assert ops.rank_moments(sc, cm, dur, top_k=50, nms_threshold=None).shape == (2, 6, 3)


def test_rank_moments_didemo_21_moments():
    sc = torch.randn(4, 6, 6).triu()
    sc = torch.where(torch.ones(6, 6, dtype=torch.bool).triu(), sc, -INF)
    out = ops.rank_moments(sc, torch.ones(4, 6, dtype=torch.bool), torch.full((4,), 30.0), None, None)
    assert out.shape == (4, 21, 3)
    assert (out[:, :-1, 2] >= out[:, 1:, 2]).all()
    # every (start, end) pair in 5 s units appears exactly once
    pairs = {(round(a), round(b)) for a, b in out[0, :, :2].tolist()}
    assert pairs == {(5 * s, 5 * (e + 1)) for s in range(6) for e in range(s, 6)}


def test_rank_moments_nms_agrees_with_single_sample_nms():
    g = torch.Generator().manual_seed(3)
    B, Nv = 6, 8
    sc = torch.randn(B, Nv, Nv, generator=g)
    L = torch.randint(1, Nv + 1, (B,), generator=g)
    cm = torch.arange(Nv)[None] < L[:, None]
    dur = torch.rand(B, generator=g) * 100 + 1
    sc = torch.where(ops.segment_mask(cm), sc, -INF)
    out = ops.rank_moments(sc, cm, dur, top_k=5, nms_threshold=0.3)
    for b in range(B):
        n = int(L[b])
        s, e = torch.triu_indices(n, n)
        seg = torch.stack([s * dur[b] / n, (e + 1) * dur[b] / n], dim=1)
        kept = ops.temporal_nms(seg, sc[b, s, e], 0.3, 5)
        k = kept.numel()
        torch.testing.assert_close(out[b, :k, :2], seg[kept])
        torch.testing.assert_close(out[b, :k, 2], sc[b, s, e][kept])


def test_best_segment_and_clip_range_mask():
    sc = torch.full((2, 3, 3), -INF)
    sc[0, 1, 2], sc[0, 0, 0] = 2.0, 1.0
    sc[1, 0, 1] = 0.5
    se = ops.best_segment(sc)
    assert se.tolist() == [[1, 2], [0, 1]]
    assert ops.clip_range_mask(se, 4).tolist() == [[False, True, True, False], [True, True, False, False]]


def test_seconds_to_clip_mask_hand_cases():
    # 10 s, L = 5 (2 s clips), Nv = 6
    gt = torch.tensor([[3.0, 7.0], [2.5, 3.4], [0.0, 10.0], [9.5, 10.0], [10.0, 10.0], [2.0, 3.0]])
    n = gt.shape[0]
    out = ops.seconds_to_clip_mask(gt, torch.full((n,), 10.0), torch.full((n,), 5), 6)
    assert out.int().tolist() == [
        [0, 1, 1, 1, 0, 0],  # clips 1 and 3 overlap by exactly half a clip: inside
        [0, 1, 0, 0, 0, 0],  # shorter than half a clip: the clip of the midpoint
        [1, 1, 1, 1, 1, 0],  # whole video, padding excluded
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1, 0],  # a point at the end: last valid clip
        [0, 1, 0, 0, 0, 0],  # exactly half of clip 1
    ]
    with pytest.raises(ValueError, match="num_valid"):
        ops.seconds_to_clip_mask(gt[:1], torch.tensor([10.0]), torch.tensor([7]), 6)


def test_localization_stats_hand_case():
    P = torch.tensor([[[1.0, 0.0, 0.5, 9.0], [0.2, 1.0, 0.0, 9.0], [7.0, 7.0, 7.0, 7.0]]])
    tm = torch.tensor([[True, True, False]])
    cm = torch.tensor([[True, True, True, False]])
    gt = torch.tensor([[False, True, False, True]])  # padded clip 3 ignored
    pred = torch.tensor([[False, True, True, False]])
    st = ops.localization_stats(P, tm, cm, gt, pred)
    # clip means over the two tokens: [0.6, 0.5, 0.25]
    expected = {
        "p_inside": 0.5,
        "p_outside": 0.425,
        "argmax_inside": 0.5,
        "gt_length": 1 / 3,
        "pred_length": 2 / 3,
        "clip_iou": 0.5,
    }
    assert set(st) == set(expected)
    for k, v in expected.items():
        assert st[k].shape == (1,)
        assert st[k].item() == pytest.approx(v), k
    whole = ops.localization_stats(P, tm, cm, cm, pred)
    assert math.isnan(whole["p_outside"].item())
