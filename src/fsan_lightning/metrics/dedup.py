"""Deduplication of per-query metric states by query index.

Under DDP the distributed sampler pads the last batches with repeated samples, so one query can be
scored on two ranks; gathered states are deduplicated on `qidx` (keep the first occurrence).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cat_state", "first_occurrence", "qidx_state"]


def cat_state(state: Tensor | list[Tensor], dtype: torch.dtype) -> Tensor:
    """A list state (or the tensor torchmetrics leaves after a sync) as one 1-D tensor of `dtype`.

    A rank that saw no data contributes an empty float tensor to the gather, hence the cast.
    """
    if isinstance(state, list):
        if not state:
            return torch.empty(0, dtype=dtype)
        state = torch.cat([s.reshape(-1) for s in state])
    return state.reshape(-1).to(dtype)


def first_occurrence(qidx: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct query index, ordered by query index.

    Args:
        qidx: [N] int64 (may repeat).
    Returns:
        [U] int64 positions into `qidx`, U = number of distinct values, so that `qidx[result]` is sorted
        ascending and unique.
    """
    if qidx.ndim != 1:
        raise ValueError(f"qidx must be 1-D, got shape {tuple(qidx.shape)}")
    if qidx.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=qidx.device)
    uniq, inverse = torch.unique(qidx, sorted=True, return_inverse=True)
    positions = torch.arange(qidx.numel(), device=qidx.device)
    first = torch.full((uniq.numel(),), qidx.numel(), dtype=torch.int64, device=qidx.device)
    return first.scatter_reduce_(0, inverse, positions, reduce="amin")


_MAX_EXACT_QIDX = 2**53


def qidx_state(qidx: Tensor) -> Tensor:
    """`qidx` [B] (integer) as the float64 state the metrics keep (exact for |qidx| < 2**53)."""
    if qidx.dtype.is_floating_point or qidx.dtype == torch.bool:
        raise ValueError(f"qidx must be an integer tensor, got {qidx.dtype}")
    if qidx.numel() and qidx.abs().max().item() >= _MAX_EXACT_QIDX:
        raise ValueError("qidx values must be below 2**53")
    return qidx.detach().to(torch.float64)
