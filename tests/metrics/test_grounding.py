"""GroundingRecall and temporal IoU: hand-computed cases, dedup by qidx."""

import pytest
import torch

from fsan_lightning.metrics import GroundingRecall, first_occurrence, grounding_ious, temporal_iou
from helpers import assert_import_avoids

PAD = [-1.0, -1.0]


def _batch():
    """Four queries, hand-scored (IoU in seconds, no +1):

    q0 gt [0,10]:  [0,5] -> 0.5 (exactly at the threshold), [20,30] -> 0
    q1 gt [0,10]:  [3,3] zero-length -> 0, [-5,5] outside [0, d] -> 5/15, [2,9] -> 7/10 exactly
    q2 gt [80,100] (duration 100): [90,120] past the end -> 10/40, four [0,1] -> 0,
                    then the perfect [80,100] in 6th place (outside the top-5)
    q3 gt [0,10]:  [0,4.99] -> 0.499 (just below 0.5)
    """
    rows = [
        [[0, 5], [20, 30], PAD, PAD, PAD, PAD],
        [[3, 3], [-5, 5], [2, 9], PAD, PAD, PAD],
        [[90, 120], [0, 1], [0, 1], [0, 1], [0, 1], [80, 100]],
        [[0, 4.99], PAD, PAD, PAD, PAD, PAD],
    ]
    preds = torch.tensor(rows, dtype=torch.float32)
    gt = torch.tensor([[0, 10], [0, 10], [80, 100], [0, 10]], dtype=torch.float32)
    return torch.tensor([7, 3, 5, 9]), preds, gt


EXPECTED = {
    "R1@0.1": 75.0,
    "R1@0.3": 50.0,
    "R1@0.5": 25.0,
    "R1@0.7": 0.0,
    "R5@0.1": 100.0,
    "R5@0.3": 75.0,
    "R5@0.5": 50.0,
    "R5@0.7": 25.0,
    "mIoU": 100 * (0.5 + 0.0 + 0.25 + 0.499) / 4,
}


def _assert_dict(got, want):
    assert list(got) == list(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-4), k
        assert isinstance(got[k], float)


def test_temporal_iou_hand_cases():
    pred = torch.tensor(
        [[0, 5], [5, 15], [3, 3], [-10, 10], [90, 120], [12, 20], [6, 2]], dtype=torch.float64
    )
    gt = torch.tensor([[0, 10], [0, 10], [0, 10], [0, 10], [80, 100], [0, 10], [0, 10]], dtype=torch.float64)
    want = [0.5, 5 / 15, 0.0, 0.5, 10 / 40, 0.0, 0.0]  # [6, 2] is inverted: treated as empty
    assert temporal_iou(pred, gt).tolist() == pytest.approx(want, abs=1e-12)
    # no +1 anywhere: the SCN/RTBPN convention would give (5 + 1) / (10 + 1) for the first case
    assert temporal_iou(torch.tensor([0.0, 5.0]), torch.tensor([0.0, 10.0])).item() == 0.5
    # both windows the same point: union 0, defined as IoU 0
    assert temporal_iou(torch.tensor([3.0, 3.0]), torch.tensor([3.0, 3.0])).item() == 0.0


def test_temporal_iou_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        temporal_iou(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[0.0, 1.0]]))


def test_grounding_recall_hand_computed():
    qidx, preds, gt = _batch()
    m = GroundingRecall()
    m.update(qidx, preds, gt)
    _assert_dict(m.compute(), EXPECTED)


def test_score_column_is_ignored_order_is_the_ranking():
    qidx, preds, gt = _batch()
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.5, 0.5]] * 4)  # higher score on the 2nd row: no re-sorting
    m = GroundingRecall()
    m.update(qidx, torch.cat([preds, scores[..., None]], dim=-1), gt)
    _assert_dict(m.compute(), EXPECTED)


def test_tied_windows_keep_the_given_order():
    # two windows with the same score: the first listed is the top-1
    preds = torch.tensor([[[0, 10, 0.7], [20, 30, 0.7]], [[20, 30, 0.7], [0, 10, 0.7]]])
    gt = torch.tensor([[0.0, 10.0], [0.0, 10.0]])
    top1, best = grounding_ious(preds, gt, ks=(1, 2))
    assert top1.tolist() == [1.0, 0.0]
    assert best.tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_threshold_hit_survives_float32_rounding():
    # mathematically IoU = 0.2 / 0.4 = 0.5; in float32 seconds it lands a few ulps below 0.5
    preds = torch.tensor([[[0.1, 0.3]]], dtype=torch.float32)
    gt = torch.tensor([[0.1, 0.5]], dtype=torch.float32)
    assert temporal_iou(preds[0, 0], gt[0]).item() != 0.5
    m = GroundingRecall(ks=(1,), thresholds=(0.5,))
    m.update(torch.tensor([0]), preds, gt)
    assert m.compute()["R1@0.5"] == 100.0


