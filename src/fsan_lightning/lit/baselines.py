"""Honest baselines as LightningModules: ``model=prototype`` and ``model=random``.

Neither trains with gradients (``trains_with_gradients = False``): ``python -m fsan_lightning.train``
calls ``fit_from_datamodule`` instead of ``trainer.fit``, validates, saves ``checkpoints/model.ckpt``
and tests it like FSAN (same DataModule, metrics, predictions file, scorer and results.json; the
evaluation is `GroundingEvaluation`, shared with `FSANModule`). Definitions: docs/baselines.md.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from fsan_lightning.baselines.prototype import fit_prototypes, prototype_scores
from fsan_lightning.lit.evaluation import EvalRanking, GroundingEvaluation, check_eval_protocol
from fsan_lightning.metrics import chunks_to_seconds, didemo_candidates, seconds_to_chunks
from fsan_lightning.metrics.random_baseline import clip_segments, didemo_random_baseline, random_baseline

log = logging.getLogger(__name__)

PROTOTYPE_WORDS = ("content", "all")


def _check_vocabulary(module: pl.LightningModule, datamodule) -> None:
    if list(datamodule.vocab.words) != list(module.hparams.vocab):
        raise ValueError(
            f"{type(module).__name__}: the DataModule's vocabulary ({len(datamodule.vocab)} words) differs from the "
            f"module's ({len(module.hparams.vocab)}); build the module from this DataModule"
        )


class PrototypeModule(GroundingEvaluation, pl.LightningModule):
    """Word-prototype grounding, fitted in one pass over the training split (no timestamps).

    Fitting (`fsan_lightning.baselines.prototype.fit_prototypes`, on the training DataLoader's batches:
    clip features and tokens only): per-dimension standardisation of the training clips; for each
    word in at least ``min_videos`` training videos, prototype = mean standardised feature of the
    videos whose sentences contain it minus the mean over all training videos. Grounding: per clip,
    the mean cosine to the query's known words' prototypes, centred on the video's mean; segments are
    scored by the sum of these clip scores, so the top-1 is the maximum-sum contiguous run; the top-k
    follow by NMS at ``nms_threshold`` (DiDeMo: all 21 moments ranked by the same score). A query
    without a known word gets the whole video first.

    Args:
        vocab, video_dim: the DataModule's vocabulary and feature width (they size the buffers).
        word_dim, function_word_ids: accepted for the entry point's interface; not used (content
            words come from the batch's ``content_mask``).
        min_videos: fewest distinct training videos a word needs for a prototype.
        words: "content" (content words only) or "all" (function words too).
        top_k, nms_threshold, eval_protocol, num_logged_maps: as FSANModule.

    Buffers (the fitted model, in the checkpoint): ``feature_mean``/``feature_std`` [Dv],
    ``prototypes`` [V, Dv] (unit rows, 0 = none), ``word_videos`` int64 [V] (training videos per
    word), ``num_train_videos`` (0 = not fitted).
    """

    trains_with_gradients = False

    def __init__(
        self,
        vocab: list[str],
        video_dim: int,
        word_dim: int = 0,
        function_word_ids: list[int] | None = None,
        min_videos: int = 2,
        words: str = "content",
        top_k: int = 5,
        nms_threshold: float | None = 0.5,
        eval_protocol: str = "recall",
        num_logged_maps: int = 4,
    ) -> None:
        super().__init__()
        check_eval_protocol(eval_protocol)
        if words not in PROTOTYPE_WORDS:
            raise ValueError(f"model.words must be one of {PROTOTYPE_WORDS}, got {words!r}")
        if int(min_videos) < 1:
            raise ValueError(f"model.min_videos must be >= 1, got {min_videos}")
        if top_k < 1:
            raise ValueError(f"model.top_k must be >= 1, got {top_k}")
        self.save_hyperparameters(logger=False)
        V, D = len(vocab), int(video_dim)
        self.register_buffer("feature_mean", torch.zeros(D))
        self.register_buffer("feature_std", torch.ones(D))
        self.register_buffer("prototypes", torch.zeros(V, D))
        self.register_buffer("word_videos", torch.zeros(V, dtype=torch.int64))
        self.register_buffer("num_train_videos", torch.zeros((), dtype=torch.int64))
        self._init_evaluation()

    @property
    def content_only(self) -> bool:
        return self.hparams.words == "content"

    def fit_from_datamodule(self, datamodule) -> None:
        """Fit on the DataModule's training DataLoader (batches without timestamps)."""
        _check_vocabulary(self, datamodule)
        self.fit_from_batches(datamodule.train_dataloader())

    @torch.no_grad()
    def fit_from_batches(self, batches) -> None:
        """Fit on training batches (see `fit_prototypes`; a batch with ``gt``/``gt_all`` is refused)."""
        fit = fit_prototypes(batches, len(self.hparams.vocab), min_videos=int(self.hparams.min_videos),
                             content_only=self.content_only)
        if fit.prototypes.shape != self.prototypes.shape:
            raise ValueError(f"PrototypeModule: fitted prototypes {tuple(fit.prototypes.shape)} but the module was "
                             f"built for {tuple(self.prototypes.shape)} (vocabulary x video_dim)")
        for name, value in (("feature_mean", fit.mean), ("feature_std", fit.std), ("prototypes", fit.prototypes),
                            ("word_videos", fit.num_videos)):
            getattr(self, name).copy_(value)
        self.num_train_videos.fill_(fit.num_train_videos)
        log.info("prototype baseline: %d training videos, %d of %d words with a prototype (min_videos=%d)",
                 fit.num_train_videos, int(fit.has_prototype.sum()), len(self.hparams.vocab),
                 self.hparams.min_videos)

    def eval_rank(self, batch: dict[str, Any]) -> EvalRanking:
        if int(self.num_train_videos) == 0:
            raise RuntimeError("PrototypeModule is not fitted: call fit_from_datamodule (or load a fitted checkpoint)")
        out = prototype_scores(batch, self.feature_mean, self.feature_std, self.prototypes, self.content_only)
        # share of queries with at least one word that has a prototype (the others get the whole video)
        self._add_diagnostic("known_word_share", out["has_word"].float())
        return EvalRanking(self.rank_segments(out["segment_scores"], batch), out["P"], out["known"])


