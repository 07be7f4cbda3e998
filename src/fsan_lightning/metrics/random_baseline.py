"""The "Random" rows of the paper's tables.

ActivityNet / Charades / synthetic: each query's video is cut into `num_clips` equal clips; a random
prediction is one of the Nv(Nv+1)/2 clip segments (s <= e), uniformly; top-k is k *distinct* uniform
segments (no NMS: NMS would make the random ranking depend on an extra parameter, and the paper does
not say it used one). The top-1 is the first of them, itself uniform. Scores are averaged over `draws`
independent draws. `random_baseline_expected` gives the exact expectation of the same process
(no sampling), which the Monte Carlo average converges to.

DiDeMo: a uniformly random ranking (permutation) of the 21 candidate moments per query, scored by the
DiDeMo protocol, averaged over draws.

CLI: `python -m fsan_lightning.metrics.random_baseline --dataset D --annotations FILE [--num-clips 64]
[--draws 10] [--seed 0] [--exact] [--durations CSV ...]` prints one JSON object (values in percent).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np
import torch

from fsan_lightning.metrics.didemo import (
    NUM_CHUNKS,
    didemo_candidates,
    didemo_query_scores,
    didemo_summary,
    seconds_to_chunks,
)
from fsan_lightning.metrics.grounding import DEFAULT_KS, DEFAULT_THRESHOLDS, grounding_ious, recall_summary
from fsan_lightning.metrics.iou import IOU_EPS, temporal_iou

__all__ = ["clip_segments", "didemo_random_baseline", "main", "random_baseline", "random_baseline_expected"]


def clip_segments(num_clips: int) -> np.ndarray:
    """All clip segments (s, e), 0 <= s <= e < num_clips: [num_clips*(num_clips+1)/2, 2] int64, row-major in (s, e)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    s, e = np.triu_indices(num_clips)
    return np.stack([s, e], axis=1).astype(np.int64)


def _as_arrays(durations: Sequence[float], gts) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(durations, dtype=np.float64).reshape(-1)
    g = np.asarray(gts, dtype=np.float64)
    if g.ndim != 2 or g.shape != (d.shape[0], 2):
        raise ValueError(f"gts must be [{d.shape[0]}, 2] seconds (one per duration), got {g.shape}")
    if d.size == 0:
        raise ValueError("no queries")
    if not (np.isfinite(d).all() and (d > 0).all()):
        raise ValueError("every duration must be a positive finite number of seconds")
    return d, g


def _segments_to_seconds(segments: np.ndarray, durations: np.ndarray, num_clips: int) -> torch.Tensor:
    """[Q, k, 2] clip segments -> [Q, k, 2] seconds: start = s*d/Nv, end = (e+1)*d/Nv."""
    step = (durations / num_clips)[:, None]
    secs = np.stack([segments[..., 0] * step, (segments[..., 1] + 1) * step], axis=-1)
    return torch.from_numpy(secs)


def _distinct_uniform(rng: np.random.Generator, num_rows: int, population: int, k: int) -> np.ndarray:
    """[num_rows, k] indices, each row k distinct values, uniform over ordered k-tuples without repetition.

    Rejection: rows with a repeat are redrawn whole, which conditions the i.i.d. uniform tuple on
    distinctness and so stays exactly uniform.
    """
    if k > population:
        raise ValueError(f"cannot draw {k} distinct segments out of {population}")
    out = rng.integers(0, population, size=(num_rows, k))
    while True:
        srt = np.sort(out, axis=1)
        bad = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if not bad.any():
            return out
        out[bad] = rng.integers(0, population, size=(int(bad.sum()), k))


