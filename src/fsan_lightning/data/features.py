"""Video features: lazy per-process feature stores (HDF5 or a folder of .npy files) and pooling.

Stores hold only a path and open the file on first use *in the process that reads* (a DataLoader
worker re-opens after fork; pickling drops the handle), so they are safe to hand to workers, read one
video at a time, and never load the whole file: memory does not grow with the data set.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DataFormatError

DEFAULT_KEY_TEMPLATE = "{vid}/c3d_features"


class MissingFeaturesError(DataFormatError):
    """Videos of the annotations are absent from the feature store."""


class FeatureStore:
    """Base class: per-video feature matrices ``[T, D]`` (float32) looked up by video id."""

    path: str

    def shape(self, vid: str) -> tuple[int, ...] | None:
        """Shape of the video's features without reading them; None when the video is absent."""
        raise NotImplementedError

    def _load(self, vid: str) -> np.ndarray:
        raise NotImplementedError

    def _load_checked(self, vid: str) -> np.ndarray | None:
        """The video's raw array, or None when the store lacks it (subclasses may do it in one lookup)."""
        return None if self.shape(vid) is None else self._load(vid)

    def vids(self) -> list[str]:
        """All video ids in the store (sorted)."""
        raise NotImplementedError

    def where(self, vid: str) -> str:
        """The location of a video's features inside the store, for messages."""
        return vid

    def close(self) -> None:
        """Release any open file handle (the next read re-opens)."""

    def read(self, vid: str, dim: int | None = None) -> np.ndarray:
        """Features ``[T, D]`` float32 of one video, checked: 2-D, T > 0, D == dim (if given), finite."""
        arr = self._load_checked(vid)
        if arr is None:
            raise MissingFeaturesError(self.path, "no features for this video", vid, self.where(vid))
        arr = np.asarray(arr, dtype=np.float32)
        check_feature_shape(self, vid, arr.shape, dim)
        # a finite float64 sum proves every value finite (float32 values cannot overflow it), with no
        # temporary array; else find the bad rows
        if np.isfinite(arr.sum(dtype=np.float64)):
            return arr
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise DataFormatError(self.path, f"features contain NaN or inf in {len(rows)} of {arr.shape[0]} "
                                             f"rows (first row {int(rows[0])})", vid, self.where(vid))
        return arr


def shape_problem(shape: tuple[int, ...], dim: int | None, min_rows: int = 1) -> tuple[str, str] | None:
    """The first thing wrong with a feature array's shape, as ``(kind, message)``, or None.

    kind: "rank" (not 2-D), "zero_rows", "too_few_rows" (fewer than ``min_rows``), "width" (not ``dim``).
    """
    if len(shape) != 2:
        return "rank", f"features must be 2-D [T, D], got shape {tuple(shape)}"
    if shape[0] < max(1, min_rows):
        if shape[0] == 0:
            return "zero_rows", "features have zero rows"
        return "too_few_rows", f"features have {shape[0]} rows, fewer than the {min_rows} needed"
    if dim is not None and shape[1] != dim:
        return "width", (f"feature width {shape[1]}, expected {dim} (the width of the other videos / the "
                         "configured width)")
    return None


def check_feature_shape(store: FeatureStore, vid: str, shape: tuple[int, ...], dim: int | None,
                        min_rows: int = 1) -> None:
    """Raise a DataFormatError naming store and video unless shape is ``[T >= min_rows, dim]``."""
    problem = shape_problem(shape, dim, min_rows)
    if problem is not None:
        raise DataFormatError(store.path, problem[1], vid, store.where(vid))


class HDF5FeatureStore(FeatureStore):
    """Features in an HDF5 file at ``key_template.format(vid=...)``.

    The official ActivityNet layout is the default template ``"{vid}/c3d_features"``; a file keyed by
    the video id alone uses ``"{vid}"``.
    """

    def __init__(self, path, key_template: str = DEFAULT_KEY_TEMPLATE):
        if "{vid}" not in key_template:
            raise ValueError(f"feature key template {key_template!r} must contain '{{vid}}'")
        self.path = str(path)
        self.key_template = key_template
        self._file = None
        self._pid = None
        self._inherited = []

    def _h5(self):
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            import h5py

            if self._file is not None:
                # a handle inherited through fork: keep it referenced and untouched, so the child
                # never closes the parent's HDF5 state
                self._inherited.append(self._file)
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"feature file not found: {self.path}")
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataFormatError(self.path, f"cannot open as HDF5 ({exc})") from None
            self._pid = pid
        return self._file

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_file=None, _pid=None, _inherited=[])
        return state

    def where(self, vid: str) -> str:
        return self.key_template.format(vid=vid)

    def shape(self, vid):
        f = self._h5()
        key = self.where(vid)
        if key not in f:
            return None
        obj = f[key]
        if not hasattr(obj, "shape"):
            raise DataFormatError(self.path, "expected a dataset, found a group", vid, key)
        return tuple(obj.shape)

    def _load(self, vid):
        return self._h5()[self.where(vid)][()]

    def _load_checked(self, vid):
        key = self.where(vid)
        obj = self._h5().get(key)
        if obj is None:
            return None
        if not hasattr(obj, "shape"):
            raise DataFormatError(self.path, "expected a dataset, found a group", vid, key)
        return obj[()]

    def vids(self):
        import h5py

        f = self._h5()
        prefix = self.key_template.split("{vid}")[0].strip("/")
        if prefix and prefix not in f:
            return []
        group = f[prefix] if prefix else f
        return sorted(k for k in group if isinstance(f.get(self.where(k)), h5py.Dataset))

    def close(self):
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None


