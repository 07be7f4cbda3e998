"""Multiple-instance pooling and clip-to-segment scores for the MLP grounding head (Table 4 row 1).

Imports only torch. Conventions: per-clip scores ``c`` are float [B, Nv]; ``clip_mask`` bool [B, Nv]
is a valid prefix of length ``L``; segment maps are [B, Nv, Nv] indexed ``[b, s, e]``, valid when
``s <= e < L``, ``-inf`` elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_clip_mask
from ._segments import centred, masked_window_sums, outside_means, segment_lengths, segment_mask, window_sums

__all__ = ["clip_segment_scores", "mil_pool"]

CLIP_SEGMENT_RULES = ("maxsum", "contrast")


def mil_pool(x: Tensor, mask: Tensor, temperature: float | None = None) -> Tensor:
    """Video-level MIL score: hard or smooth maximum of instance scores over the valid instances.

    ``temperature=None``: ``max_{valid i} x_i``. ``t > 0``: ``t * log(mean_{valid i} exp(x_i / t))``,
    which lies between the mean (t -> inf) and the max (t -> 0) and spreads the gradient over the
    instances near the maximum instead of giving it all to one.

    Args:
        x: float [B, ...] instance scores (e.g. [B, Nv] clips or [B, Nv, Nv] segments).
        mask: bool, the shape of ``x``, True = valid; every sample needs one valid instance.
        temperature: None or > 0.

    Returns:
        float [B].
    """
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape):
        raise ValueError(
            f"mil_pool: mask must be bool of shape {tuple(x.shape)}, got {mask.dtype} {tuple(mask.shape)}"
        )
    x, mask = x.flatten(1), mask.flatten(1)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("mil_pool: every sample needs at least one valid instance")
    if temperature is None:
        return torch.where(mask, x, torch.full_like(x, -torch.inf)).amax(dim=1)
    if temperature <= 0:
        raise ValueError(f"mil_pool: temperature must be > 0 or None, got {temperature}")
    scaled = torch.where(mask, x / temperature, torch.full_like(x, -torch.inf))
    count = mask.sum(dim=1).to(x.dtype)
    return temperature * (torch.logsumexp(scaled, dim=1) - torch.log(count))


def clip_segment_scores(c: Tensor, clip_mask: Tensor, rule: str = "maxsum") -> Tensor:
    """Segment scores from per-clip scores.

    - ``"maxsum"``: ``sum_{j in [s,e]} (c_j - cbar)``, ``cbar = mean_{k<L} c_k``: a clip joins the
      best segment when it lies above the video's average, so the length follows the scores
      (the maximum-sum rule of docs/model.md).
    - ``"contrast"``: ``mean_{j in [s,e]} c_j - mean_{j<L, j not in [s,e]} c_j`` (the second term 0
      when ``len == L``): Eq. 8's inside-minus-outside form on clip scores.

    Args:
        c: float [B, Nv] (values on padded clips are ignored). clip_mask: bool [B, Nv] valid prefix.
        rule: ``"maxsum"`` or ``"contrast"``.

    Returns:
        float [B, Nv, Nv], ``-inf`` on invalid cells.
    """
    if rule not in CLIP_SEGMENT_RULES:
        raise ValueError(f"clip_segment_scores: rule must be one of {CLIP_SEGMENT_RULES}, got {rule!r}")
    if c.dim() != 2:
        raise ValueError(f"clip_segment_scores: scores must be [B, Nv], got {tuple(c.shape)}")
    check_clip_mask("clip_segment_scores", clip_mask, tuple(c.shape))
    if rule == "maxsum":
        return masked_window_sums(centred(c, clip_mask), clip_mask)
    c = torch.where(clip_mask, c, torch.zeros_like(c))
    inside = window_sums(c) / segment_lengths(c.shape[1], c.device, c.dtype)
    scores = inside - outside_means(c, clip_mask)
    return torch.where(segment_mask(clip_mask), scores, torch.full_like(scores, -torch.inf))
