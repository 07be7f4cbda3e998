"""Shared helpers of the entry points (train, eval): the only module besides them that uses Hydra.

Builds the DataModule, the LightningModule, loggers and callbacks from a composed config, and
writes test results and predictions. Library code (ops, models, data, metrics, lit) stays Hydra-free.
"""
from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from fsan_lightning._cli import UsageError
from fsan_lightning.runio import atomic_write_jsonl

log = logging.getLogger(__name__)


def configure_environment(cfg: DictConfig) -> None:
    """Keep W&B's files in the run directory and make it never prompt."""
    out = Path(cfg.paths.output_dir)
    os.environ.setdefault("WANDB_DIR", str(out))
    os.environ.setdefault("WANDB_CACHE_DIR", str(out / "wandb_cache"))
    os.environ.setdefault("WANDB_CONFIG_DIR", str(out / "wandb_config"))
    os.environ.setdefault("WANDB_DATA_DIR", str(out / "wandb_data"))
    os.environ.setdefault("WANDB_SILENT", "true")


def guard_ddp_under_multirun(cfg: DictConfig, hydra_cfg: DictConfig | None = None) -> None:
    """Refuse DDP inside a basic-launcher multirun (Lightning would relaunch the whole sweep per rank)."""
    hc = hydra_cfg if hydra_cfg is not None else _hydra_cfg()
    if hc is None:
        return
    mode = str(OmegaConf.select(hc, "mode", default=""))
    launcher = str(OmegaConf.select(hc, "launcher._target_", default=""))
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="") or "")
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    num_nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1) or 1
    many = (isinstance(devices, int) and devices > 1) or (isinstance(devices, str) and devices not in ("1", "auto")) \
        or (isinstance(devices, (list, tuple)) and len(devices) > 1) or num_nodes > 1
    if mode.endswith("MULTIRUN") and "BasicLauncher" in launcher and "ddp" in strategy and many:
        raise RuntimeError(
            "DDP inside a Hydra multirun with the basic launcher would start the whole sweep again on every "
            "rank (Lightning relaunches the command line). Use hydra/launcher=submitit_slurm (tasks_per_node "
            "= trainer.devices) or submitit_local, or run the jobs one by one (README, 'Scaling')."
        )


def _hydra_cfg() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def build_datamodule(cfg: DictConfig, vocabulary: list[str] | None = None, check_splits=None,
                     width: int | None = None):
    """Instantiate and set up the data side (reads every split and runs the full feature check before
    training; ``check_splits``/``width``: only those splits' features, at that width, e.g. eval's)."""
    from fsan_lightning._cli import check_data_config

    check_data_config(OmegaConf.to_container(cfg.data, resolve=False))
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    if vocabulary is not None:
        datamodule.use_vocabulary(vocabulary)
    if check_splits is not None:
        datamodule.check_only(check_splits, width)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_module(cfg: DictConfig, datamodule):
    """Instantiate the model group with the data side's vocabulary and feature width."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    if model_cfg.get("eval_protocol", "auto") == "auto":
        model_cfg["eval_protocol"] = "didemo" if datamodule.dataset == "didemo" else "recall"
    # the data side's pooling and tokenisation, for the predictor (modules that accept them)
    accepted = inspect.signature(hydra.utils.get_object(model_cfg["_target_"])).parameters
    data_side = {k: int(v) for k, v in (("data_num_clips", datamodule.num_clips),
                                         ("data_max_tokens", datamodule.max_tokens)) if k in accepted}
    module = hydra.utils.instantiate(
        model_cfg,
        **data_side,
        vocab=list(datamodule.vocab.words),
        video_dim=int(datamodule.video_dim),
        word_dim=int(datamodule.embeddings.shape[1]),
        function_word_ids=list(datamodule.vocab.function_word_ids),
        _convert_="all",
    )
    if hasattr(module, "load_word_vectors"):
        module.load_word_vectors(torch.from_numpy(datamodule.embeddings))
    criterion = getattr(module, "criterion", None)
    if getattr(criterion, "needs_binding", False) and getattr(datamodule, "binding_tolerance", None) is None:
        raise UsageError("model.loss.weights.triplet_binding > 0 needs binding negatives in the batches: set "
                         "data.binding_tolerance (e.g. +data.binding_tolerance=0; docs/model.md)")
    if getattr(criterion, "needs_sibling", False) and not getattr(datamodule, "siblings", False):
        raise UsageError("model.loss.weights.sibling > 0 needs siblings in the batches: set data.siblings=true "
                         "(e.g. +data.siblings=true; docs/model.md)")
    return module


def build_loggers(cfg: DictConfig) -> list:
    """Instantiate the logger group; W&B goes offline without an API key and is dropped when disabled."""
    loggers = []
    for lcfg in (cfg.get("logger") or {}).values():
        if lcfg is None or "_target_" not in lcfg:
            continue
        if lcfg._target_.endswith("WandbLogger"):
            mode = os.environ.get("WANDB_MODE", "").lower()
            if mode == "disabled":
                log.info("W&B disabled (WANDB_MODE=disabled)")
                continue
            lcfg = OmegaConf.to_container(lcfg, resolve=True)
            if lcfg.get("offline") is None:
                lcfg["offline"] = not (os.environ.get("WANDB_API_KEY") or mode == "online")
            if lcfg["offline"]:
                os.environ["WANDB_MODE"] = "offline"
                lcfg["mode"] = "offline"  # explicit: wandb's process-wide settings may predate the env var
                log.debug("W&B runs offline (no WANDB_API_KEY); upload later with `wandb sync %s/wandb/offline-run-*`",
                          lcfg.get("save_dir"))
            loggers.append(hydra.utils.instantiate(lcfg))
        else:
            loggers.append(hydra.utils.instantiate(lcfg))
    return loggers


def log_model_size(module, datamodule) -> None:
    """The start-of-run line of the model: class, parameter count (trainable), inputs."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    log.info("model: %s, %s parameters (%s trainable); %d words, %d-d video features, %d clips",
             type(module).__name__, f"{total:,}", f"{trainable:,}", len(datamodule.vocab), datamodule.video_dim,
             datamodule.num_clips)


