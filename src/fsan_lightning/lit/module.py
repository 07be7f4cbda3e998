"""FSANModule: the LightningModule that trains FSAN weakly and evaluates its grounding.

Training reads only video features and sentences (the batch has no timestamps). Validation and
test rank moments with the model's segment scores, update the metrics and log localization
diagnostics (mean of P inside vs outside the ground truth, predicted vs ground-truth length).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from fsan_lightning.baselines.prototype import fit_local_visibility
from fsan_lightning.lit.evaluation import EvalRanking, GroundingEvaluation, check_eval_protocol
from fsan_lightning.models import build_criterion, build_fsan, run_training_pass

OPTIM_DEFAULTS = {"lr": 1e-4, "weight_decay": 0.0, "scheduler": None, "sap_warmup_epochs": 0.0, "sap_ramp_epochs": 0.0,
                  "part_lr": {}}


def param_groups(named_parameters, lr: float, part_lr: Mapping[str, float]) -> list[dict]:
    """Adam parameter groups: the trainable parameters whose name starts with a ``part_lr`` prefix (e.g.
    ``net.interaction``; the longest matching prefix wins) at that prefix's lr, the others at ``lr``.
    Groups without parameters are left out. ValueError for a prefix that names no trainable parameter,
    or a learning rate <= 0."""
    bad = {k: v for k, v in part_lr.items() if float(v) <= 0}
    if bad:
        raise ValueError(f"model.optim.part_lr: learning rates must be > 0, got {bad}")
    prefixes = sorted(part_lr, key=len, reverse=True)
    members: dict[str | None, list] = {None: [], **{k: [] for k in prefixes}}
    for name, p in named_parameters:
        if p.requires_grad:
            owner = next((k for k in prefixes if name == k or name.startswith(k + ".")), None)
            members[owner].append(p)
    unused = [k for k in prefixes if not members[k]]
    if unused:
        raise ValueError(f"model.optim.part_lr: prefix(es) {unused} name no trainable parameter "
                         f"(parameter names look like 'net.interaction.layers.0...')")
    return [{"params": ps, "lr": float(lr if k is None else part_lr[k])} for k, ps in members.items() if ps]


def sap_weight_at(epoch_progress: float, warmup_epochs: float, ramp_epochs: float) -> float:
    """Multiplier of the SAP (inner + outer) losses: 0 during warm-up, then a linear ramp to 1."""
    if epoch_progress < warmup_epochs:
        return 0.0
    if ramp_epochs <= 0:
        return 1.0
    return min(1.0, (epoch_progress - warmup_epochs) / ramp_epochs)


class FSANModule(GroundingEvaluation, pl.LightningModule):
    """FSAN network + loss + optimiser + grounding evaluation (`GroundingEvaluation`).

    Args:
        vocab: the vocabulary's words (index = token id); stored in the checkpoint so that a
            predictor can tokenise new queries without the training data.
        video_dim: width of the pooled clip features.
        word_dim: width of the word vectors (the vectors themselves are weights in the state dict).
        function_word_ids: token ids of function words (used for ``content_mask`` at predict time).
        net: the network's parts (:func:`fsan_lightning.models.build_fsan` arguments; conf/model/net/).
        loss: the loss (:func:`fsan_lightning.models.build_criterion` arguments; conf/model/loss/).
        optim: ``lr``, ``weight_decay`` (Adam; paper lr 1e-4), ``scheduler`` (None | "cosine" over
            ``trainer.max_epochs``), ``sap_warmup_epochs``, ``sap_ramp_epochs`` (SAP terms off, then a
            linear ramp; 0 = the paper's constant weights), ``part_lr`` (a learning rate per parameter-name
            prefix, e.g. ``{"net.interaction": 3e-4}``; :func:`param_groups`).
        cross_attn, inner_attn, grounding_head, sap_loss: the Table 4 switches (``model.<name>``).
        top_k, nms_threshold: how many moments are ranked per query and the NMS IoU threshold.
        eval_protocol: "recall" (R@k, IoU) or "didemo" (Rank@k over the 21 moments, no NMS).
        num_logged_maps: alignment maps logged as images each validation epoch (W&B only).
        data_num_clips, data_max_tokens: the data side's ``num_clips`` (Nv) and ``max_tokens`` (tokens
            kept per sentence), unused by training: stored so that a predictor can pool features and
            tokenise queries exactly as training did.
    """

    def __init__(
        self,
        vocab: list[str],
        video_dim: int,
        word_dim: int,
        net: dict[str, Any],
        loss: dict[str, Any],
        optim: dict[str, Any] | None = None,
        function_word_ids: list[int] | None = None,
        cross_attn: bool = True,
        inner_attn: bool = True,
        grounding_head: str = "sap",
        sap_loss: bool = True,
        top_k: int = 5,
        nms_threshold: float = 0.5,
        eval_protocol: str = "recall",
        num_logged_maps: int = 4,
        data_num_clips: int | None = None,
        data_max_tokens: int | None = None,
    ) -> None:
        super().__init__()
        check_eval_protocol(eval_protocol)
        unknown = sorted(set(optim or {}) - set(OPTIM_DEFAULTS))
        if unknown:
            raise TypeError(f"unknown model.optim setting(s) {unknown}; valid: {sorted(OPTIM_DEFAULTS)}")
        self.optim = {**OPTIM_DEFAULTS, **(optim or {})}
        if self.optim["scheduler"] not in (None, "none", "cosine"):
            raise ValueError(f"model.optim.scheduler must be null or 'cosine', got {self.optim['scheduler']!r}")
        # the composed config is logged by the entry point; keep the vocabulary out of the loggers
        self.save_hyperparameters(logger=False)
        self.net = build_fsan(len(vocab), word_dim, video_dim, cross_attn=cross_attn, inner_attn=inner_attn,
                              grounding_head=grounding_head, **net)
        self.criterion = build_criterion(sap_loss=sap_loss, grounding_head=grounding_head, net=self.net, **loss)
        param_groups(self.named_parameters(), self.optim["lr"], self.optim["part_lr"])  # bad prefixes: now
        self._pseudo_moments: torch.Tensor | None = None  # bool [training items, Nv] by qidx (self-training)
        self._init_evaluation()
        # a network whose interaction can be bypassed is also ranked on its base map each validation epoch
        self.val_base_metric = self._make_metric() if hasattr(self.net, "interaction_bypassed") else None

    # ------------------------------------------------------------------ helpers
    def fit_word_salience(self, datamodule) -> bool:
        """Fit the network's word salience (if it has one and it is not fitted yet) from the training split's
        features and sentences (`fit_local_visibility` over ``datamodule.fit_dataloader()``: every training
        item once, the same on every rank; never timestamps). Returns True when it fitted."""
        salience = self.net.salience
        if salience is None or bool(salience.fitted):
            return False
        if not hasattr(datamodule, "fit_dataloader"):
            raise RuntimeError("model.net.salience is fitted from the training split: pass the "
                               "GroundingDataModule to trainer.fit (or call fit_word_salience first)")
        estimate, estimated, _ = fit_local_visibility(datamodule.fit_dataloader(), self.net.vocab_size,
                                                      min_videos=salience.min_videos)
        salience.set_estimate(estimate, estimated)
        return True

    def on_fit_start(self) -> None:
        self.fit_word_salience(getattr(self.trainer, "datamodule", None))

    def refresh_pseudo_moments(self, datamodule, epoch: int) -> bool:
        """Before training epoch ``epoch``: when the self-training term trains from this epoch on (its
        ``start_epoch``), the network (in eval mode) grounds every training sentence again with the term's
        teacher (`SiblingPseudoMoments` over ``datamodule.fit_dataloader()``: every item once, the same on
        every rank, never timestamps); otherwise the batches carry no pseudo-moments. Returns True when it ran."""
        if not self.criterion.trains_self_training_at(epoch):
            self._pseudo_moments = None
            return False
        if not hasattr(datamodule, "fit_dataloader"):
            raise RuntimeError("model.loss.weights.self_training > 0 reads the training split each epoch: pass "
                               "the GroundingDataModule to trainer.fit")
        teacher = self.criterion.self_training.teacher
        batches = (self.transfer_batch_to_device(b, self.device, 0) for b in datamodule.fit_dataloader())
        was = self.net.training
        self.net.eval()
        try:
            qidx, moments = teacher(self.net, batches)
        finally:
            self.net.train(was)
        table = torch.zeros((int(qidx.max()) + 1, moments.shape[1]), dtype=torch.bool)
        table[qidx.cpu()] = moments.cpu()
        self._pseudo_moments = table
        return True

    def with_pseudo_moments(self, batch: dict[str, Any], epoch: int) -> dict[str, Any]:
        """A training batch of epoch ``epoch`` with its items' pseudo-moments (key ``pseudo_moment``, bool
        [B, Nv]) when the self-training term trains in that epoch; RuntimeError when it should and the
        teacher has not run (`refresh_pseudo_moments`)."""
        if not self.criterion.trains_self_training_at(epoch):
            return batch
        if self._pseudo_moments is None:
            raise RuntimeError("the self-training term trains but no pseudo-moments were made: call "
                               "refresh_pseudo_moments(datamodule, epoch) at the start of each epoch")
        moment = self._pseudo_moments[batch["qidx"].cpu()].to(batch["video"].device)
        return {**batch, "pseudo_moment": moment}

    def on_train_epoch_start(self) -> None:
        if self.refresh_pseudo_moments(getattr(self.trainer, "datamodule", None), self.current_epoch):
            length = self._pseudo_moments.float().sum(1).mean()
            self.log("train/pseudo_moment_clips", length, rank_zero_only=True)

    def load_word_vectors(self, matrix: torch.Tensor) -> None:
        """Copy the data side's embedding matrix [V, E] into the network."""
        self.net.load_word_vectors(torch.as_tensor(matrix, dtype=torch.float32))

    def sap_weight(self) -> float:
        if self.trainer is None or self.trainer.num_training_batches in (0, float("inf")):
            progress = float(self.current_epoch)
        else:
            progress = self.current_epoch + self.trainer.fit_loop.epoch_loop.batch_progress.current.ready / max(
                1, self.trainer.num_training_batches
            )
        return sap_weight_at(progress, self.optim["sap_warmup_epochs"], self.optim["sap_ramp_epochs"])

    def losses(self, batch: dict[str, Any], sap_weight: float = 1.0) -> dict:
        """Run the training passes of ``batch`` and the loss: ``{"loss", "terms": {...}, "stats": {...}}``."""
        crit = self.criterion
        passes = run_training_pass(self.net, batch, negative_video=crit.needs_negative_video,
                                   binding=crit.needs_binding, sibling=crit.needs_sibling,
                                   interacted=crit.interacted_passes(crit.passes))
        return crit(passes, sap_weight=sap_weight)

    def rank(self, batch: dict[str, Any]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Forward + segment scores + ranked moments.

        Returns:
            out: the network output (A, P [B, Ns, Nv], ...).
            scores: [B, Nv, Nv] segment scores (-inf invalid).
            windows: [B, K, 3] (start_s, end_s, score), best first (DiDeMo: all 21, no NMS).
        """
        out = self.net(batch["video"], batch["video_mask"], batch["tokens"], batch["token_mask"])
        scores = self.net.segment_scores(out, batch["token_mask"], content_mask=batch.get("content_mask"))
        windows = self.rank_segments(scores, batch)
        return out, scores, windows

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        sap_weight = self.sap_weight()
        losses = self.losses(self.with_pseudo_moments(batch, self.current_epoch), sap_weight=sap_weight)
        bs = batch["tokens"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        for name, value in losses["terms"].items():
            self.log(f"train/loss_{name}", value, batch_size=bs)
        self.log("train/sap_weight", sap_weight, batch_size=bs)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(
                f"training loss became {losses['loss'].item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx}; the last good checkpoint is kept in the run's checkpoints/ folder"
            )
        return losses["loss"]

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Ranking metrics, and the held-out matching loss: the loss terms on validation sentences and
        videos with fixed negatives (``val/heldout_<term>``), next to the training ones. Where it falls
        while val R1 does not, the model matches better without localizing better (issue "FSAN that learns").
        A network whose interaction can be bypassed (:class:`~fsan_lightning.models.fsan.AttachedTwoStageFSAN`)
        is ranked a second time on its base map, by the same grounder (``val/base_<metric>``): the paired
        reading of what the interaction adds, at every epoch of the same weights (the checkpoint is still
        selected on ``val/mIoU``, the interacted map's)."""
        super().validation_step(batch, batch_idx)
        if self.val_base_metric is not None:
            with self.net.interaction_bypassed():
                _, _, windows = self.rank(batch)
            self.update_metric(self.val_base_metric, batch, windows)
        if "neg_tokens" not in batch:
            return
        losses = self.losses(batch, sap_weight=1.0)
        bs = batch["tokens"].shape[0]
        for name, value in losses["terms"].items():
            self.log(f"val/heldout_{name}", value, batch_size=bs)
        for name in ("score_pos", "score_neg"):
            if name in losses["stats"]:
                self.log(f"val/heldout_{name}", losses["stats"][name], batch_size=bs)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.val_base_metric is not None:
            self._log_metric_dict(self.val_base_metric, "val", prefix="base_")

    def eval_rank(self, batch: dict[str, Any]) -> EvalRanking:
        out, _, windows = self.rank(batch)
        return EvalRanking(windows, out.P)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        groups = param_groups(self.named_parameters(), self.optim["lr"], self.optim["part_lr"])
        optimizer = torch.optim.Adam(groups, lr=self.optim["lr"], weight_decay=self.optim["weight_decay"])
        if self.optim["scheduler"] == "cosine" and self.trainer is not None and self.trainer.max_epochs:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        return optimizer
