"""FSANModule: the LightningModule that trains FSAN weakly and evaluates its grounding.

Training reads only video features and sentences (the batch has no timestamps). Validation and
test rank moments with the model's segment scores, update the metrics and log localization
diagnostics (mean of P inside vs outside the ground truth, predicted vs ground-truth length).
"""
from __future__ import annotations

import inspect
from typing import Any

import pytorch_lightning as pl
import torch

from fsan_lightning.lit.evaluation import EvalRanking, GroundingEvaluation, check_eval_protocol
from fsan_lightning.models import FSAN, FSANCriterion

_NET_ARGS = set(inspect.signature(FSAN.__init__).parameters) - {"self", "vocab_size", "word_dim", "video_dim"}
_CRITERION_ARGS = set(inspect.signature(FSANCriterion.__init__).parameters) - {"self"}


def split_model_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route flat ``model.<name>`` settings to the network or the criterion.

    A name both accept (e.g. ``grounding_head``) goes to both. An unknown name is an error, so a
    typo in a sweep (``model.cros_attn=false``) fails before training instead of being ignored.
    """
    unknown = sorted(set(kwargs) - _NET_ARGS - _CRITERION_ARGS)
    if unknown:
        raise TypeError(
            f"unknown model setting(s) {unknown}; network settings: {sorted(_NET_ARGS)}; "
            f"loss settings: {sorted(_CRITERION_ARGS)}"
        )
    net = {k: v for k, v in kwargs.items() if k in _NET_ARGS}
    crit = {k: v for k, v in kwargs.items() if k in _CRITERION_ARGS}
    return net, crit


def sap_weight_at(epoch_progress: float, warmup_epochs: float, ramp_epochs: float) -> float:
    """Multiplier of the SAP (inner + outer) losses: 0 during warm-up, then a linear ramp to 1."""
    if epoch_progress < warmup_epochs:
        return 0.0
    if ramp_epochs <= 0:
        return 1.0
    return min(1.0, (epoch_progress - warmup_epochs) / ramp_epochs)


class FSANModule(GroundingEvaluation, pl.LightningModule):
    """FSAN network + criterion + optimiser + grounding evaluation (`GroundingEvaluation`).

    Args:
        vocab: the vocabulary's words (index = token id); stored in the checkpoint so that a
            predictor can tokenise new queries without the training data.
        video_dim: width of the pooled clip features.
        word_dim: width of the word vectors (the vectors themselves are weights in the state dict).
        function_word_ids: token ids of function words (used for ``content_mask`` at predict time).
        lr, weight_decay: Adam settings (paper: lr 1e-4).
        scheduler: None or "cosine" (cosine decay over ``trainer.max_epochs``).
        sap_warmup_epochs, sap_ramp_epochs: SAP-loss warm-up (0 = the paper's constant weights).
        top_k, nms_threshold: how many moments are ranked per query and the NMS IoU threshold.
        eval_protocol: "recall" (R@k, IoU) or "didemo" (Rank@k over the 21 moments, no NMS).
        num_logged_maps: alignment maps logged as images each validation epoch (W&B only).
        data_num_clips, data_max_tokens: the data side's ``num_clips`` (Nv) and ``max_tokens`` (tokens
            kept per sentence), unused by training: stored so that a predictor can pool features and
            tokenise queries exactly as training did (``model.max_tokens`` is the network's positional
            table size, another setting, hence the prefix).
        **model_kwargs: every FSAN and FSANCriterion constructor argument, flat (``model.<name>``).
    """

    def __init__(
        self,
        vocab: list[str],
        video_dim: int,
        word_dim: int,
        function_word_ids: list[int] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        scheduler: str | None = None,
        sap_warmup_epochs: float = 0.0,
        sap_ramp_epochs: float = 0.0,
        top_k: int = 5,
        nms_threshold: float = 0.5,
        eval_protocol: str = "recall",
        num_logged_maps: int = 4,
        data_num_clips: int | None = None,
        data_max_tokens: int | None = None,
        **model_kwargs: Any,
    ) -> None:
        super().__init__()
        check_eval_protocol(eval_protocol)
        if scheduler not in (None, "none", "cosine"):
            raise ValueError(f"scheduler must be null or 'cosine', got {scheduler!r}")
        # the composed config is logged by the entry point; keep the vocabulary out of the loggers
        self.save_hyperparameters(logger=False)
        net_kwargs, crit_kwargs = split_model_kwargs(model_kwargs)
        self.net = FSAN(vocab_size=len(vocab), word_dim=word_dim, video_dim=video_dim, **net_kwargs)
        self.criterion = FSANCriterion(**crit_kwargs)
        self._init_evaluation()

    # ------------------------------------------------------------------ helpers
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
        return sap_weight_at(progress, self.hparams.sap_warmup_epochs, self.hparams.sap_ramp_epochs)

    def rank(self, batch: dict[str, Any]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Forward + segment scores + ranked moments.

        Returns:
            out: the network output (A, P [B, Ns, Nv], ...).
            scores: [B, Nv, Nv] segment scores (-inf invalid).
            windows: [B, K, 3] (start_s, end_s, score), best first (DiDeMo: all 21, no NMS).
        """
        out = self.net(batch["video"], batch["video_mask"], batch["tokens"], batch["token_mask"])
        scores = self.net.segment_scores(
            out, batch["token_mask"], batch["video_mask"], content_mask=batch.get("content_mask")
        )
        windows = self.rank_segments(scores, batch)
        return out, scores, windows

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        sap_weight = self.sap_weight()
        losses = self.criterion(self.net, batch, sap_weight=sap_weight)
        bs = batch["tokens"].shape[0]
        for name in ("loss", "loss_triplet", "loss_inner", "loss_outer"):
            self.log(f"train/{name}", losses[name], prog_bar=name == "loss", batch_size=bs)
        self.log("train/sap_weight", sap_weight, batch_size=bs)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(
                f"training loss became {losses['loss'].item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx}; the last good checkpoint is kept in the run's checkpoints/ folder"
            )
        return losses["loss"]

    # ------------------------------------------------------------------ evaluation
    def eval_rank(self, batch: dict[str, Any]) -> EvalRanking:
        out, _, windows = self.rank(batch)
        return EvalRanking(windows, out.P)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "cosine" and self.trainer is not None and self.trainer.max_epochs:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        return optimizer