def build_callbacks(cfg: DictConfig) -> list:
    """The callbacks group, plus the RNG-state callback that makes ``ckpt_path=last`` resume exactly and,
    beside each checkpoint callback's files, the last.ckpt it resumes from (written every epoch)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from fsan_lightning.lit.callbacks import LastCheckpoint, ResumableRNG

    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last:
            log.warning("callbacks: ModelCheckpoint save_last=%s ignored; last.ckpt is written after every epoch "
                        "(lit.callbacks.LastCheckpoint)", cb.save_last)
            cb.save_last = False
    dirs = dict.fromkeys(cb.dirpath for cb in callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath)
    return callbacks + [ResumableRNG()] + [LastCheckpoint(d) for d in dirs]


def provenance_callbacks(datamodule) -> list:
    """The callback that records extracted features' backbone in the checkpoints (none for other features)."""
    from fsan_lightning.lit.callbacks import FeatureProvenance

    record = getattr(datamodule, "feature_provenance", None)
    return [FeatureProvenance(record, getattr(datamodule, "feature_projection", None))] if record else []


def log_config(trainer, cfg: DictConfig) -> None:
    container = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams({"config": container} if type(logger).__name__ != "WandbLogger" else container)


def checkpoint_callback(trainer):
    from pytorch_lightning.callbacks import ModelCheckpoint

    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint):
            return cb
    return None


def resolve_resume(cfg: DictConfig, out_dir: Path) -> str | None:
    """``ckpt_path=last`` resumes from this run directory's checkpoints/last.ckpt (if it exists)."""
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, ""):
        return None
    if ckpt == "last":
        last = out_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.info("ckpt_path=last but %s does not exist: starting from scratch", last)
            return None
        return str(last)
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt} does not exist")
    return str(ckpt)


def fit_without_gradients(trainer, module, datamodule, out_dir: Path) -> tuple[str, dict[str, float]]:
    """Fit a training-free module on the training split, validate it, save its checkpoint."""
    module.fit_from_datamodule(datamodule)
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    ckpt = out_dir / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(ckpt))
    return str(ckpt), {k.split("/", 1)[1]: round(float(v), 6) for k, v in metrics.items() if k.startswith("val/")}


def best_validation(trainer, ckpt_cb) -> dict[str, float]:
    """The validation metrics of the selected checkpoint's epoch (from the checkpoint callback's score)."""
    out: dict[str, float] = {}
    if ckpt_cb is not None and ckpt_cb.best_model_score is not None:
        out[str(ckpt_cb.monitor).split("/", 1)[-1]] = float(ckpt_cb.best_model_score)
    return out


def test_checkpoint(trainer, datamodule, ckpt_path: str, out_dir: Path) -> dict[str, float]:
    """Test a checkpoint (loaded weights-only) and write predictions_test.jsonl; return test metrics."""
    from fsan_lightning.lit.checkpoint import load_module

    module = load_module(ckpt_path)
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    test = {k.split("/", 1)[1]: round(float(v), 6) for k, v in metrics.items() if k.startswith("test/")}
    rows = gather_predictions(module.test_predictions)
    if trainer.is_global_zero:
        atomic_write_jsonl(out_dir / "predictions_test.jsonl", [{k: v for k, v in r.items() if k != "qidx"} for r in rows])
    return test


def gather_predictions(rows: list[dict]) -> list[dict]:
    """All ranks' prediction rows, one per query (the distributed sampler pads with duplicates), by qidx."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, rows)
        rows = [r for part in parts for r in part]
    unique = {}
    for r in rows:
        unique.setdefault(r["qidx"], r)
    return [unique[q] for q in sorted(unique)]


def finish_loggers(loggers: list) -> None:
    """Close W&B between multirun jobs so that the next job starts a new run."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            try:
                import wandb

                wandb.finish()
            except Exception as err:  # pragma: no cover - best effort on shutdown
                log.warning("wandb.finish() failed: %s", err)
