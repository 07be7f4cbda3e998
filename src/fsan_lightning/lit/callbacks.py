"""Callbacks the framework always adds: exact resumption of random number streams."""
from __future__ import annotations

import random
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
