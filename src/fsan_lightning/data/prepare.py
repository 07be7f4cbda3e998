"""Feature preparation.

    python -m fsan_lightning.data.prepare pca IN OUT --dim 500 [--key-template T] [--out-key-template T]
        [--fit-vids FILE] [--chunk-rows N]

``pca``: streaming PCA of per-video features (e.g. 4096-d VGG fc7 or C3D -> 500-d). Pass 1 fits on
the training videos (``--fit-vids``: a text file with one video id per line, or an annotation file
read by ``--fit-dataset``; default: every video in IN) by accumulating the sum and the scatter matrix
in float64, one chunk of rows at a time (memory D^2 doubles, independent of the number of videos).
Pass 2 projects every video of IN and writes OUT in the same layout (float32). The components, their
variances and the mean go to ``OUT.pca.hdf5`` (``data/U`` [D, dim], ``data/S`` [dim], ``data/x_mean``
[D], like the ActivityNet PCA file). Component signs are fixed (largest-magnitude entry positive).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .errors import DataFormatError
from .features import DEFAULT_KEY_TEMPLATE, FeatureStore, HDF5FeatureStore, open_feature_store


def fit_pca(store: FeatureStore, vids: list[str], dim: int, chunk_rows: int = 4096
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Streaming PCA: returns (mean [D] float64, components U [D, dim], variances S [dim]).

    The scatter is accumulated around a shift (the first video's mean) to avoid cancellation.
    """
    if not vids:
        raise ValueError("no videos to fit the PCA on")
    shift = None
    total = None
    scatter = None
    n = 0
    for vid in vids:
        x = store.read(vid)
        for a in range(0, len(x), chunk_rows):
            c = x[a:a + chunk_rows].astype(np.float64)
            if shift is None:
                shift = c.mean(0)
                d = c.shape[1]
                total = np.zeros(d)
                scatter = np.zeros((d, d))
                if dim > d:
                    raise ValueError(f"--dim {dim} exceeds the feature width {d}")
            elif c.shape[1] != len(shift):
                raise DataFormatError(store.path, f"feature width {c.shape[1]}, expected {len(shift)}", vid)
            c -= shift
            total += c.sum(0)
            scatter += c.T @ c
            n += len(c)
    if n < 2:
        raise ValueError("PCA needs at least 2 feature rows")
    mean_c = total / n
    cov = (scatter - n * np.outer(mean_c, mean_c)) / (n - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:dim]
    u = evecs[:, order]
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    u = u * np.where(signs == 0, 1, signs)
    return shift + mean_c, u, np.maximum(evals[order], 0.0)


def apply_pca(store: FeatureStore, out_path, mean, u, out_key_template: str = DEFAULT_KEY_TEMPLATE) -> int:
    """Project every video of the store; writes OUT atomically. Returns the number of videos."""
    import h5py

    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".tmp")
    vids = store.vids()
    with h5py.File(tmp, "w") as f:
        for vid in vids:
            y = (store.read(vid).astype(np.float64) - mean) @ u
            f.create_dataset(out_key_template.format(vid=vid), data=y.astype(np.float32))
    tmp.replace(out_path)
    return len(vids)


def _fit_vids(args, store) -> list[str]:
    if args.fit_vids is None:
        return store.vids()
    if args.fit_dataset:
        from .readers import read_annotations

        queries, _ = read_annotations(args.fit_dataset, args.fit_vids, args.durations)
        vids = sorted({q.vid for q in queries})
    else:
        vids = sorted({line.strip() for line in Path(args.fit_vids).read_text().splitlines() if line.strip()})
    missing = [v for v in vids if store.shape(v) is None]
    if missing:
        raise DataFormatError(store.path, f"{len(missing)} fit videos have no features, e.g. {missing[:5]}")
    return vids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.data.prepare")
    sub = p.add_subparsers(dest="command", required=True)
    pca = sub.add_parser("pca", help="streaming PCA of a feature file (e.g. 4096 -> 500)")
    pca.add_argument("input")
    pca.add_argument("output")
    pca.add_argument("--dim", type=int, default=500)
    pca.add_argument("--key-template", default=DEFAULT_KEY_TEMPLATE)
    pca.add_argument("--out-key-template", default=None, help="default: same as --key-template")
    pca.add_argument("--fit-vids", default=None,
                     help="videos to fit on: a text file of ids, or an annotation file with --fit-dataset")
    pca.add_argument("--fit-dataset", default=None, choices=["activitynet", "synthetic", "didemo", "charades"])
    pca.add_argument("--durations", nargs="+", default=None)
    pca.add_argument("--chunk-rows", type=int, default=4096)
    args = p.parse_args(argv)
    try:
        store = open_feature_store(args.input, args.key_template)
        if not isinstance(store, HDF5FeatureStore) and args.out_key_template is None:
            args.out_key_template = DEFAULT_KEY_TEMPLATE
        vids = _fit_vids(args, store)
        mean, u, s = fit_pca(store, vids, args.dim, args.chunk_rows)
        n = apply_pca(store, args.output, mean, u, args.out_key_template or args.key_template)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import h5py

    with h5py.File(str(args.output) + ".pca.hdf5", "w") as f:
        f["data/U"] = u.astype(np.float32)
        f["data/S"] = s.astype(np.float32)
        f["data/x_mean"] = mean.astype(np.float32)
    print(json.dumps({"videos": n, "fit_videos": len(vids), "dim": args.dim,
                      "explained_variance": round(float(s.sum()), 6)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
