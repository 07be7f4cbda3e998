"""Recall@k at IoU thresholds and top-1 mIoU for ranked time windows (ActivityNet, Charades, synthetic).

Definitions (docs/metrics.md): IoU in seconds with no +1; a query is a hit at (k, t) when one of its
first k predictions has IoU >= t (an IoU exactly at t counts); mIoU is the mean IoU of the top-1
prediction. The predictions arrive ranked and already de-duplicated by NMS on the model side: the metric
applies no NMS and does not re-sort by score (the order given is the ranking, ties included).
Values are percentages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from fsan_lightning.metrics.dedup import cat_state, first_occurrence, qidx_state
from fsan_lightning.metrics.iou import IOU_EPS, temporal_iou

__all__ = ["DEFAULT_KS", "DEFAULT_THRESHOLDS", "GroundingRecall", "grounding_ious", "recall_summary"]

DEFAULT_KS = (1, 5)
DEFAULT_THRESHOLDS = (0.1, 0.3, 0.5, 0.7)


def _check_qidx(qidx: Tensor, batch: int) -> None:
    if not isinstance(qidx, Tensor) or qidx.ndim != 1 or qidx.shape[0] != batch:
        shape = tuple(qidx.shape) if isinstance(qidx, Tensor) else type(qidx).__name__
        raise ValueError(f"qidx must be a [B={batch}] tensor, got {shape}")
    if qidx.dtype.is_floating_point or qidx.dtype == torch.bool:
        raise ValueError(f"qidx must be an integer tensor, got {qidx.dtype}")


def grounding_ious(preds: Tensor, gt: Tensor, ks: Sequence[int] = DEFAULT_KS) -> tuple[Tensor, Tensor]:
    """Per-query IoU of the top-1 and best IoU among the top-k predictions.

    Args:
        preds: [B, K, 2] or [B, K, 3] (start_s, end_s[, score]), best first; K >= 1. Only the first k rows
            count for Recall@k; a query with fewer than k rows is scored on the rows it has.
        gt: [B, 2] ground-truth (start_s, end_s).
        ks: the k of Recall@k.
    Returns:
        iou_top1: [B] float64; best_at_k: [B, len(ks)] float64, max IoU over rows 0..k-1.
    """
    if preds.ndim != 3 or preds.shape[-1] not in (2, 3) or preds.shape[1] < 1:
        raise ValueError(f"predictions must be [B, K>=1, 2 or 3], got {tuple(preds.shape)}")
    if gt.ndim != 2 or gt.shape != (preds.shape[0], 2):
        raise ValueError(f"ground truth must be [B={preds.shape[0]}, 2], got {tuple(gt.shape)}")
    ious = temporal_iou(preds[..., :2], gt[:, None, :])  # [B, K]
    best = torch.stack([ious[:, :k].max(dim=1).values for k in ks], dim=1)
    return ious[:, 0], best


def recall_summary(
    iou_top1: Tensor,
    best_at_k: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict[str, float]:
    """`{"R{k}@{t}": percent, ..., "mIoU": percent}` from per-query IoUs ([N] and [N, len(ks)])."""
    if iou_top1.numel() == 0:
        raise RuntimeError("no queries to score: the metric was never updated (or every batch was empty)")
    out: dict[str, float] = {}
    for j, k in enumerate(ks):
        for t in thresholds:
            hit = best_at_k[:, j] >= t - IOU_EPS
            out[f"R{k}@{t:g}"] = 100.0 * hit.to(torch.float64).mean().item()
    out["mIoU"] = 100.0 * iou_top1.to(torch.float64).mean().item()
    return out


class GroundingRecall(Metric):
    """Recall@k at IoU thresholds and top-1 mIoU, deduplicated by query index.

    `update(qidx [B] int64, preds [B, K, 2|3] seconds best first, gt [B, 2] seconds)`.
    `compute()` -> `{"R1@0.1": %, ..., "R5@0.7": %, "mIoU": %}` (Python floats).
    `per_query()` -> `(qidx [N], top-1 IoU [N] float64)`, one row per distinct query, sorted by qidx.

    States are lists of per-query tensors reduced with "cat", so under DDP every rank's queries are
    gathered; a query seen twice (the sampler's padding) counts once, its first occurrence kept.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        ks: Sequence[int] = DEFAULT_KS,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        ks = tuple(int(k) for k in ks)
        thresholds = tuple(float(t) for t in thresholds)
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"ks must be positive integers, got {ks}")
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError(f"IoU thresholds must lie in (0, 1], got {thresholds}")
        self.ks = ks
        self.thresholds = thresholds
        # Every state is float64 (qidx too: exact below 2**53), and so is the metric's dtype: torchmetrics
        # stands in an empty tensor of that dtype for a rank that saw no data, and a dtype that differs
        # between ranks breaks the gather.
        self.set_dtype(torch.float64)
        self.add_state("qidx", default=[], dist_reduce_fx="cat")
        self.add_state("iou_top1", default=[], dist_reduce_fx="cat")
        for k in ks:
            self.add_state(f"best_iou_r{k}", default=[], dist_reduce_fx="cat")

    def update(self, qidx: Tensor, preds: Tensor, gt: Tensor) -> None:  # type: ignore[override]
        _check_qidx(qidx, preds.shape[0] if preds.ndim >= 1 else -1)
        top1, best = grounding_ious(preds.detach(), gt.detach(), self.ks)
        self.qidx.append(qidx_state(qidx))
        self.iou_top1.append(top1)
        for j, k in enumerate(self.ks):
            getattr(self, f"best_iou_r{k}").append(best[:, j])

    def _deduplicated(self) -> tuple[Tensor, Tensor, Tensor]:
        qidx = cat_state(self.qidx, torch.int64)
        top1 = cat_state(self.iou_top1, torch.float64)
        best = torch.stack(
            [cat_state(getattr(self, f"best_iou_r{k}"), torch.float64) for k in self.ks], dim=1
        )
        keep = first_occurrence(qidx)
        return qidx[keep], top1[keep], best[keep]

    def compute(self) -> dict[str, float]:
        _, top1, best = self._deduplicated()
        return recall_summary(top1, best, self.ks, self.thresholds)

    def per_query(self) -> tuple[Tensor, Tensor]:
        """(qidx [N] int64, top-1 IoU [N] float64 in [0, 1]) over all processes, deduplicated, sorted by qidx."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            qidx, top1, _ = self._deduplicated()
        return qidx, top1
