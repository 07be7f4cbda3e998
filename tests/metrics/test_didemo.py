"""DiDeMoRank: hand-computed cases, the chunk conventions, and an independent loop implementation of
the DiDeMo authors' protocol on the real test split."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fsan_lightning.metrics import (
    DiDeMoRank,
    chunk_iou,
    chunks_to_seconds,
    didemo_candidates,
    didemo_query_scores,
    seconds_to_chunks,
    temporal_iou,
)

CANDS = [tuple(c) for c in didemo_candidates().tolist()]


def _ranking(first: list[tuple[int, int]], positions: dict[tuple[int, int], int] | None = None):
    """A full ranking of the 21 moments with `first` at the top and `positions` (1-based) forced."""
    order: list = [None] * len(CANDS)
    for i, moment in enumerate(first):
        order[i] = moment
    for moment, pos in (positions or {}).items():
        assert order[pos - 1] is None
        order[pos - 1] = moment
    rest = iter(c for c in CANDS if c not in order)
    order = [o if o is not None else next(rest) for o in order]
    assert sorted(order) == sorted(CANDS)
    return order


def _pad(rows, width=7):
    return rows + [(-1, -1)] * (width - len(rows))


def _cases():
    """Six hand-scored queries: (ranking, annotators, avg rank, avg IoU)."""
    return [
        # A: 3 of 4 annotators on the top-1 -> ranks [1,1,10,1], best three 1,1,1; IoUs 1,1,0,1
        (_ranking([(4, 4)], {(0, 0): 10}), [(4, 4), (4, 4), (0, 0), (4, 4)], 1.0, 1.0),
        # B: ranks [3,3,1,8] -> (1+3+3)/3; top-1 (1,1) vs (0,1): (1+1-1)/(1+1-0) = 1/2 -> (1 + 1/2 + 1/2)/3
        (_ranking([(1, 1)], {(0, 1): 3, (2, 5): 8}), [(0, 1), (0, 1), (1, 1), (2, 5)], 7 / 3, 2 / 3),
        # C: ranks 4,5,6,20 -> exactly 5 (Rank@5 counts <=); the top-1 (5,5) overlaps none
        (
            _ranking([(5, 5)], {(0, 0): 4, (1, 1): 5, (2, 2): 6, (3, 3): 20}),
            [(0, 0), (1, 1), (2, 2), (3, 3)],
            5.0,
            0.0,
        ),
        # D: 7 annotators, ranks [2,2,1,21,21,21,21] -> (1+2+2)/3; IoUs 0,0,1,0,... -> 1/3
        (_ranking([(1, 2), (0, 0)], {(3, 3): 21}), [(0, 0), (0, 0), (1, 2)] + [(3, 3)] * 4, 5 / 3, 1 / 3),
        # E: only 2 annotators: mean of both ranks and both IoUs
        (_ranking([(2, 3)]), [(2, 3), (2, 3)], 1.0, 1.0),
        # F: a top-5 list only (padded with -1): the annotators' (5,5) is absent -> rank 22
        ([(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)] + [(-1, -1)] * 16, [(5, 5)] * 4, 22.0, 0.0),
    ]


def test_hand_computed_query_scores():
    cases = _cases()
    ranked = torch.tensor([c[0] for c in cases])
    gt = torch.tensor([_pad(list(c[1])) for c in cases])
    avg_rank, avg_iou = didemo_query_scores(ranked, gt)
    assert avg_rank.tolist() == pytest.approx([c[2] for c in cases])
    assert avg_iou.tolist() == pytest.approx([c[3] for c in cases])


def test_metric_hand_computed_and_dedup():
    cases = _cases()
    qidx = torch.arange(len(cases))
    ranked = torch.tensor([c[0] for c in cases])
    gt = torch.tensor([_pad(list(c[1])) for c in cases])
    m = DiDeMoRank()
    m.update(qidx, ranked, gt)
    want = {"Rank@1": 100 * 2 / 6, "Rank@5": 100 * 5 / 6, "mIoU": 100 * (1 + 2 / 3 + 0 + 1 / 3 + 1 + 0) / 6}
    got = m.compute()
    assert list(got) == list(want)
    assert got == pytest.approx(want)
    m.update(qidx[:4], ranked[:4], gt[:4])  # padded duplicates count once
    assert m.compute() == pytest.approx(want)
    q, _, rank = m.per_query()
    assert q.tolist() == list(range(6))
    assert rank.tolist() == pytest.approx([c[2] for c in cases])


def test_chunk_iou_plus_one_equals_seconds_iou_on_the_grid():
    """The +1 on inclusive chunk indices is not an inflation: it is the seconds IoU of the chunks."""
    c = didemo_candidates()
    assert c.shape == (21, 2) and len(set(map(tuple, c.tolist()))) == 21
    assert c.tolist()[:6] == [[i, i] for i in range(6)]
    a, b = c[:, None, :].expand(21, 21, 2), c[None, :, :].expand(21, 21, 2)
    assert torch.allclose(chunk_iou(a, b), temporal_iou(chunks_to_seconds(a), chunks_to_seconds(b)))
    assert chunk_iou(torch.tensor([1, 1]), torch.tensor([0, 2])).item() == pytest.approx(1 / 3)
    assert chunk_iou(torch.tensor([-1, -1]), torch.tensor([0, 2])).item() == 0.0
    assert chunk_iou(torch.tensor([3, 2]), torch.tensor([2, 3])).item() == 0.0


def test_seconds_to_chunks():
    w = torch.tensor([[0.0, 5.0], [5.0, 30.0], [-1.0, -1.0], [10.01, 19.98], [25.0, 30.0]])
    assert seconds_to_chunks(w).tolist() == [[0, 0], [1, 5], [-1, -1], [2, 3], [5, 5]]
    c = didemo_candidates()
    assert torch.equal(seconds_to_chunks(chunks_to_seconds(c).float()), c)
    with pytest.raises(ValueError, match="not on the 5 s grid"):
        seconds_to_chunks(torch.tensor([[0.0, 7.5]]), atol=0.05)
    padded_gt = torch.tensor([[[0.0, 10.0], [-1.0, -1.0]]])  # gt_all as a batch carries it
    assert seconds_to_chunks(padded_gt).tolist() == [[[0, 1], [-1, -1]]]


@pytest.mark.parametrize(
    "ranked, gt, match",
    [
        (torch.zeros(1, 21, 2, dtype=torch.long), torch.full((1, 4, 2), -1), "no annotator moment"),
        (torch.zeros(1, 21, 2, dtype=torch.long), torch.tensor([[[2, 1]]]), "neither a moment"),
        (torch.zeros(1, 21, 2) + 0.5, torch.tensor([[[0, 1]]]), "integer chunk indices"),
        (torch.zeros(1, 21, 3, dtype=torch.long), torch.tensor([[[0, 1]]]), "ranked moments"),
    ],
)
def test_bad_input_raises(ranked, gt, match):
    with pytest.raises(ValueError, match=match):
        didemo_query_scores(ranked, gt)


# ------------------------------------------------------------------ the real test split


def _shared() -> Path:
    return Path(os.environ.get("FSAN_SHARED_DATA", "/work/shared/data"))


def _loop_protocol(rankings, annotations):
    """The protocol text of REFERENCES.md, literally, one query at a time."""

    def iou(p, g):
        inter = max(0, min(p[1], g[1]) + 1 - max(p[0], g[0]))
        union = max(p[1], g[1]) + 1 - min(p[0], g[0])
        return inter / union

    ranks, ious = [], []
    for ranking, times in zip(rankings, annotations):
        r = [ranking.index(tuple(t)) + 1 for t in times]
        ranks.append(sum(sorted(r)[:3]) / 3)  # every real query has >= 4 annotators
        v = [iou(ranking[0], t) for t in times]
        ious.append(sum(sorted(v, reverse=True)[:3]) / 3)
    rank1 = sum(r <= 1 for r in ranks) / len(ranks)
    rank5 = sum(r <= 5 for r in ranks) / len(ranks)
    return rank1, rank5, sum(ious) / len(ious), ranks, ious


def test_equals_loop_protocol_on_real_didemo_test():
    path = _shared() / "didemo" / "test_data.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    data = json.loads(path.read_text())
    assert len(data) == 4021
    assert {len(d["times"]) for d in data} == {4, 5, 7}
    rng = np.random.default_rng(20211)
    rankings = [[CANDS[j] for j in rng.permutation(21)] for _ in data]
    # make Rank@1 and ties at the boundary frequent, not only what chance gives
    for i in range(0, len(data), 3):
        top = tuple(data[i]["times"][0])
        rankings[i].remove(top)
        rankings[i].insert(i % 7, top)
    annotations = [d["times"] for d in data]
    rank1, rank5, miou, ranks, ious = _loop_protocol(rankings, annotations)

    width = max(len(t) for t in annotations)
    gt = torch.tensor([list(map(tuple, t)) + [(-1, -1)] * (width - len(t)) for t in annotations])
    ranked = torch.tensor(rankings)
    m = DiDeMoRank()
    half = len(data) // 2
    m.update(torch.arange(half), ranked[:half], gt[:half])
    m.update(torch.arange(half - 100, len(data)), ranked[half - 100 :], gt[half - 100 :])  # overlap: dedup
    out = m.compute()
    assert out["Rank@1"] == pytest.approx(100 * rank1, abs=1e-9)
    assert out["Rank@5"] == pytest.approx(100 * rank5, abs=1e-9)
    assert out["mIoU"] == pytest.approx(100 * miou, abs=1e-9)
    _, avg_iou, avg_rank = m.per_query()
    assert np.allclose(avg_rank.numpy(), ranks) and np.allclose(avg_iou.numpy(), ious)
    assert 5 < out["Rank@1"] < 95 and 5 < out["Rank@5"] < 95  # the comparison covers both outcomes


def test_model_side_ranking_maps_to_the_21_candidates():
    """ops.rank_moments(top_k=None) on a 6-clip grid, through seconds_to_chunks, is a full ranking of the
    21 moments, for 6-chunk and 5-chunk videos (the latter's moments with chunk 5 come last)."""
    from fsan_lightning import ops

    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[True] * 6, [True] * 5 + [False]])
    windows = ops.rank_moments(
        torch.randn(2, 6, 6, generator=g), mask, torch.tensor([30.0, 25.0]), None, None
    )
    chunks = seconds_to_chunks(windows[..., :2])
    for b in range(2):
        assert sorted(map(tuple, chunks[b].tolist())) == sorted(CANDS)
    assert all(e == 5 for _, e in chunks[1, 15:].tolist())
