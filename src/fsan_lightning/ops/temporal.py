"""Temporal IoU, NMS and moment ranking (inference: top-k moments in seconds)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_clip_mask
from ._segments import segment_mask

__all__ = ["best_segment", "rank_moments", "temporal_iou", "temporal_nms"]


def temporal_iou(a: Tensor, b: Tensor) -> Tensor:
    """Plain IoU of 1-d intervals in seconds (no ``+1``), broadcasting: the project's one IoU arithmetic.

    An inverted interval (start > end) covers no time (it is read as ``[start, start]``).

    Args:
        a: float [..., 2] (start, end). b: float [..., 2], broadcastable against ``a``.

    Returns:
        float [...] in [0, 1]; 0 where the union is empty (two zero-length intervals).
    """
    a = torch.stack([a[..., 0], torch.maximum(a[..., 0], a[..., 1])], dim=-1)
    b = torch.stack([b[..., 0], torch.maximum(b[..., 0], b[..., 1])], dim=-1)
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return torch.where(
        union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(union)
    )


def temporal_nms(segments: Tensor, scores: Tensor, iou_threshold: float, top_k: int | None = None) -> Tensor:
    """Greedy temporal non-maximum suppression for one sample.

    Segments are visited best score first (ties: lower index first); one is kept unless its IoU
    with an already kept segment is strictly greater than ``iou_threshold``.

    Args:
        segments: float [N, 2] (start, end). scores: float [N].
        iou_threshold: suppression threshold. top_k: stop after this many (None = all kept).

    Returns:
        int64 [K] indices into ``segments`` of the kept ones, best first (``K <= top_k``).
    """
    if segments.dim() != 2 or segments.shape[1] != 2 or scores.shape != segments.shape[:1]:
        shapes = f"{tuple(segments.shape)} and {tuple(scores.shape)}"
        raise ValueError(f"temporal_nms: need segments [N, 2] and scores [N], got {shapes}")
    order = torch.sort(scores, descending=True, stable=True).indices
    kept: list[int] = []
    for i in order.tolist():
        if top_k is not None and len(kept) >= top_k:
            break
        if kept and bool((temporal_iou(segments[kept], segments[i][None]) > iou_threshold).any()):
            continue
        kept.append(i)
    return torch.tensor(kept, dtype=torch.long, device=segments.device)


def best_segment(scores: Tensor) -> Tensor:
    """Arg-max cell of a segment map.

    Args:
        scores: float [B, Nv, Nv] (-inf on invalid cells).

    Returns:
        int64 [B, 2] (s, e) clip indices (ties: smallest flat index ``s * Nv + e``).
    """
    Nv = scores.shape[-1]
    flat = scores.flatten(1).argmax(dim=1)
    return torch.stack([flat // Nv, flat % Nv], dim=1)


def rank_moments(
    scores: Tensor,
    clip_mask: Tensor,
    duration: Tensor,
    top_k: int | None = 5,
    nms_threshold: float | None = None,
) -> Tensor:
    """Rank candidate moments by segment score, optionally after temporal NMS.

    Candidates are all ``Nv * (Nv + 1) / 2`` cells ``s <= e``; clip index to seconds with
    ``L = clip_mask.sum()``: ``start = s * duration / L``, ``end = (e + 1) * duration / L`` (cells
    past ``L`` keep this formula, e.g. DiDeMo's 5-second chunks when ``duration == 5 * L``).
    Order: valid cells by score, best first (ties: smaller flat index ``s * Nv + e`` first), then
    invalid cells with score ``-inf`` in flat-index order. With NMS, the greedy kept valid cells
    come first; when fewer than ``K`` survive, the list is filled with the next-best suppressed
    valid cells (in score order), then with invalid cells, so that ``K`` is fixed.

    Args:
        scores: float [B, Nv, Nv] (SC or head logits; invalid cells ignored and reported -inf).
        clip_mask: bool [B, Nv] valid prefix. duration: float [B] seconds.
        top_k: K; None = all candidates. Larger than the candidate count: clamped to it.
        nms_threshold: None = no NMS; else suppress IoU strictly above it.

    Returns:
        float [B, K, 3]: (start_s, end_s, score), best first.
    """
    if scores.dim() != 3 or scores.shape[1] != scores.shape[2]:
        raise ValueError(f"rank_moments: scores must be [B, Nv, Nv], got {tuple(scores.shape)}")
    B, Nv, _ = scores.shape
    check_clip_mask("rank_moments", clip_mask, (B, Nv))
    if duration.shape != (B,):
        raise ValueError(f"rank_moments: duration must be [B] = [{B}], got {tuple(duration.shape)}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"rank_moments: top_k must be >= 1 or None, got {top_k}")

    s_idx, e_idx = torch.triu_indices(Nv, Nv, device=scores.device)  # flat-index order
    C = s_idx.numel()
    K = C if top_k is None else min(top_k, C)
    valid = segment_mask(clip_mask)[:, s_idx, e_idx]  # [B, C]
    cand = torch.where(valid, scores[:, s_idx, e_idx], torch.full_like(scores[:, s_idx, e_idx], -torch.inf))
    L = clip_mask.sum(dim=1).to(duration.dtype)
    unit = (duration / L)[:, None]
    seg = torch.stack([s_idx[None].to(unit.dtype) * unit, (e_idx[None] + 1).to(unit.dtype) * unit], dim=2)

    # Rank of each candidate in the stable descending order; invalid ones come last in flat order.
    order = torch.sort(torch.where(valid, cand, -torch.inf), dim=1, descending=True, stable=True).indices
    if nms_threshold is None:
        picks = order[:, :K]
    else:
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(C, device=scores.device).expand(B, C))
        picks = _batched_nms(seg, valid, rank, nms_threshold, K)
    out_seg = torch.gather(seg, 1, picks[:, :, None].expand(B, K, 2))
    out_score = torch.gather(cand, 1, picks)
    return torch.cat([out_seg, out_score[:, :, None].to(out_seg.dtype)], dim=2)


def _batched_nms(seg: Tensor, valid: Tensor, rank: Tensor, threshold: float, K: int) -> Tensor:
    """Greedy NMS over a batch, K steps; fills with suppressed, then invalid candidates.

    Args:
        seg: [B, C, 2] seconds. valid: bool [B, C]. rank: int64 [B, C], 0 = best (invalid last).
        threshold: IoU strictly above it suppresses. K: picks per sample.

    Returns:
        int64 [B, K] candidate indices.
    """
    B, C = valid.shape
    available = valid.clone()  # valid, not suppressed, not picked
    picked = torch.zeros_like(valid)
    rows = torch.arange(B, device=seg.device)
    picks = []
    for _ in range(K):
        # Tiers: available (0) before suppressed valid (1) before invalid (2); picked never again.
        tier = torch.where(available, 0, torch.where(valid, 1, 2))
        key = tier * C + rank
        key = torch.where(picked, torch.full_like(key, 3 * C), key)
        choice = key.argmin(dim=1)
        picks.append(choice)
        picked[rows, choice] = True
        available[rows, choice] = False
        iou = temporal_iou(seg, seg[rows, choice][:, None, :])
        available &= ~(iou > threshold)
    return torch.stack(picks, dim=1)
