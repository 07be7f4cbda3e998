"""Loading FSAN checkpoints safely: weights-only unpickling, clear errors, no code execution."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

import importlib

from fsan_lightning.lit.legacy import LegacyCheckpointError, convert_hparams, convert_state_dict, is_legacy

# The LightningModules a checkpoint may hold, by the import path each writes under MODULE_KEY
# (`GroundingEvaluation.on_save_checkpoint`). Only these are ever imported: a checkpoint cannot name code.
MODULE_KEY = "fsan_lightning_module"
ALLOWED_MODULES = (
    "fsan_lightning.lit.module.FSANModule",
    "fsan_lightning.lit.baselines.PrototypeModule",
    "fsan_lightning.lit.baselines.RandomModule",
)
# checkpoints written before the import paths recorded the bare class name
_BY_CLASS_NAME = {path.rsplit(".", 1)[1]: path for path in ALLOWED_MODULES}


def module_class(name: str) -> type:
    """The allowed LightningModule class a checkpoint names (import path, or a bare class name of old files)."""
    path = _BY_CLASS_NAME.get(name, name)
    if path not in ALLOWED_MODULES:
        raise CheckpointError(f"unknown module class {name!r}; allowed: {list(ALLOWED_MODULES)}")
    module_path, cls_name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module_path), cls_name)


class CheckpointError(ValueError):
    """A file that is not a loadable FSAN checkpoint."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only.

    A checkpoint that needs arbitrary classes (a crafted pickle that would run code, or a file
    saved with custom objects) is refused with a message naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it is not a weights-only checkpoint (loading it would unpickle "
            f"arbitrary objects, which can run code). Details: {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # torch raises many kinds (KeyError, RuntimeError, EOFError...) on junk files
        raise CheckpointError(f"cannot read checkpoint {path}: not a torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not an FSAN checkpoint (no state_dict / hyper_parameters)")
    hp = ckpt["hyper_parameters"]
    if not isinstance(hp, dict) or "vocab" not in hp or "video_dim" not in hp:
        raise CheckpointError(f"{path} is not an FSAN checkpoint (hyper_parameters lack vocab / video_dim)")
    return ckpt


def load_module(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the module (FSAN or a baseline: network, vocabulary, settings) from a checkpoint alone."""
    ckpt = read_checkpoint(path)
    hp = dict(ckpt["hyper_parameters"])
    try:
        cls = module_class(ckpt.get(MODULE_KEY, "FSANModule"))
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    state_dict = ckpt["state_dict"]
    if cls.__name__ == "FSANModule" and is_legacy(hp):
        try:
            hp, state_dict = convert_hparams(hp), convert_state_dict(state_dict)
        except LegacyCheckpointError as err:
            raise CheckpointError(f"{path}: a checkpoint of the flat-settings FSAN that cannot be converted: {err}") from None
    try:
        module = cls(**hp)
        module.load_state_dict(state_dict)
    except (TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: checkpoint does not match this version of FSANModule: {err}") from None
    return module.to(map_location).eval()
