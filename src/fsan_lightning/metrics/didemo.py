"""The DiDeMo evaluation protocol (Hendricks et al. 2017, LocalizingMoments `utils/eval.py`).

Per query, the 21 candidate moments (6 single 5 s chunks and every pair s < e, inclusive chunk
indices) arrive ranked best first. Each annotator's moment gets rank 1 + its (first) position in
the ranking; the query's rank is the mean of its 3 smallest annotator ranks (with 4 annotators the
worst is discarded; with 5 or 7, still the 3 smallest; with fewer than 3, all of them). Rank@k is
the share of queries whose rank is <= k. The query's IoU is the mean of the 3 largest IoUs between
the top-1 moment and the annotators' moments, IoU on inclusive chunk indices with +1 (as in their
code); mIoU is the mean over queries. Values are percentages.

Where their code cannot go (it raises), we decide: an annotator moment absent from the ranking gets
rank max(K, 21) + 1; rows of -1 (or start > end) are padding and match nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from fsan_lightning.metrics.dedup import cat_state, first_occurrence, qidx_state
from fsan_lightning.metrics.iou import chunk_iou

__all__ = [
    "CHUNK_SECONDS",
    "NUM_CHUNKS",
    "NUM_MOMENTS",
    "DiDeMoRank",
    "chunks_to_seconds",
    "didemo_candidates",
    "didemo_query_scores",
    "didemo_summary",
    "seconds_to_chunks",
]

CHUNK_SECONDS = 5.0
NUM_CHUNKS = 6
NUM_MOMENTS = NUM_CHUNKS * (NUM_CHUNKS + 1) // 2  # 21
_BEST_OF = 3


def didemo_candidates(num_chunks: int = NUM_CHUNKS) -> Tensor:
    """All moments (s, e), 0 <= s <= e < num_chunks, inclusive chunk indices: [num_chunks*(num_chunks+1)/2, 2]
    int64, the single chunks first, then the pairs s < e in (s, e) order."""
    singles = [(s, s) for s in range(num_chunks)]
    pairs = [(s, e) for s in range(num_chunks) for e in range(s + 1, num_chunks)]
    return torch.tensor(singles + pairs, dtype=torch.int64)


def seconds_to_chunks(windows: Tensor, chunk: float = CHUNK_SECONDS, atol: float | None = None) -> Tensor:
    """Seconds windows on the 5 s grid -> inclusive chunk indices: [s, e] -> (round(s/5), round(e/5) - 1).

    Chunk k spans [5k, 5k + 5] seconds. Rows with a negative start (the -1 padding of `gt_all`) or a
    non-finite value map to (-1, -1).

    Args:
        windows: [..., 2] seconds (extra trailing columns, e.g. a score, are not accepted: slice first).
        atol: if given, raise ValueError when a valid row's bound is more than `atol` seconds off the grid.
    Returns:
        [..., 2] int64.
    """
    if windows.shape[-1] != 2:
        raise ValueError(f"windows must be [..., 2] seconds, got {tuple(windows.shape)}")
    w = windows.to(torch.float64)
    pad = ~torch.isfinite(w).all(dim=-1) | (w[..., 0] < 0)
    w = torch.where(pad[..., None], torch.zeros_like(w), w)
    grid = torch.round(w / chunk)
    if atol is not None:
        off = (w - grid * chunk).abs().amax(dim=-1)
        bad = off > atol
        if bad.any():
            row = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"window {w[row].tolist()} at index {row} is not on the {chunk:g} s grid (tolerance {atol:g} s)"
            )
    out = torch.stack([grid[..., 0], grid[..., 1] - 1], dim=-1).to(torch.int64)
    return torch.where(pad[..., None], torch.full_like(out, -1), out)


def chunks_to_seconds(moments: Tensor, chunk: float = CHUNK_SECONDS) -> Tensor:
    """Inclusive chunk indices [..., 2] -> seconds [..., 2] float64: (s, e) -> (5s, 5e + 5)."""
    m = moments.to(torch.float64)
    return torch.stack([m[..., 0] * chunk, (m[..., 1] + 1) * chunk], dim=-1)


def didemo_query_scores(ranked: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Per-query average rank and average IoU by the DiDeMo protocol.

    Args:
        ranked: [B, K, 2] int chunk indices (inclusive), best first; K <= 21 is usual; rows of -1 are padding.
        gt: [B, M, 2] int annotator moments (inclusive chunk indices), padded with -1; >= 1 real row each.
    Returns:
        avg_rank: [B] float64, mean of the 3 smallest annotator ranks.
        avg_iou: [B] float64 in [0, 1], mean of the 3 largest IoUs between ranked[:, 0] and the annotators.
    """
    if ranked.ndim != 3 or ranked.shape[-1] != 2 or ranked.shape[1] < 1:
        raise ValueError(f"ranked moments must be [B, K>=1, 2] chunk indices, got {tuple(ranked.shape)}")
    if gt.ndim != 3 or gt.shape[-1] != 2 or gt.shape[0] != ranked.shape[0]:
        raise ValueError(f"annotator moments must be [B={ranked.shape[0]}, M, 2], got {tuple(gt.shape)}")
    for name, t in (("ranked moments", ranked), ("annotator moments", gt)):
        if t.dtype.is_floating_point and not torch.equal(t, torch.round(t)):
            raise ValueError(f"{name} must be integer chunk indices (convert seconds with seconds_to_chunks)")
    ranked = ranked.to(torch.int64)
    gt = gt.to(torch.int64)
    gt_valid = (gt[..., 0] >= 0) & (gt[..., 0] <= gt[..., 1])  # [B, M]
    gt_pad = (gt == -1).all(dim=-1)
    if not (gt_valid | gt_pad).all():
        b, m = (~(gt_valid | gt_pad)).nonzero()[0].tolist()
        raise ValueError(
            f"annotator moment {gt[b, m].tolist()} (query {b}, row {m}) is neither a moment nor -1 padding"
        )
    n_valid = gt_valid.sum(dim=1)
    if (n_valid == 0).any():
        b = int((n_valid == 0).nonzero()[0])
        raise ValueError(f"query {b} has no annotator moment (all rows are -1 padding)")
    k = ranked.shape[1]
    ranked_valid = (ranked[..., 0] >= 0) & (ranked[..., 0] <= ranked[..., 1])  # [B, K]

    # match[b, m, j]: annotator m's moment is the j-th ranked row
    match = (ranked[:, None, :, :] == gt[:, :, None, :]).all(dim=-1) & ranked_valid[:, None, :]
    missing_rank = max(k, NUM_MOMENTS) + 1
    positions = torch.arange(1, k + 1, dtype=torch.float64, device=ranked.device)
    rank = torch.where(match, positions, torch.full_like(positions, float(missing_rank))).amin(
        dim=-1
    )  # [B, M]
    rank = torch.where(gt_valid, rank, torch.full_like(rank, float("inf")))
    n_best = n_valid.clamp(max=_BEST_OF).to(torch.float64)
    best_ranks = rank.sort(dim=1).values[:, :_BEST_OF]
    avg_rank = (
        torch.where(torch.isfinite(best_ranks), best_ranks, torch.zeros_like(best_ranks)).sum(1) / n_best
    )

    iou = chunk_iou(ranked[:, :1, :], gt)  # [B, M]
    iou = torch.where(gt_valid, iou, torch.full_like(iou, -1.0))
    best_iou = iou.sort(dim=1, descending=True).values[:, :_BEST_OF]
    avg_iou = best_iou.clamp(min=0.0).sum(1) / n_best
    return avg_rank, avg_iou


