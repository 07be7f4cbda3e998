"""Grounding evaluation shared by FSAN and the baselines: one protocol, one predictions format.

A LightningModule mixes in `GroundingEvaluation`, calls ``self._init_evaluation()`` after
``save_hyperparameters`` (which must hold ``vocab``, ``eval_protocol``, ``top_k``, ``nms_threshold``,
``num_logged_maps``) and implements ``eval_rank(batch) -> EvalRanking``. The mixin then provides
``validation_step`` / ``test_step`` (metrics ``val/...``, ``test/...``; DiDeMo's protocol when
``eval_protocol == "didemo"``), the localization diagnostics, the W&B alignment maps, the
``test_predictions`` rows written to ``predictions_test.jsonl`` and the class name in the checkpoint.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from fsan_lightning import ops
from fsan_lightning.metrics import DiDeMoRank, GroundingRecall, seconds_to_chunks

EVAL_PROTOCOLS = ("recall", "didemo")


class EvalRanking(NamedTuple):
    """What a module's ``eval_rank`` returns for one batch.

    windows: [B, K, 3] (start_s, end_s, score), best first (DiDeMo: all 21 moments).
    P: [B, Ns, Nv] token-by-clip map for the diagnostics and the logged maps, or None (no map).
    P_token_mask: bool [B, Ns], the tokens of ``P`` the diagnostics average (None: ``token_mask``).
    """

    windows: torch.Tensor
    P: torch.Tensor | None = None
    P_token_mask: torch.Tensor | None = None


def check_eval_protocol(eval_protocol: str) -> None:
    if eval_protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"eval_protocol must be 'recall' or 'didemo', got {eval_protocol!r}")


class GroundingEvaluation:
    """Validation/test of ranked moments; mixed into a ``pl.LightningModule`` (listed first)."""

    def _init_evaluation(self) -> None:
        check_eval_protocol(self.hparams.eval_protocol)
        self.val_metric = self._make_metric()
        self.test_metric = self._make_metric()
        self.test_predictions: list[dict[str, Any]] = []
        self._diag: dict[str, list[torch.Tensor]] = {}
        self._logged_maps: list[dict[str, Any]] = []

    def _make_metric(self):
        if self.hparams.eval_protocol == "didemo":
            return DiDeMoRank()
        return GroundingRecall()

    def eval_rank(self, batch: dict[str, Any]) -> EvalRanking:  # pragma: no cover - interface
        raise NotImplementedError

    def rank_segments(self, scores: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Segment scores [B, Nv, Nv] -> ranked windows [B, K, 3] by the evaluation protocol.

        recall: the ``top_k`` best after NMS at ``nms_threshold``; didemo: all 21 cells, no NMS.
        """
        if self.hparams.eval_protocol == "didemo":
            return ops.rank_moments(scores, batch["video_mask"], batch["duration"], None, None)
        return ops.rank_moments(
            scores, batch["video_mask"], batch["duration"], self.hparams.top_k, self.hparams.nms_threshold
        )

    # ------------------------------------------------------------------ steps
    def update_metric(self, metric, batch: dict[str, Any], windows: torch.Tensor) -> None:
        """Add a batch's ranked windows [B, K, 3] to ``metric`` (a metric of :meth:`_make_metric`)."""
        if self.hparams.eval_protocol == "didemo":
            metric.update(batch["qidx"], seconds_to_chunks(windows[..., :2]), seconds_to_chunks(batch["gt_all"]))
        else:
            metric.update(batch["qidx"], windows[..., :2], batch["gt"])

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        ranking = self.eval_rank(batch)
        windows = ranking.windows
        self.update_metric(self.val_metric if stage == "val" else self.test_metric, batch, windows)
        if ranking.P is not None:
            token_mask = batch["token_mask"] if ranking.P_token_mask is None else ranking.P_token_mask
            self._update_diagnostics(ranking.P, token_mask, batch, windows)
        if stage == "test":
            self._collect_predictions(batch, windows)
        elif ranking.P is not None and len(self._logged_maps) < self.hparams.num_logged_maps:
            self._keep_maps(ranking.P, batch, windows)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # ------------------------------------------------------------------ diagnostics and maps
    def _update_diagnostics(self, P: torch.Tensor, token_mask: torch.Tensor, batch: dict[str, Any],
                            windows: torch.Tensor) -> None:
        nv = batch["video_mask"].shape[1]
        valid = batch["video_mask"].sum(1)
        gt_mask = ops.seconds_to_clip_mask(batch["gt"], batch["duration"], valid, nv)
        pred_mask = ops.seconds_to_clip_mask(windows[:, 0, :2], batch["duration"], valid, nv)
        stats = ops.localization_stats(P, token_mask, batch["video_mask"], gt_mask, pred_mask)
        for name, value in stats.items():
            self._add_diagnostic(name, value)

    def _add_diagnostic(self, name: str, per_sample: torch.Tensor) -> None:
        """Record a per-sample value [B]; its mean (finite values) is logged as ``{stage}/{name}``."""
        self._diag.setdefault(name, []).append(per_sample.detach().float().cpu())

    def _log_diagnostics(self, stage: str) -> None:
        for name, values in self._diag.items():
            v = torch.cat(values)
            v = v[torch.isfinite(v)]
            if v.numel():
                self.log(f"{stage}/{name}", v.mean().item(), sync_dist=True)
        self._diag = {}

    def _keep_maps(self, P: torch.Tensor, batch: dict[str, Any], windows: torch.Tensor) -> None:
        for i in range(batch["tokens"].shape[0]):
            if len(self._logged_maps) >= self.hparams.num_logged_maps:
                return
            n = int(batch["token_mask"][i].sum())
            length = int(batch["video_mask"][i].sum())
            self._logged_maps.append(
                {
                    "P": P[i, :n, :length].detach().float().cpu().numpy(),
                    "tokens": [self.hparams.vocab[t] for t in batch["tokens"][i, :n].tolist()],
                    "duration": float(batch["duration"][i]),
                    "gt": batch["gt"][i].tolist(),
                    "pred": windows[i, 0, :2].tolist(),
                    "query": batch["query"][i],
                }
            )

    def _log_alignment_maps(self) -> None:
        if not self._logged_maps or self.trainer is None or self.trainer.sanity_checking:
            return
        for logger in self.loggers:
            if type(logger).__name__ == "WandbLogger":
                from fsan_lightning.viz.alignment import alignment_figure_array, pad_to_same_size

                # one size for all images of the key (W&B warns and misdraws otherwise)
                images = pad_to_same_size([alignment_figure_array(**m) for m in self._logged_maps])
                logger.log_image(key="val/alignment_maps", images=images, step=self.global_step,
                                 caption=[m["query"] for m in self._logged_maps])

    # ------------------------------------------------------------------ predictions
    def _collect_predictions(self, batch: dict[str, Any], windows: torch.Tensor) -> None:
        rows = windows.detach().float().cpu().tolist()
        for i, qid in enumerate(batch["qid"]):
            self.test_predictions.append(
                {
                    "qidx": int(batch["qidx"][i]),
                    "qid": qid,
                    "vid": batch["vid"][i],
                    "query": batch["query"][i],
                    "duration": float(batch["duration"][i]),
                    "pred_relevant_windows": [
                        [round(s, 4), round(e, 4), (round(sc, 6) if math.isfinite(sc) else None)] for s, e, sc in rows[i]
                    ],
                }
            )

    # ------------------------------------------------------------------ epoch hooks
    def on_validation_epoch_start(self) -> None:
        self._logged_maps = []

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def on_validation_epoch_end(self) -> None:
        self._log_metric_dict(self.val_metric, "val")
        self._log_diagnostics("val")
        self._log_alignment_maps()

    def on_test_epoch_end(self) -> None:
        self._log_metric_dict(self.test_metric, "test")
        self._log_diagnostics("test")

    def epoch_metrics(self, metric, stage: str) -> dict[str, float]:
        """The values logged as ``{stage}/{name}`` at the end of an epoch (default: the metric's)."""
        return metric.compute()

    def _log_metric_dict(self, metric, stage: str, prefix: str = "") -> None:
        """Log ``metric``'s values as ``{stage}/{prefix}{name}`` (the headline ones, unprefixed, in the progress
        bar), then reset it."""
        values = self.epoch_metrics(metric, stage)
        for name, value in values.items():
            # the metric is already synced across ranks (identical everywhere): the mean changes nothing
            # but keeps every rank's logged value, and so the checkpoint monitor, consistent
            self.log(f"{stage}/{prefix}{name}", float(value),
                     prog_bar=not prefix and name in ("R1@0.5", "mIoU", "Rank@1"), sync_dist=True)
        metric.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fsan_lightning_module"] = f"{type(self).__module__}.{type(self).__qualname__}"