def _gather_rows(rows: dict[int, Any]) -> dict[int, Any]:
    """Union of every rank's ``{qidx: row}`` (first occurrence wins), without DDP: the dict itself."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, rows)
        merged: dict[int, Any] = {}
        for part in parts:
            for q, row in part.items():
                merged.setdefault(q, row)
        return merged
    return rows


class RandomModule(GroundingEvaluation, pl.LightningModule):
    """The tables' "Random" row as a model: uniform random moments, no learning, deterministic per seed.

    Definition: `fsan_lightning.metrics.random_baseline` (docs/metrics.md). Each video is cut into
    ``Nv = data.num_clips`` equal clips; a prediction is ``top_k`` distinct uniformly random clip
    segments ``s <= e``, in seconds ``[s d / Nv, (e + 1) d / Nv]``, no NMS. DiDeMo: a uniformly
    random ranking of the 21 moments.

    Reported: the logged ``val/<metric>`` / ``test/<metric>`` (hence results.json) are the mean over
    ``draws`` draws, ``random_baseline(durations, gts, num_clips=Nv, draws, seed, top_k)`` (DiDeMo:
    ``didemo_random_baseline(gt chunks, draws, seed)``) over the split's queries in their order:
    exactly what ``python -m fsan_lightning.metrics.random_baseline`` prints for the same file.
    The predictions (predictions_test.jsonl) are one draw, query ``qidx`` drawn from
    ``numpy.random.default_rng([seed, qidx])`` (independent of batching and of the number of
    processes); its metrics are logged as ``<stage>/one_draw/<metric>`` and are what the offline
    scorer reproduces from the file.
    """

    trains_with_gradients = False

    def __init__(
        self,
        vocab: list[str],
        video_dim: int,
        word_dim: int = 0,
        function_word_ids: list[int] | None = None,
        seed: int = 0,
        draws: int = 10,
        top_k: int = 5,
        eval_protocol: str = "recall",
        num_logged_maps: int = 0,
    ) -> None:
        super().__init__()
        check_eval_protocol(eval_protocol)
        if int(draws) < 1:
            raise ValueError(f"model.draws must be >= 1, got {draws}")
        if eval_protocol == "recall" and top_k < 5:
            raise ValueError(f"model.top_k must be >= 5 (R5@t is reported), got {top_k}")
        self.save_hyperparameters(logger=False)
        self._init_evaluation()
        self._seen: dict[int, tuple] = {}
        self._num_clips: int | None = None

    def fit_from_datamodule(self, datamodule) -> None:
        """Nothing to fit: the random baseline reads no training data."""
        _check_vocabulary(self, datamodule)

    def _draw(self, qidx: int, duration: float, num_clips: int) -> np.ndarray:
        """[K, 3] windows of one query (start_s, end_s, NaN score), best first."""
        rng = np.random.default_rng([int(self.hparams.seed), qidx])
        if self.hparams.eval_protocol == "didemo":
            cands = didemo_candidates()
            secs = chunks_to_seconds(cands[torch.from_numpy(rng.permutation(cands.shape[0]))]).numpy()
        else:
            segments = clip_segments(num_clips)
            k = min(int(self.hparams.top_k), segments.shape[0])
            picks = segments[rng.choice(segments.shape[0], size=k, replace=False)]
            step = duration / num_clips
            secs = np.stack([picks[:, 0] * step, (picks[:, 1] + 1) * step], axis=1)
        return np.concatenate([secs, np.full((secs.shape[0], 1), np.nan)], axis=1)

    def eval_rank(self, batch: dict[str, Any]) -> EvalRanking:
        num_clips = int(batch["video_mask"].shape[1])
        if self._num_clips not in (None, num_clips):
            raise ValueError(f"RandomModule: batches with {self._num_clips} and {num_clips} clips in one epoch")
        self._num_clips = num_clips
        durations = batch["duration"].double().tolist()
        chunks = seconds_to_chunks(batch["gt_all"]).tolist() if self.hparams.eval_protocol == "didemo" else None
        windows = []
        for i, qidx in enumerate(batch["qidx"].tolist()):
            windows.append(self._draw(qidx, durations[i], num_clips))
            gt = chunks[i] if chunks is not None else batch["gt"][i].double().tolist()
            self._seen.setdefault(qidx, (durations[i], gt))
        out = torch.from_numpy(np.stack(windows)).to(device=batch["duration"].device, dtype=batch["duration"].dtype)
        return EvalRanking(out)

    def epoch_metrics(self, metric, stage: str) -> dict[str, float]:
        one = metric.compute()
        rows = _gather_rows(self._seen)
        ordered = [rows[q] for q in sorted(rows)]
        if self.hparams.eval_protocol == "didemo":
            width = max(len(gt) for _, gt in ordered)
            gts = np.full((len(ordered), width, 2), -1, dtype=np.int64)
            for i, (_, gt) in enumerate(ordered):
                gts[i, : len(gt)] = gt
            mean = didemo_random_baseline(gts, draws=int(self.hparams.draws), seed=int(self.hparams.seed))
        else:
            mean = random_baseline([d for d, _ in ordered], [gt for _, gt in ordered], num_clips=self._num_clips,
                                   draws=int(self.hparams.draws), seed=int(self.hparams.seed),
                                   top_k=int(self.hparams.top_k))
        return {**mean, **{f"one_draw/{k}": v for k, v in one.items()}}

    def _reset_epoch(self) -> None:
        self._seen = {}
        self._num_clips = None

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._reset_epoch()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._reset_epoch()
