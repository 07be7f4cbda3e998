"""The segment algebra every rule shares: valid cells, lengths, window sums, inside/outside means.

Private to ``ops``; imports only torch. ``x`` is float [B, Nv] per-clip values, ``clip_mask`` bool
[B, Nv] a valid prefix of length ``L``; segment maps are [B, Nv, Nv] indexed ``[b, s, e]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def segment_mask(clip_mask: Tensor) -> Tensor:
    """bool [B, Nv, Nv]: True where ``s <= e < L``."""
    Nv = clip_mask.shape[1]
    idx = torch.arange(Nv, device=clip_mask.device)
    upper = idx[:, None] <= idx[None, :]
    return upper[None] & clip_mask[:, None, :]


def segment_lengths(Nv: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[Nv(s), Nv(e)] the length ``e - s + 1`` of every segment (1 where ``s > e``, never 0)."""
    idx = torch.arange(Nv, device=device)
    return (idx[None, :] - idx[:, None] + 1).clamp(min=1).to(dtype)


def window_sums(x: Tensor) -> Tensor:
    """``W[b, s, e] = sum_{j=s..e} x[b, j]`` from one cumulative sum -> [B, Nv, Nv] (garbage for s > e)."""
    c = torch.nn.functional.pad(x.cumsum(dim=1), (1, 0))
    return c[:, None, 1:] - c[:, :-1, None]


def masked_window_sums(x: Tensor, clip_mask: Tensor, fill: float = -torch.inf) -> Tensor:
    """Window sums of ``x`` over its valid clips, ``fill`` on invalid cells -> [B, Nv, Nv]."""
    sums = window_sums(torch.where(clip_mask, x, torch.zeros_like(x)))
    return torch.where(segment_mask(clip_mask), sums, torch.full_like(sums, fill))


def outside_means(x: Tensor, clip_mask: Tensor) -> Tensor:
    """Mean of ``x`` over the valid clips outside ``[s, e]`` -> [B, Nv, Nv]; 0 when ``len == L``.

    ``x`` must be 0 on padded clips. Values on invalid cells are left for the caller to mask.
    """
    L = clip_mask.sum(dim=1).to(x.dtype)
    rest = L[:, None, None] - segment_lengths(x.shape[1], x.device, x.dtype)
    total = x.sum(dim=1)[:, None, None] - window_sums(x)
    return torch.where(rest > 0, total / rest.clamp(min=1), torch.zeros_like(total))


def centred(x: Tensor, clip_mask: Tensor) -> Tensor:
    """``x`` [B, Nv, *rest] minus its mean over the valid clips (clip_mask [B, Nv]), 0 on padded clips.

    Per clip scores ([B, Nv]) or clip features ([B, Nv, D]) alike; a sample without a valid clip is all 0.
    """
    mask = clip_mask.reshape(clip_mask.shape + (1,) * (x.dim() - 2))
    x = torch.where(mask, x, torch.zeros_like(x))
    L = mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    return torch.where(mask, x - x.sum(dim=1, keepdim=True) / L, torch.zeros_like(x))