class NpyFolderFeatureStore(FeatureStore):
    """A folder of per-video ``<vid>.npy`` files, each ``[T, D]``."""

    def __init__(self, folder):
        self.path = str(folder)

    def _file(self, vid: str) -> Path:
        return Path(self.path) / f"{vid}.npy"

    def where(self, vid):
        return f"{vid}.npy"

    def shape(self, vid):
        p = self._file(vid)
        if not p.is_file():
            return None
        try:
            return tuple(np.load(p, mmap_mode="r").shape)
        except ValueError as exc:
            raise DataFormatError(self.path, f"not a .npy array ({exc})", vid, p.name) from None

    def _load(self, vid):
        return np.load(self._file(vid))

    def vids(self):
        return sorted(p.stem for p in Path(self.path).glob("*.npy"))


def open_feature_store(path, key_template: str = DEFAULT_KEY_TEMPLATE) -> FeatureStore:
    """A folder -> `NpyFolderFeatureStore`; a file -> `HDF5FeatureStore` (opened lazily)."""
    p = Path(path)
    if p.is_dir():
        return NpyFolderFeatureStore(p)
    if not p.exists():
        raise FileNotFoundError(f"feature file or folder not found: {p}")
    return HDF5FeatureStore(p, key_template)


def check_features(store: FeatureStore, min_rows: dict[str, int], dim: int | None = None
                   ) -> tuple[list[str], int | None]:
    """Check presence and shape (not values) of every video's features; cheap: no data is read.

    min_rows: video id -> rows it needs (1 for pooled datasets, num_segments for DiDeMo).
    Returns (missing video ids sorted, feature width). Raises DataFormatError on a bad shape or a
    width different from ``dim`` (or from the first video's width when dim is None).
    """
    missing = []
    for vid in sorted(min_rows):
        shape = store.shape(vid)
        if shape is None:
            missing.append(vid)
            continue
        if dim is None and len(shape) == 2:
            dim = int(shape[1])
        check_feature_shape(store, vid, shape, dim, min_rows[vid])
    return missing, dim


def missing_features_message(store: FeatureStore, missing: list[str], total: int) -> str:
    return (f"{len(missing)} of {total} videos have no features in {store.path} "
            f"(first: {', '.join(missing[:5])}); fix the features, or set missing_features='skip' to "
            "drop their queries (counted in data_report.json)")


def pool_clips(feats: np.ndarray, num_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool ``[T, D]`` rows to ``num_clips`` clips by the mean over evenly spaced bins.

    Bin k holds rows ``edges[k]:edges[k+1]`` with ``edges = np.round(k * T / num_clips)`` (numpy
    rounds halves to even, as in the peers' code); an empty bin takes the single row ``edges[k]``.
    With fewer rows than clips (T < num_clips) the T rows are kept as the first T clips and the rest
    are zero and masked, so no clip is ever a duplicate.

    Returns clips ``[num_clips, D]`` float32 and mask ``[num_clips]`` bool (True = valid, a prefix).
    """
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"pool_clips needs [T > 0, D] features, got shape {feats.shape}")
    if num_clips <= 0:
        raise ValueError(f"num_clips must be positive, got {num_clips}")
    t, d = feats.shape
    clips = np.zeros((num_clips, d), dtype=np.float32)
    mask = np.zeros(num_clips, dtype=bool)
    if t < num_clips:
        clips[:t] = feats
        mask[:t] = True
        return clips, mask
    edges = np.round(np.arange(num_clips + 1) * t / num_clips).astype(np.int64)
    # float64 sums of rows edges[k]:edges[k+1] (the single row edges[k] for an empty bin), added row
    # after row in the order np.add.reduceat adds them (bit-identical: tested), but vectorised across
    # the bins: step j adds the j-th row of every bin that has one
    starts, lengths = edges[:-1], np.diff(edges)
    sums = feats[starts].astype(np.float64)
    for j in range(1, int(lengths.max())):
        np.add(sums, feats[np.minimum(starts + j, t - 1)], out=sums, where=(lengths > j)[:, None])
    counts = np.maximum(np.diff(edges), 1)
    clips[:] = sums / counts[:, None]
    mask[:] = True
    return clips, mask


def chunk_clips(feats: np.ndarray, num_valid: int, num_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """DiDeMo: the first ``num_valid`` rows (5-second chunks) as clips, zero-padded to ``num_clips``.

    Returns clips ``[num_clips, D]`` float32 and mask ``[num_clips]`` (first num_valid True).
    """
    if not 0 < num_valid <= min(feats.shape[0], num_clips):
        raise ValueError(f"need 0 < num_valid={num_valid} <= rows={feats.shape[0]} and <= "
                         f"num_clips={num_clips}")
    clips = np.zeros((num_clips, feats.shape[1]), dtype=np.float32)
    clips[:num_valid] = feats[:num_valid]
    mask = np.zeros(num_clips, dtype=bool)
    mask[:num_valid] = True
    return clips, mask
