"""The baseline of the grounding-op benchmark: literal per-segment loops of DESIGN.md's equations.

Adapted from tests/reference_ops.py (the test oracle) into the implementation a careful first
version would write: a Python loop over the samples ``b`` and the segments ``(s, e)``, each segment's
formula written as printed with small tensor reductions over its tokens and clips. Per-sample
quantities (``m_j``, ``log(1 - m_j)``) are computed once per sample, and the per-segment values are
collected and stacked (no in-place writes, whose autograd would cost O(Nv^2) per cell), so the
baseline is not a strawman. Autograd gives the backward pass.

Shapes: P float [B, Ns, Nv]; token_mask [B, Ns], clip_mask [B, Nv] bool (True = valid, clips a prefix).
Results: float [B, Nv, Nv] with -inf (SC) or 0 (losses) on invalid cells, as the vectorised ops.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _place(values: list[Tensor], cells: list[tuple[int, int]], Nv: int, fill: float, like: Tensor) -> Tensor:
    """Scatter per-segment scalars into an [Nv, Nv] map (out of place, so autograd stays linear)."""
    out = torch.full((Nv, Nv), fill, dtype=like.dtype, device=like.device)
    if not values:
        return out
    s, e = zip(*cells)
    index = (torch.tensor(s, device=like.device), torch.tensor(e, device=like.device))
    return out.index_put(index, torch.stack(values))


def _sample(P: Tensor, token_mask: Tensor, clip_mask: Tensor, b: int) -> tuple[Tensor, int]:
    """P of sample b restricted to its valid tokens and clips -> ([n, L], L)."""
    L = int(clip_mask[b].sum())
    return P[b, token_mask[b].nonzero().flatten(), :L], L


def loop_segment_scores(P: Tensor, token_mask: Tensor, clip_mask: Tensor) -> Tensor:
    """Eq. 8: ``SC(s,e) = sum_i sum_{j in [s,e]} P / (n len) - sum_{j<L, j not in [s,e]} m_j / (L - len)``."""
    B, _, Nv = P.shape
    maps = []
    for b in range(B):
        Pb, L = _sample(P, token_mask, clip_mask, b)
        n = Pb.shape[0]
        m = Pb.min(dim=0).values
        values, cells = [], []
        for s in range(L):
            for e in range(s, L):
                length = e - s + 1
                pos = Pb[:, s : e + 1].sum() / (n * length)
                outside = torch.cat((m[:s], m[e + 1 :]))
                neg = outside.sum() / outside.numel() if outside.numel() else pos.new_zeros(())
                values.append(pos - neg)
                cells.append((s, e))
        maps.append(_place(values, cells, Nv, -math.inf, P))
    return torch.stack(maps)


def loop_inner_loss_map(P: Tensor, token_mask: Tensor, clip_mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Eq. 9: ``Lin(s,e) = -(1/n) sum_i log(max(min_{j in [s,e]} P[i,j], eps))``."""
    B, _, Nv = P.shape
    maps = []
    for b in range(B):
        Pb, L = _sample(P, token_mask, clip_mask, b)
        n = Pb.shape[0]
        values, cells = [], []
        for s in range(L):
            for e in range(s, L):
                window_min = Pb[:, s : e + 1].amin(dim=1)
                values.append(-torch.log(window_min.clamp(min=eps)).sum() / n)
                cells.append((s, e))
        maps.append(_place(values, cells, Nv, 0.0, P))
    return torch.stack(maps)


def loop_outer_loss_map(P: Tensor, token_mask: Tensor, clip_mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Eq. 11 (Decision 2): ``Lout(s,e) = -(1/(L-len)) sum_{j<L, j not in [s,e]} log(max(1 - m_j, eps))``."""
    B, _, Nv = P.shape
    maps = []
    for b in range(B):
        Pb, L = _sample(P, token_mask, clip_mask, b)
        m = Pb.min(dim=0).values
        r = -torch.log((1 - m).clamp(min=eps))
        values, cells = [], []
        for s in range(L):
            for e in range(s, L):
                outside = torch.cat((r[:s], r[e + 1 :]))
                values.append(outside.mean() if outside.numel() else r.new_zeros(()))
                cells.append((s, e))
        maps.append(_place(values, cells, Nv, 0.0, P))
    return torch.stack(maps)


#: name of the vectorised op in fsan_lightning.ops -> its loop baseline
LOOP_OPS = {
    "segment_scores": loop_segment_scores,
    "inner_loss_map": loop_inner_loss_map,
    "outer_loss_map": loop_outer_loss_map,
}
