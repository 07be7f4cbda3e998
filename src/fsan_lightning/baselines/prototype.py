"""The word-prototype baseline on batches, and a training-free check that a data set is learnable.

    python -m fsan_lightning.baselines.prototype DATA_DIR [--dataset synthetic] [--num-clips 64] [--all-words]

Weakly supervised, no gradient training. From the training split only (clip features and sentences,
never timestamps): clip features are standardised per dimension; for each word seen in at least
``min_videos`` training videos, prototype = mean standardised feature of the videos whose sentences
contain it, minus the mean over all training videos. A query is grounded by the maximum-sum contiguous
run of (per clip, the mean cosine to the prototypes of the query's known words, centred on the video's
mean). The mathematics is `fsan_lightning.ops.prototype`; `fit_prototypes` / `prototype_scores` work
on the batches of `collate`, so the Lightning baseline (`model=prototype`,
`fsan_lightning.lit.baselines.PrototypeModule`) and this command compute the same thing.

The command reports R@1 at IoU 0.3/0.5 on val and test, against uniformly random segments on the same
clip grid (exact expectation): a check that the signal is there.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fsan_lightning.metrics.iou import IOU_EPS, temporal_iou
from fsan_lightning.ops.max_sum import max_sum_run as _batched_max_sum_run
from fsan_lightning.ops.prototype import (
    centred_clip_scores,
    prototype_alignment,
    prototype_segment_scores,
    within_video_variance,
    word_prototypes,
)
from fsan_lightning.ops.temporal import rank_moments

from fsan_lightning.data.dataset import GroundingDataset, collate
from fsan_lightning.data.features import FeatureStore, open_feature_store
from fsan_lightning.data.readers import DATASET_DEFAULTS, read_annotations
from fsan_lightning.data.records import Query
from fsan_lightning.data.text import UNK, Vocab

#: keys a training batch must not carry: the fit sees no timestamps (weak supervision)
TIMESTAMP_KEYS = ("gt", "gt_all")


@dataclass
class PrototypeFit:
    """A fitted prototype model (float32 tensors).

    mean, std: [D] per-dimension statistics of the training clips (valid clips of distinct videos).
    prototypes: [V, D] unit rows (0 = no prototype). num_videos: int64 [V] training videos per word.
    num_train_videos: distinct training videos seen.
    """

    mean: torch.Tensor
    std: torch.Tensor
    prototypes: torch.Tensor
    num_videos: torch.Tensor
    num_train_videos: int

    @property
    def has_prototype(self) -> torch.Tensor:
        """bool [V]."""
        return self.prototypes.abs().sum(dim=1) > 0


def query_word_mask(batch: dict, content_only: bool = True, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Tokens that count as words: content words (or all valid tokens), never ``<pad>``/``<unk>``.

    allowed: optional bool [V], a further filter on word ids (e.g. only the nouns). Returns bool [B, Ns].
    """
    tokens = batch["tokens"]
    mask = (batch["content_mask"] if content_only else batch["token_mask"]) & (tokens > UNK)
    if allowed is not None:
        mask = mask & allowed.to(tokens.device)[tokens]
    return mask


@dataclass
class VideoWords:
    """The training split as the weakly supervised fits see it (float64 / int64 tensors).

    video_means: [N, D] per-video mean of the raw valid clip features. pair_word, pair_video: [P] the (word id,
    video index) pairs "a sentence of video v contains word w" (repeats kept). clip_mean, clip_std: [D]
    per-dimension statistics of all valid training clips (a constant dimension has std 1). vids: the N video ids.
    """

    video_means: torch.Tensor
    pair_word: torch.Tensor
    pair_video: torch.Tensor
    clip_mean: torch.Tensor
    clip_std: torch.Tensor
    vids: list[str]


