"""Temporal IoU, the two conventions this project uses.

- `temporal_iou`: seconds, no +1 (ActivityNet, Charades, synthetic). A prediction outside
  [0, duration] is scored as given (its outside part only enlarges the union); a zero-length
  prediction has IoU 0 with any ground truth of positive length.
- `chunk_iou`: inclusive chunk indices with +1 on both intersection and union, exactly as the DiDeMo
  authors' evaluation (LocalizingMoments `utils/eval.py`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fsan_lightning.ops.temporal import temporal_iou as ops_temporal_iou

__all__ = ["IOU_EPS", "chunk_iou", "temporal_iou"]

# A hit is `iou >= threshold - IOU_EPS`: seconds such as 0.1 or 0.3 are not exact in binary floating
# point (and batches carry float32), so a window whose IoU is mathematically the threshold could
# otherwise land a few ulps below it and miss. 1e-6 is far below any meaningful IoU difference.
IOU_EPS = 1e-6


def temporal_iou(pred: Tensor, gt: Tensor) -> Tensor:
    """IoU of time windows in seconds (plain, no +1): ``ops.temporal_iou`` in float64, finite inputs only.

    Args:
        pred: [..., 2] (start, end) seconds.
        gt: [..., 2] (start, end) seconds, broadcastable against `pred`.
    Returns:
        [...] float64 IoU in [0, 1]; 0 where the union has zero length (both windows are the same point).
    """
    pred = pred.to(torch.float64)
    gt = gt.to(torch.float64)
    if not torch.isfinite(pred).all():
        raise ValueError("temporal_iou: predictions contain NaN or infinite seconds")
    if not torch.isfinite(gt).all():
        raise ValueError("temporal_iou: ground truth contains NaN or infinite seconds")
    return ops_temporal_iou(pred, gt)  # an inverted window (start > end) covers no time


def chunk_iou(pred: Tensor, gt: Tensor) -> Tensor:
    """DiDeMo IoU on inclusive chunk indices: (min(ends) + 1 - max(starts))+ / (max(ends) + 1 - min(starts)).

    Args:
        pred: [..., 2] int (start_chunk, end_chunk), inclusive.
        gt: [..., 2] int, broadcastable against `pred`.
    Returns:
        [...] float64. Rows that are not moments (start > end or a negative index, e.g. -1 padding) give 0.
    """
    pred = pred.to(torch.int64)
    gt = gt.to(torch.int64)
    inter = (torch.minimum(pred[..., 1], gt[..., 1]) + 1 - torch.maximum(pred[..., 0], gt[..., 0])).clamp(
        min=0
    )
    union = torch.maximum(pred[..., 1], gt[..., 1]) + 1 - torch.minimum(pred[..., 0], gt[..., 0])
    valid = (
        (pred[..., 0] >= 0) & (pred[..., 0] <= pred[..., 1]) & (gt[..., 0] >= 0) & (gt[..., 0] <= gt[..., 1])
    )
    safe = torch.where(union > 0, union, torch.ones_like(union))
    iou = inter.to(torch.float64) / safe.to(torch.float64)
    return torch.where(valid, iou, torch.zeros_like(iou))