def didemo_summary(avg_rank: Tensor, avg_iou: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """`{"Rank@1": %, "Rank@5": %, "mIoU": %}` from per-query average ranks and IoUs ([N] each)."""
    if avg_rank.numel() == 0:
        raise RuntimeError("no queries to score: the metric was never updated (or every batch was empty)")
    out = {f"Rank@{k}": 100.0 * (avg_rank <= k).to(torch.float64).mean().item() for k in ks}
    out["mIoU"] = 100.0 * avg_iou.to(torch.float64).mean().item()
    return out


class DiDeMoRank(Metric):
    """Rank@1, Rank@5 and mIoU by the DiDeMo authors' protocol, deduplicated by query index.

    `update(qidx [B] int64, ranked [B, K, 2] chunk indices best first, gt [B, M, 2] chunk indices padded -1)`.
    `compute()` -> `{"Rank@1": %, "Rank@5": %, "mIoU": %}` (Python floats).
    `per_query()` -> `(qidx [N], avg IoU [N], avg rank [N])`, deduplicated, sorted by qidx.
    Convert seconds on the 5 s grid with `seconds_to_chunks` first.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(int(k) for k in ks)
        # Every state is float64 (qidx too: exact below 2**53), and so is the metric's dtype: torchmetrics
        # stands in an empty tensor of that dtype for a rank that saw no data, and a dtype that differs
        # between ranks breaks the gather.
        self.set_dtype(torch.float64)
        self.add_state("qidx", default=[], dist_reduce_fx="cat")
        self.add_state("avg_rank", default=[], dist_reduce_fx="cat")
        self.add_state("avg_iou", default=[], dist_reduce_fx="cat")

    def update(self, qidx: Tensor, ranked: Tensor, gt: Tensor) -> None:  # type: ignore[override]
        if not isinstance(qidx, Tensor) or qidx.ndim != 1 or qidx.shape[0] != ranked.shape[0]:
            raise ValueError(
                f"qidx must be a [B={ranked.shape[0]}] tensor, got {getattr(qidx, 'shape', qidx)}"
            )
        if qidx.dtype.is_floating_point or qidx.dtype == torch.bool:
            raise ValueError(f"qidx must be an integer tensor, got {qidx.dtype}")
        avg_rank, avg_iou = didemo_query_scores(ranked.detach(), gt.detach())
        self.qidx.append(qidx_state(qidx))
        self.avg_rank.append(avg_rank)
        self.avg_iou.append(avg_iou)

    def _deduplicated(self) -> tuple[Tensor, Tensor, Tensor]:
        qidx = cat_state(self.qidx, torch.int64)
        keep = first_occurrence(qidx)
        return (
            qidx[keep],
            cat_state(self.avg_iou, torch.float64)[keep],
            cat_state(self.avg_rank, torch.float64)[keep],
        )

    def compute(self) -> dict[str, float]:
        _, avg_iou, avg_rank = self._deduplicated()
        return didemo_summary(avg_rank, avg_iou, self.ks)

    def per_query(self) -> tuple[Tensor, Tensor, Tensor]:
        """(qidx [N] int64, avg IoU [N] float64 in [0, 1], avg rank [N] float64) over all processes."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            return self._deduplicated()
