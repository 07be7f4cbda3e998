"""Callbacks the framework always adds: exact resumption of random number streams, the last checkpoint."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


class ResumableRNG(pl.Callback):
    """Save the torch, numpy and Python RNG states in every checkpoint and restore them on resume.

    Lightning restores model, optimiser, loops and callbacks but not the global random streams,
    so dropout after a resume would differ from an uninterrupted run. The states are stored as
    plain tensors, lists and ints, so the checkpoint still loads with ``weights_only=True``.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        py_version, py_internal, py_gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [int(py_version), list(py_internal), py_gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_py = state["python"]
        random.setstate((version, tuple(internal), gauss_py))


class LastCheckpoint(pl.callbacks.Checkpoint):
    """Write ``<dirpath>/last.ckpt`` at the end of every training epoch of ``fit``, whatever the monitored
    score did.

    ``ckpt_path=last`` must resume after the last finished epoch. Lightning 2.6's ``ModelCheckpoint(
    save_last=True)`` writes last.ckpt only in the epochs where its monitored checkpoint is saved (a new
    best), so after a run whose best epoch came early, a resume restarted from the best epoch. The file is
    written where ``ModelCheckpoint`` writes its own with the default validation schedule (epoch end):
    as a ``Checkpoint`` it runs after that callback and early stopping (Lightning orders checkpoint
    callbacks last), so it holds their updated state, and a resume starts the next epoch. Written to a
    temporary file and renamed: a kill mid-write leaves the previous last.ckpt intact.
    """

    def __init__(self, dirpath: str | os.PathLike) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or trainer.state.fn != "fit":
            return
        partial = self.path.with_name(self.path.name + ".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier("LastCheckpoint")


class FeatureProvenance(pl.Callback):
    """Write what the training features were made with into every checkpoint.

    ``record``: the feature file's backbone record (``fsan_lightning.data.provenance``: backbone
    name, weights hash, frame size, width, frames per second), stored under ``CHECKPOINT_KEY`` as
    plain strings and numbers (weights-only loadable). ``predict --video`` reads it to extract a new
    video's features the same way, and refuses a checkpoint trained on other features.
    ``projection``: (x_mean [D], U [D, dim]) of PCA-reduced features, stored as tensors under
    ``PROJECTION_KEY`` so that a new video's features are reduced the same way.
    """

    CHECKPOINT_KEY = "fsan_lightning_features"
    PROJECTION_KEY = "fsan_lightning_features_pca"

    def __init__(self, record: dict | None, projection=None):
        self.record = dict(record) if record else None
        self.projection = None
        if projection is not None:
            mean, u = projection
            self.projection = {"x_mean": torch.as_tensor(mean, dtype=torch.float32),
                               "U": torch.as_tensor(u, dtype=torch.float32)}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self.record is not None:
            checkpoint[self.CHECKPOINT_KEY] = dict(self.record)
        if self.projection is not None:
            checkpoint[self.PROJECTION_KEY] = dict(self.projection)
