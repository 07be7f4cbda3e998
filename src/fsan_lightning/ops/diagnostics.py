"""Localization diagnostics (experiments/localization/README.md): is the map higher inside the described event?"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_clip_mask, check_mask

__all__ = ["clip_range_mask", "localization_stats", "seconds_to_clip_mask"]


def seconds_to_clip_mask(gt: Tensor, duration: Tensor, num_valid: Tensor, Nv: int) -> Tensor:
    """Clips covered by a moment given in seconds.

    Clip ``j`` of ``L`` valid clips spans ``[j * dur / L, (j + 1) * dur / L]``. It is inside when it
    overlaps the moment by at least half a clip (``overlap >= dur / (2L)``, up to a relative 1e-6
    for rounding). When no clip qualifies (a moment shorter than half a clip, or one straddling two
    clips by less than half of each), the clip containing the moment's midpoint is inside, so every
    sample has at least one clip. Padded clips (``j >= L``) are never inside.

    Args:
        gt: float [B, 2] (start, end) seconds. duration: float [B] seconds.
        num_valid: int [B] valid clip counts ``L`` (1 <= L <= Nv). Nv: padded clip count.

    Returns:
        bool [B, Nv].
    """
    B = gt.shape[0]
    if gt.shape != (B, 2) or duration.shape != (B,) or num_valid.shape != (B,):
        raise ValueError(
            "seconds_to_clip_mask: need gt [B, 2], duration [B], num_valid [B], got "
            f"{tuple(gt.shape)}, {tuple(duration.shape)}, {tuple(num_valid.shape)}"
        )
    if bool(((num_valid < 1) | (num_valid > Nv)).any()):
        raise ValueError(f"seconds_to_clip_mask: num_valid must lie in [1, {Nv}], got {num_valid.tolist()}")
    dtype = gt.dtype if gt.is_floating_point() else torch.float64
    L = num_valid.to(dtype)[:, None]
    unit = duration.to(dtype)[:, None] / L
    j = torch.arange(Nv, device=gt.device, dtype=dtype)[None, :]
    lo, hi = j * unit, (j + 1) * unit
    start, end = gt[:, :1].to(dtype), gt[:, 1:].to(dtype)
    overlap = (torch.minimum(hi, end) - torch.maximum(lo, start)).clamp(min=0)
    valid = j < L
    inside = (overlap >= 0.5 * unit * (1 - 1e-6)) & valid
    mid_clip = torch.floor((start + end) / 2 / unit).clamp(min=0)
    mid_clip = torch.minimum(mid_clip, L - 1)
    fallback = (j == mid_clip) & valid
    return torch.where(inside.any(dim=1, keepdim=True), inside, fallback)


def clip_range_mask(segments: Tensor, Nv: int) -> Tensor:
    """Clips ``s..e`` of segments given as clip indices.

    Args:
        segments: int [B, 2] (s, e) inclusive clip indices (e.g. from ``best_segment``). Nv: clips.

    Returns:
        bool [B, Nv].
    """
    j = torch.arange(Nv, device=segments.device)[None, :]
    return (j >= segments[:, :1]) & (j <= segments[:, 1:])


def localization_stats(
    P: Tensor, token_mask: Tensor, clip_mask: Tensor, gt_clip_mask: Tensor, pred_clip_mask: Tensor
) -> dict[str, Tensor]:
    """Per-sample localization diagnostics of an alignment map against the ground truth.

    Args:
        P: float [B, Ns, Nv] alignment map.
        token_mask: bool [B, Ns] tokens to evaluate (e.g. ``content_mask`` for content words only).
        clip_mask: bool [B, Nv] valid prefix.
        gt_clip_mask: bool [B, Nv] ground-truth clips (``seconds_to_clip_mask``).
        pred_clip_mask: bool [B, Nv] predicted clips (e.g. top-1 moment).
        Both clip sets are intersected with ``clip_mask``.

    Returns:
        dict of float [B]:
        ``p_inside`` mean of P over (valid token, ground-truth clip) pairs;
        ``p_outside`` the same over valid clips outside the ground truth (NaN when it covers the video);
        ``argmax_inside`` share of valid tokens whose arg-max valid clip is inside the ground truth;
        ``gt_length`` / ``pred_length`` share of the valid clips in the ground truth / prediction;
        ``clip_iou`` IoU of the predicted and ground-truth clip sets.
        A sample with no token in ``token_mask`` gets NaN for the three map statistics.
    """
    if P.dim() != 3:
        raise ValueError(f"localization_stats: P must be [B, Ns, Nv], got {tuple(P.shape)}")
    B, Ns, Nv = P.shape
    check_mask("localization_stats", "token_mask", token_mask, (B, Ns))
    check_clip_mask("localization_stats", clip_mask, (B, Nv))
    check_mask("localization_stats", "gt_clip_mask", gt_clip_mask, (B, Nv))
    check_mask("localization_stats", "pred_clip_mask", pred_clip_mask, (B, Nv))
    gt = gt_clip_mask & clip_mask
    pred = pred_clip_mask & clip_mask
    outside = clip_mask & ~gt
    n = token_mask.sum(dim=1).to(P.dtype)
    P = torch.where(token_mask[:, :, None] & clip_mask[:, None, :], P, torch.zeros_like(P))
    clip_mean = P.sum(dim=1) / n[:, None]  # [B, Nv] mean over tokens (NaN when n == 0)

    def masked_mean(x: Tensor, m: Tensor) -> Tensor:
        return torch.where(m, x, torch.zeros_like(x)).sum(dim=1) / m.sum(dim=1).to(x.dtype)

    best = torch.where(clip_mask[:, None, :], P, -torch.inf).argmax(dim=2)  # [B, Ns]
    hit = torch.gather(gt, 1, best) & token_mask
    L = clip_mask.sum(dim=1).to(P.dtype)
    inter = (gt & pred).sum(dim=1).to(P.dtype)
    union = (gt | pred).sum(dim=1).to(P.dtype)
    return {
        "p_inside": masked_mean(clip_mean, gt),
        "p_outside": masked_mean(clip_mean, outside),
        "argmax_inside": hit.sum(dim=1).to(P.dtype) / n,
        "gt_length": gt.sum(dim=1).to(P.dtype) / L,
        "pred_length": pred.sum(dim=1).to(P.dtype) / L,
        "clip_iou": torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union)),
    }
