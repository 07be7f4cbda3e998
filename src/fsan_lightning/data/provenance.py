"""What a feature file was made with: the backbone record `fsan_lightning.extract` writes.

A feature file written by the extractor carries the root attribute ``fsan_backbone`` (JSON: backbone
name, weights hash, frame size, feature width, frames per second) and each video's dataset the
attributes ``times`` and ``duration``. Files from elsewhere (C3D, I3D, .npy folders) have none.
This module reads them with h5py only (no torch, no video decoder).
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DataFormatError

BACKBONE_ATTR = "fsan_backbone"
KEY_TEMPLATE_ATTR = "fsan_key_template"
#: group of a PCA-reduced file holding the projection (x_mean [D], U [D, dim]); see data/video/reduce.py
PCA_GROUP = "_fsan_pca"


def read_provenance(path) -> dict | None:
    """The backbone record of a feature file as a dict, None for a folder or a file without one."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(BACKBONE_ATTR)
    except OSError as exc:
        raise DataFormatError(path, f"cannot open as HDF5 ({exc})") from None
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise DataFormatError(path, f"attribute {BACKBONE_ATTR} is not JSON: {raw!r}") from None
    if not isinstance(record, dict):
        raise DataFormatError(path, f"attribute {BACKBONE_ATTR} is not a JSON object: {raw!r}")
    return record


def read_projection(path):
    """(x_mean float32 [D], U float32 [D, dim]) of a PCA-reduced extracted file, None otherwise."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        return None
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        if PCA_GROUP not in f:
            return None
        return (np.asarray(f[f"{PCA_GROUP}/x_mean"][()], dtype=np.float32),
                np.asarray(f[f"{PCA_GROUP}/U"][()], dtype=np.float32))


def recorded_durations(path, key_template: str, vids) -> dict[str, float]:
    """Video id -> the ``duration`` attribute of its features (videos without one are left out)."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        return {}
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for vid in vids:
            key = key_template.format(vid=vid)
            if key in f and "duration" in f[key].attrs:
                out[vid] = float(f[key].attrs["duration"])
    return out
