"""Maximum-sum contiguous runs of per-clip scores, batched (the prototype baseline's grounding rule).

Imports only torch. A segment ``(s, e)`` is inclusive; valid clips are a prefix of length ``L``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_clip_mask
from ._segments import masked_window_sums

__all__ = ["max_sum_run", "window_sums"]


def window_sums(c: Tensor, clip_mask: Tensor) -> Tensor:
    """Sum of the clip scores over every segment.

    ``out[b, s, e] = sum_{j=s..e} c[b, j]`` for ``s <= e < L_b``, ``-inf`` elsewhere.

    Args:
        c: float [B, Nv] per-clip scores (values on padded clips are ignored).
        clip_mask: bool [B, Nv] valid prefix.

    Returns:
        float [B, Nv, Nv], the dtype of ``c``.
    """
    if c.dim() != 2:
        raise ValueError(f"window_sums: scores must be [B, Nv], got {tuple(c.shape)}")
    B, Nv = c.shape
    check_clip_mask("window_sums", clip_mask, (B, Nv))
    return masked_window_sums(c, clip_mask)


def max_sum_run(c: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
    """The contiguous run of valid clips with the largest score sum, per sample.

    Ties go to the smallest flat index ``s * Nv + e`` (the earliest start, then the shortest run),
    the order ``rank_moments`` uses, so its top-1 on ``window_sums`` is this run.

    Args:
        c: float [B, Nv] per-clip scores. clip_mask: bool [B, Nv] valid prefix (at least one clip).

    Returns:
        runs: int64 [B, 2] inclusive (s, e). best: [B] their sums.
    """
    sums = window_sums(c, clip_mask)
    Nv = c.shape[1]
    flat = sums.flatten(1).argmax(dim=1)  # torch.argmax returns the first of equal maxima
    best = sums.flatten(1).gather(1, flat[:, None])[:, 0]
    return torch.stack([flat // Nv, flat % Nv], dim=1), best