def gather_video_words(batches: Iterable[dict], *, content_only: bool = True, allowed: torch.Tensor | None = None,
                       caller: str = "gather_video_words") -> VideoWords:
    """One pass over training batches (``video``, ``video_mask``, ``tokens``, ``token_mask``, ``content_mask``,
    ``vid``); a video seen in several batches counts once.

    Raises ValueError (prefixed with ``caller``) on a batch that carries timestamps (``gt``/``gt_all``): the
    fits are weakly supervised and must never see them; on a video without a valid clip; on no batches.
    """
    index: dict[str, int] = {}
    video_means: list[torch.Tensor] = []
    pair_word: list[torch.Tensor] = []
    pair_video: list[torch.Tensor] = []
    clip_sum = clip_sq = None
    num_clips = 0
    for b, batch in enumerate(batches):
        leaked = [k for k in TIMESTAMP_KEYS if k in batch]
        if leaked:
            raise ValueError(f"{caller}: batch {b} carries timestamps {leaked}; the fit is weakly supervised "
                             "and reads training batches (features and sentences) only")
        video = batch["video"].detach().to("cpu", torch.float64)
        clip_mask = batch["video_mask"].cpu()
        words = query_word_mask(batch, content_only, allowed).cpu()
        tokens = batch["tokens"].cpu()
        for i, vid in enumerate(batch["vid"]):
            if vid not in index:
                index[vid] = len(index)
                x = video[i][clip_mask[i]]
                if x.shape[0] == 0:
                    raise ValueError(f"{caller}: video {vid!r} (batch {b}) has no valid clip")
                clip_sum = x.sum(0) if clip_sum is None else clip_sum + x.sum(0)
                clip_sq = (x * x).sum(0) if clip_sq is None else clip_sq + (x * x).sum(0)
                num_clips += x.shape[0]
                video_means.append(x.mean(0))
            ids = tokens[i][words[i]]
            pair_word.append(ids)
            pair_video.append(torch.full_like(ids, index[vid]))
    if not index:
        raise ValueError(f"{caller}: the training batches are empty")
    mean = clip_sum / num_clips
    var = clip_sq / num_clips - mean * mean
    # a dimension constant over the training clips carries nothing: leave it unscaled
    std = torch.where(var > 1e-12, var.clamp(min=1e-12).sqrt(), torch.ones_like(var))
    return VideoWords(torch.stack(video_means), torch.cat(pair_word), torch.cat(pair_video), mean, std, list(index))


def fit_prototypes(batches: Iterable[dict], vocab_size: int, *, min_videos: int = 1, content_only: bool = True,
                   allowed: torch.Tensor | None = None) -> PrototypeFit:
    """Fit the prototypes in one pass over training batches (`gather_video_words`); a video seen in several
    batches counts once.

    Raises ValueError on a batch that carries timestamps (``gt``/``gt_all``): fitting is weakly
    supervised and must never see them.
    """
    data = gather_video_words(batches, content_only=content_only, allowed=allowed, caller="fit_prototypes")
    standardised = (data.video_means - data.clip_mean) / data.clip_std
    protos, num_videos = word_prototypes(standardised, data.pair_word, data.pair_video, vocab_size, min_videos)
    return PrototypeFit(data.clip_mean.float(), data.clip_std.float(), protos.float(), num_videos, len(data.vids))


