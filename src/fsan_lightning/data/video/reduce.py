"""PCA of an extracted feature file to a smaller width, keeping what predict --video needs.

Reuses `fsan_lightning.data.prepare.fit_pca` (streaming, float64, fixed signs). The reduced file has
the extractor's layout and per-video attributes (times, duration, source), the projection itself at
``_fsan_pca/x_mean`` [D] and ``_fsan_pca/U`` [D, dim] (float32), and a backbone record with
``pca_dim`` added, so that training copies the projection into the checkpoint and ``predict --video``
projects a new video's features the same way: ``(x - x_mean) @ U``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DataFormatError
from ..features import HDF5FeatureStore
from ..prepare import fit_pca
from ..provenance import BACKBONE_ATTR, KEY_TEMPLATE_ATTR, PCA_GROUP


def reduce_features(raw_path, out_path, dim: int, fit_vids: list[str] | None = None) -> dict:
    """Fit a PCA on ``fit_vids`` (default: every video of raw_path) and write the reduced file.

    Returns {"videos", "fit_videos", "dim", "explained_variance"}. The output is written to a
    temporary name and renamed, so a killed run leaves no half file.
    """
    import h5py

    raw_path, out_path = Path(raw_path), Path(out_path)
    with h5py.File(raw_path, "r") as f:
        raw_record = f.attrs.get(BACKBONE_ATTR)
        template = f.attrs.get(KEY_TEMPLATE_ATTR)
    if raw_record is None or template is None:
        raise DataFormatError(raw_path, "not a file of fsan_lightning.extract (no fsan_backbone attribute)")
    record = json.loads(raw_record)
    if "pca_dim" in record:
        raise DataFormatError(raw_path, f"already reduced to {record['pca_dim']} dimensions")
    store = HDF5FeatureStore(raw_path, template)
    vids = store.vids()
    fit = sorted(fit_vids) if fit_vids is not None else vids
    missing = sorted(set(fit) - set(vids))
    if missing:
        raise DataFormatError(raw_path, f"{len(missing)} PCA fit videos are not in the file, e.g. {missing[:5]}")
    mean, u, s = fit_pca(store, fit, dim)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with h5py.File(raw_path, "r") as src, h5py.File(tmp, "w") as dst:
        dst.attrs[BACKBONE_ATTR] = json.dumps({**record, "pca_dim": int(dim)}, sort_keys=True)
        dst.attrs[KEY_TEMPLATE_ATTR] = template
        dst[f"{PCA_GROUP}/x_mean"] = mean.astype(np.float32)
        dst[f"{PCA_GROUP}/U"] = u.astype(np.float32)
        for vid in vids:
            key = template.format(vid=vid)
            y = (store.read(vid).astype(np.float64) - mean) @ u
            ds = dst.create_dataset(key, data=y.astype(np.float32))
            for name, value in src[key].attrs.items():
                ds.attrs[name] = value
    store.close()
    tmp.replace(out_path)
    return {"videos": len(vids), "fit_videos": len(fit), "dim": int(dim),
            "explained_variance": round(float(s.sum()), 6)}