def test_fewer_than_five_predictions_are_scored_on_what_exists():
    preds = torch.tensor([[[30.0, 40.0], [0.0, 10.0]]])  # K = 2 < 5
    m = GroundingRecall()
    m.update(torch.tensor([0]), preds, torch.tensor([[0.0, 10.0]]))
    out = m.compute()
    assert out["R1@0.1"] == 0.0 and out["R5@0.7"] == 100.0 and out["mIoU"] == 0.0


def test_duplicated_qidx_counts_once():
    qidx, preds, gt = _batch()
    once = GroundingRecall()
    once.update(qidx, preds, gt)
    twice = GroundingRecall()
    twice.update(qidx, preds, gt)
    twice.update(qidx, preds, gt)
    _assert_dict(twice.compute(), once.compute())
    # split into uneven batches, with the DistributedSampler-style padding repeated at the end
    split = GroundingRecall()
    split.update(qidx[:3], preds[:3], gt[:3])
    split.update(qidx[3:], preds[3:], gt[3:])
    split.update(qidx[:2], preds[:2], gt[:2])
    _assert_dict(split.compute(), once.compute())


def test_first_occurrence_is_kept():
    gt = torch.tensor([[0.0, 10.0]])
    m = GroundingRecall()
    m.update(torch.tensor([4]), torch.tensor([[[0.0, 10.0]]]), gt)  # perfect
    m.update(torch.tensor([4]), torch.tensor([[[50.0, 60.0]]]), gt)  # same query again, wrong
    assert m.compute()["mIoU"] == 100.0
    assert first_occurrence(torch.tensor([5, 2, 5, 2, 9])).tolist() == [1, 0, 4]


def test_per_query_sorted_by_qidx_and_deduplicated():
    qidx, preds, gt = _batch()
    m = GroundingRecall()
    m.update(qidx, preds, gt)
    m.update(qidx[:1], preds[:1], gt[:1])
    q, iou = m.per_query()
    assert q.tolist() == [3, 5, 7, 9]
    assert iou.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.499])


def test_reset_and_empty_compute():
    qidx, preds, gt = _batch()
    m = GroundingRecall()
    m.update(qidx, preds, gt)
    m.reset()
    # torchmetrics warns about compute() before update(); ours then refuses to return NaNs
    with pytest.raises(RuntimeError, match="no queries"), pytest.warns(UserWarning):
        m.compute()


def test_custom_ks_and_thresholds_keys():
    m = GroundingRecall(ks=(1, 10), thresholds=(0.25,))
    m.update(torch.tensor([0]), torch.tensor([[[0.0, 4.0]] * 10]), torch.tensor([[0.0, 10.0]]))
    assert list(m.compute()) == ["R1@0.25", "R10@0.25", "mIoU"]


@pytest.mark.parametrize(
    "qidx, preds, gt, match",
    [
        (torch.tensor([0]), torch.zeros(1, 0, 2), torch.zeros(1, 2), "K>=1"),
        (torch.tensor([0]), torch.zeros(1, 5, 4), torch.zeros(1, 2), "2 or 3"),
        (torch.tensor([0]), torch.zeros(1, 5, 2), torch.zeros(2, 2), "ground truth"),
        (torch.tensor([0, 1]), torch.zeros(1, 5, 2), torch.zeros(1, 2), "qidx"),
        (torch.tensor([0.0]), torch.zeros(1, 5, 2), torch.zeros(1, 2), "integer"),
    ],
)
def test_bad_input_raises(qidx, preds, gt, match):
    with pytest.raises(ValueError, match=match):
        GroundingRecall().update(qidx, preds, gt)


def test_metrics_and_score_do_not_import_lightning():
    assert_import_avoids(["fsan_lightning.metrics", "fsan_lightning.score", "fsan_lightning.metrics.random_baseline"],
                         ("pytorch_lightning", "lightning."))