def random_baseline(
    durations: Sequence[float],
    gts,
    num_clips: int = 64,
    draws: int = 10,
    seed: int = 0,
    top_k: int = 5,
    ks: Sequence[int] = DEFAULT_KS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict[str, float]:
    """Recall@k / mIoU of uniformly random clip segments, averaged over `draws` draws.

    Args:
        durations: [Q] seconds.
        gts: [Q, 2] ground-truth (start, end) seconds.
        num_clips: Nv, clips per video.
        top_k: predictions per query (distinct segments); must be >= max(ks).
    Returns:
        `{"R1@0.1": %, ..., "mIoU": %}`, the mean over draws.
    """
    d, g = _as_arrays(durations, gts)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if top_k < max(ks):
        raise ValueError(f"top_k={top_k} is smaller than the largest k in {tuple(ks)}")
    segments = clip_segments(num_clips)
    rng = np.random.default_rng(seed)
    gt_t = torch.from_numpy(g)
    total: dict[str, float] = {}
    for _ in range(draws):
        picks = segments[_distinct_uniform(rng, d.shape[0], segments.shape[0], top_k)]  # [Q, k, 2]
        top1, best = grounding_ious(_segments_to_seconds(picks, d, num_clips), gt_t, ks)
        for key, value in recall_summary(top1, best, ks, thresholds).items():
            total[key] = total.get(key, 0.0) + value / draws
    return total


def random_baseline_expected(
    durations: Sequence[float],
    gts,
    num_clips: int = 64,
    top_k: int = 5,
    ks: Sequence[int] = DEFAULT_KS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    chunk_size: int = 512,
) -> dict[str, float]:
    """The exact expectation of `random_baseline` (infinitely many draws).

    With M segments of which h hit a query at threshold t, P(top-1 hit) = h / M and
    P(one of k distinct uniform segments hits) = 1 - C(M - h, k) / C(M, k); the expected top-1 IoU is the
    mean IoU over all M segments.
    """
    d, g = _as_arrays(durations, gts)
    if top_k < max(ks):
        raise ValueError(f"top_k={top_k} is smaller than the largest k in {tuple(ks)}")
    segments = clip_segments(num_clips)
    m = segments.shape[0]
    if top_k > m:
        raise ValueError(f"cannot draw {top_k} distinct segments out of {m}")
    sums = {f"R{k}@{t:g}": 0.0 for k in ks for t in thresholds}
    iou_sum = 0.0
    for lo in range(0, d.shape[0], chunk_size):
        dd, gg = d[lo : lo + chunk_size], g[lo : lo + chunk_size]
        secs = _segments_to_seconds(np.broadcast_to(segments, (dd.shape[0], m, 2)), dd, num_clips)
        ious = temporal_iou(secs, torch.from_numpy(gg)[:, None, :])  # [q, M]
        iou_sum += ious.mean(dim=1).sum().item()
        for t in thresholds:
            h = (ious >= t - IOU_EPS).sum(dim=1).to(torch.float64)
            for k in ks:
                miss = torch.ones_like(h)
                for i in range(
                    k
                ):  # C(M-h, k) / C(M, k) as a product, exact for h > M - k too (a zero factor)
                    miss = miss * ((m - h - i).clamp(min=0) / (m - i))
                sums[f"R{k}@{t:g}"] += (1.0 - miss).sum().item()
    n = d.shape[0]
    out = {key: 100.0 * v / n for key, v in sums.items()}
    out["mIoU"] = 100.0 * iou_sum / n
    return out


def didemo_random_baseline(
    gt_moments, draws: int = 10, seed: int = 0, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Rank@k / mIoU of uniformly random rankings of the 21 DiDeMo moments, averaged over `draws`.

    Args:
        gt_moments: [Q, M, 2] annotator moments as inclusive chunk indices, padded with -1
            (a tensor, an array or a list of equal-length lists).
    Returns:
        `{"Rank@1": %, "Rank@5": %, "mIoU": %}`, the mean over draws.
    """
    gt = torch.as_tensor(np.asarray(gt_moments), dtype=torch.int64)
    if gt.ndim != 3 or gt.shape[-1] != 2 or gt.shape[0] == 0:
        raise ValueError(f"gt_moments must be [Q>0, M, 2] chunk indices, got {tuple(gt.shape)}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    cands = didemo_candidates(NUM_CHUNKS)
    rng = np.random.default_rng(seed)
    total: dict[str, float] = {}
    for _ in range(draws):
        order = torch.from_numpy(np.argsort(rng.random((gt.shape[0], cands.shape[0])), axis=1))
        avg_rank, avg_iou = didemo_query_scores(cands[order], gt)
        for key, value in didemo_summary(avg_rank, avg_iou, ks).items():
            total[key] = total.get(key, 0.0) + value / draws
    return total


def _pad_moments(rows: list[list[list[int]]]) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width, 2), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _run(args: argparse.Namespace, read_annotations) -> tuple[dict[str, float], dict[str, object]]:
    queries, _report = read_annotations(args.dataset, args.annotations, durations=args.durations)
    meta: dict[str, object] = {"dataset": args.dataset, "num_queries": len(queries)}
    if args.dataset == "didemo":
        if args.exact:
            raise ValueError("--exact is not implemented for DiDeMo; use --draws")
        gt = _pad_moments(
            [seconds_to_chunks(torch.tensor(q.moments, dtype=torch.float64)).tolist() for q in queries]
        )
        meta.update(draws=args.draws, seed=args.seed)
        return didemo_random_baseline(gt, draws=args.draws, seed=args.seed), meta
    durs = [q.duration for q in queries]
    gts = [q.moments[0] for q in queries]
    if args.exact:
        meta.update(num_clips=args.num_clips, exact=True)
        return random_baseline_expected(durs, gts, num_clips=args.num_clips), meta
    meta.update(num_clips=args.num_clips, draws=args.draws, seed=args.seed)
    return random_baseline(durs, gts, num_clips=args.num_clips, draws=args.draws, seed=args.seed), meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fsan_lightning.metrics.random_baseline",
        description="Score uniformly random predictions against an annotation file (the tables' Random row).",
    )
    parser.add_argument(
        "--dataset", required=True, choices=["activitynet", "charades", "didemo", "synthetic", "anet_sim"]
    )
    parser.add_argument("--annotations", required=True, help="annotation file of the split to score")
    parser.add_argument("--durations", nargs="+", default=None, help="duration CSV file(s) (Charades)")
    parser.add_argument("--num-clips", type=int, default=64, help="Nv: clips per video (not used for DiDeMo)")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact", action="store_true", help="print the exact expectation instead of draws")
    args = parser.parse_args(argv)

    from fsan_lightning.data.readers import read_annotations

    try:
        result, meta = _run(args, read_annotations)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({**{k: round(v, 4) for k, v in result.items()}, **meta}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
