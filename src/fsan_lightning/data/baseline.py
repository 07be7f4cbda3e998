"""A training-free, weakly supervised sanity check of a data set (is the world learnable?).

    python -m fsan_lightning.data.baseline DATA_DIR [--dataset synthetic] [--num-clips 64] [--all-words]

For each training word: prototype = mean standardized feature of the training videos whose sentences
contain it, minus the mean over all training videos (only video-level information: weak supervision).
A query is grounded by the maximum-sum contiguous run of (mean cosine of each clip to the prototypes
of the query's words, centred on the video's mean). Reported: R@1 at IoU 0.3/0.5 on val and test,
against uniformly random segments on the same clip grid (exact expectation). Not the project's
baseline model (that is another issue): only a check that the signal is there.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .features import FeatureStore, open_feature_store, pool_clips
from .readers import DATASET_DEFAULTS, read_annotations
from .records import Query
from .text import is_content, tokenize


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def max_sum_run(x: np.ndarray) -> tuple[int, int]:
    """(s, e) inclusive of the contiguous run with the largest sum (Kadane); ties: the first."""
    best, best_se = -np.inf, (0, 0)
    cur, start = 0.0, 0
    for j, v in enumerate(x):
        if cur <= 0:
            cur, start = float(v), j
        else:
            cur += float(v)
        if cur > best:
            best, best_se = cur, (start, j)
    return best_se


def random_recall(num_valid: int, duration: float, gt: tuple[float, float], thr: float) -> float:
    """Probability that a uniformly random segment (s <= e on the clip grid) has IoU >= thr."""
    hits = total = 0
    for s in range(num_valid):
        for e in range(s, num_valid):
            total += 1
            hits += _iou((s * duration / num_valid, (e + 1) * duration / num_valid), gt) >= thr
    return hits / total


def prototype_baseline(train: list[Query], evals: dict[str, list[Query]], store: FeatureStore,
                       num_clips: int = 64, content_only: bool = True,
                       thresholds=(0.3, 0.5), keep_words: set[str] | None = None) -> dict:
    """R@1 of the word-prototype grounding and of random segments per eval split (in percent).

    keep_words: ground with these words only (e.g. only the nouns: does a single word suffice?).
    """
    def words(q):
        toks = tokenize(q.sentence)
        out = {w for w in toks if is_content(w)} if content_only else set(toks)
        return out & keep_words if keep_words is not None else out

    train_vids = sorted({q.vid for q in train})
    clips: dict[str, np.ndarray] = {}
    rows_sum = rows_sq = 0.0
    n_rows = 0
    for vid in train_vids:
        x = store.read(vid).astype(np.float64)
        rows_sum = rows_sum + x.sum(0)
        rows_sq = rows_sq + (x * x).sum(0)
        n_rows += len(x)
    mu = rows_sum / n_rows
    sd = np.sqrt(np.maximum(rows_sq / n_rows - mu * mu, 1e-12))

    def pooled(vid):
        if vid not in clips:
            c, m = pool_clips(((store.read(vid) - mu) / sd).astype(np.float32), num_clips)
            clips[vid] = c[m]
        return clips[vid]

    vid_mean = {vid: pooled(vid).mean(0) for vid in train_vids}
    global_mean = np.mean(list(vid_mean.values()), axis=0)
    word_vids = defaultdict(set)
    for q in train:
        for w in words(q):
            word_vids[w].add(q.vid)
    protos = {w: np.mean([vid_mean[v] for v in vs], axis=0) - global_mean for w, vs in word_vids.items()}
    protos = {w: p / (np.linalg.norm(p) + 1e-12) for w, p in protos.items()}

    results = {}
    for split, queries in evals.items():
        hits = {t: 0.0 for t in thresholds}
        rand = {t: 0.0 for t in thresholds}
        for q in queries:
            x = pooled(q.vid)
            xn = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
            ws = [protos[w] for w in words(q) if w in protos]
            n = len(x)
            if ws:
                score = (xn @ np.stack(ws).T).mean(1)
                s, e = max_sum_run(score - score.mean())
            else:
                s, e = 0, n - 1
            pred = (s * q.duration / n, (e + 1) * q.duration / n)
            for t in thresholds:
                hits[t] += _iou(pred, q.moments[0]) >= t
                rand[t] += random_recall(n, q.duration, q.moments[0], t)
        results[split] = {"queries": len(queries)}
        for t in thresholds:
            results[split][f"R1@{t}"] = round(100 * hits[t] / len(queries), 2)
            results[split][f"random_R1@{t}"] = round(100 * rand[t] / len(queries), 2)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.data.baseline", description=__doc__.split("\n\n")[1])
    p.add_argument("data_dir")
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "activitynet", "charades"])
    p.add_argument("--features", default=None)
    p.add_argument("--num-clips", type=int, default=64)
    p.add_argument("--all-words", action="store_true", help="use function words too")
    args = p.parse_args(argv)
    d = Path(args.data_dir)
    names = DATASET_DEFAULTS[args.dataset]
    durations = [str(d / x) for x in names["durations"]] if names["durations"] else None
    train, _ = read_annotations(args.dataset, d / names["train"], durations)
    evals = {s: read_annotations(args.dataset, d / names[s], durations)[0] for s in ("val", "test") if names[s]}
    store = open_feature_store(args.features or d / names["features"])
    res = prototype_baseline(train, evals, store, args.num_clips, content_only=not args.all_words)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