def fit_local_visibility(batches: Iterable[dict], vocab_size: int, *, min_videos: int = 10,
                         content_only: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How much each word shows *at moments* in the training videos that mention it (weakly supervised).

    Two passes over ``batches`` (iterable twice, e.g. a DataLoader): `gather_video_words`, then for every word
    that at least ``min_videos`` videos mention and at least ``min_videos`` do not (the contrast needs both
    groups: on a split of 16 videos no word qualifies at 10), its prototype direction ``u_w``
    (`word_prototypes` on the standardised video means) and the variance of each video's standardised clips along it (`within_video_variance`):
    ``est_w = mean_{v mentions w} var_v(u_w) - mean_{v does not} var_v(u_w)``. A word with no visual trace,
    or one that is constant within its videos (a scene, an actor), scores about 0; a word that shows where
    its event is scores high. Never reads timestamps (a batch with them is refused).

    Returns:
        estimate: float64 [V] (0 where not estimated). estimated: bool [V] the words that got an estimate.
        num_videos: int64 [V] distinct videos per word.
    """
    data = gather_video_words(batches, content_only=content_only, caller="fit_local_visibility")
    N = len(data.vids)
    protos, num_videos = word_prototypes((data.video_means - data.clip_mean) / data.clip_std, data.pair_word,
                                         data.pair_video, vocab_size, min_videos)
    estimated = (protos.norm(dim=1) > 0) & (N - num_videos >= min_videos)
    words = torch.nonzero(estimated)[:, 0]
    estimate = torch.zeros(vocab_size, dtype=torch.float64)
    if not len(words):
        return estimate, estimated, num_videos
    column = torch.full((vocab_size,), -1, dtype=torch.long)
    column[words] = torch.arange(len(words))
    index = {vid: i for i, vid in enumerate(data.vids)}
    pairs = torch.unique(data.pair_word.long() * N + data.pair_video.long())
    mentions = [[] for _ in range(N)]
    for w, v in zip((pairs // N).tolist(), (pairs % N).tolist()):
        if column[w] >= 0:
            mentions[v].append(int(column[w]))
    directions = protos[words].float()
    var_in = torch.zeros(len(words), dtype=torch.float64)
    var_all = torch.zeros(len(words), dtype=torch.float64)
    done: set[str] = set()
    for batch in batches:
        fresh = []
        for i, vid in enumerate(batch["vid"]):
            if vid not in done and vid in index:
                done.add(vid)
                fresh.append(i)
        if not fresh:
            continue
        rows = torch.tensor(fresh)
        x = (batch["video"][rows].detach().cpu().double() - data.clip_mean) / data.clip_std
        var = within_video_variance(x.float(), batch["video_mask"][rows].cpu(), directions).double()
        var_all += var.sum(dim=0)
        for r, i in enumerate(fresh):
            cols = mentions[index[batch["vid"][i]]]
            if cols:
                var_in[cols] += var[r, cols]
    n = num_videos[words].double()
    estimate[words] = var_in / n - (var_all - var_in) / (N - n)
    return estimate, estimated, num_videos


def prototype_scores(batch: dict, mean: torch.Tensor, std: torch.Tensor, prototypes: torch.Tensor,
                     content_only: bool = True, allowed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Ground a batch with fitted prototypes.

    Returns a dict: ``segment_scores`` [B, Nv, Nv] (-inf invalid; its arg-max is the maximum-sum run,
    the whole video for a query without a known word), ``P`` [B, Ns, Nv] word-clip cosines, ``known``
    bool [B, Ns] the words used, ``has_word`` bool [B], ``clip_scores`` [B, Nv] (centred).
    """
    has_prototype = prototypes.abs().sum(dim=1) > 0
    P, known = prototype_alignment(batch["video"], batch["video_mask"], batch["tokens"],
                                   query_word_mask(batch, content_only, allowed), mean, std, prototypes,
                                   has_prototype)
    c, has_word = centred_clip_scores(P, known, batch["video_mask"])
    return {"segment_scores": prototype_segment_scores(c, has_word, batch["video_mask"]), "P": P, "known": known,
            "has_word": has_word, "clip_scores": c}


# ---------------------------------------------------------------------- the learnability check


def max_sum_run(x: np.ndarray) -> tuple[int, int]:
    """(s, e) inclusive of the contiguous run of a 1-d array with the largest sum; ties: the earliest
    start, then the shortest (`fsan_lightning.ops.max_sum.max_sum_run` on one sample)."""
    c = torch.as_tensor(np.asarray(x, dtype=np.float64))[None]
    runs, _ = _batched_max_sum_run(c, torch.ones_like(c, dtype=torch.bool))
    return int(runs[0, 0]), int(runs[0, 1])


def random_recall(num_valid: int, duration: float, gt: tuple[float, float], thr: float) -> float:
    """Probability that a uniformly random segment (s <= e on the clip grid) has IoU >= thr."""
    s, e = torch.triu_indices(num_valid, num_valid)  # every (s, e) with s <= e
    clip = duration / num_valid
    segments = torch.stack([s * clip, (e + 1) * clip], dim=-1).to(torch.float64)
    ious = temporal_iou(segments, torch.tensor(gt, dtype=torch.float64))
    return float((ious >= thr - IOU_EPS).to(torch.float64).mean())


def prototype_baseline(train: list[Query], evals: dict[str, list[Query]], store: FeatureStore,
                       num_clips: int = 64, content_only: bool = True,
                       thresholds=(0.3, 0.5), keep_words: set[str] | None = None, min_videos: int = 1,
                       batch_size: int = 64) -> dict:
    """R@1 of the word-prototype grounding and of random segments per eval split (in percent).

    The batches are the data pipeline's (`GroundingDataset` + `collate`, vocabulary from the training
    sentences); training items carry no timestamps. keep_words: ground with these words only (e.g.
    only the nouns: does a single word class suffice?).
    """
    vocab = Vocab.build(q.sentence for q in train)
    allowed = None
    if keep_words is not None:
        allowed = torch.tensor([w in keep_words for w in vocab.words], dtype=torch.bool)

    def loader(queries, is_train):
        ds = GroundingDataset(queries, store, vocab, num_clips=num_clips, max_tokens=None, train=is_train)
        return DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)

    fit = fit_prototypes(loader(train, True), len(vocab), min_videos=min_videos, content_only=content_only,
                         allowed=allowed)
    results = {}
    for split, queries in evals.items():
        hits = {t: 0.0 for t in thresholds}
        rand = {t: 0.0 for t in thresholds}
        for batch in loader(queries, False):
            scores = prototype_scores(batch, fit.mean, fit.std, fit.prototypes, content_only, allowed)
            top1 = rank_moments(scores["segment_scores"], batch["video_mask"], batch["duration"].double(), 1, None)
            lengths = batch["video_mask"].sum(1).tolist()
            ious = temporal_iou(top1[:, 0, :2], batch["gt"])
            for i, qidx in enumerate(batch["qidx"].tolist()):
                q = queries[qidx]
                for t in thresholds:
                    hits[t] += bool(ious[i] >= t - IOU_EPS)
                    rand[t] += random_recall(lengths[i], q.duration, q.moments[0], t)
        results[split] = {"queries": len(queries)}
        for t in thresholds:
            results[split][f"R1@{t}"] = round(100 * hits[t] / len(queries), 2)
            results[split][f"random_R1@{t}"] = round(100 * rand[t] / len(queries), 2)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.baselines.prototype",
                                description="Training-free weakly supervised check that a data set is learnable.")
    p.add_argument("data_dir")
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "activitynet", "charades"])
    p.add_argument("--features", default=None)
    p.add_argument("--num-clips", type=int, default=64)
    p.add_argument("--min-videos", type=int, default=1, help="fewest training videos a word needs for a prototype")
    p.add_argument("--all-words", action="store_true", help="use function words too")
    args = p.parse_args(argv)
    d = Path(args.data_dir)
    names = DATASET_DEFAULTS[args.dataset]
    durations = [str(d / x) for x in names["durations"]] if names["durations"] else None
    train, _ = read_annotations(args.dataset, d / names["train"], durations)
    evals = {s: read_annotations(args.dataset, d / names[s], durations)[0] for s in ("val", "test") if names[s]}
    store = open_feature_store(args.features or d / names["features"])
    res = prototype_baseline(train, evals, store, args.num_clips, content_only=not args.all_words,
                             min_videos=args.min_videos)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
