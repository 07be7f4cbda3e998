"""A synthetic data set in the ActivityNet layout, sized for the data and memory benchmarks.

Files (what `fsan_lightning.data.readers` and `GroundingDataModule(dataset="activitynet")` read):
train.json, val_1.json, val_2.json (``{vid: {duration, timestamps, sentences}}``) and
sub_activitynet_v1-3.c3d.hdf5 (``<vid>/c3d_features`` float32 [T, dim], T uniform in
[min_rows, max_rows]). Values are Gaussian noise: the pipeline's cost does not depend on them, and
noise is fast to make (the learnable world of `fsan_lightning.data.synthetic` is ~5x slower to
generate at this size). A world is cached under its parameters; ``world.json`` is written last.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FEATURES_FILE = "sub_activitynet_v1-3.c3d.hdf5"
SPLIT_FILES = {"train": "train.json", "val": "val_1.json", "test": "val_2.json"}
MARKER = "world.json"
_SUBJECTS = ["a man", "a woman", "the boy", "a girl", "someone", "the person"]
_VERBS = ["slices", "washes", "throws", "opens", "paints", "carries", "kicks", "folds", "lifts", "cleans"]
_ADJECTIVES = ["red", "blue", "green", "small", "large", "wooden", "old", "shiny"]
_NOUNS = ["tomato", "ball", "box", "door", "bottle", "chair", "shirt", "book", "bucket", "guitar"]
_PLACES = ["in the kitchen", "in the garden", "on the street", "at the beach", "in the park", ""]


@dataclass(frozen=True)
class WorldSpec:
    """Sizes of a benchmark world (videos per split, queries per video, feature rows and width)."""

    train_videos: int = 250
    val_videos: int = 10
    test_videos: int = 10
    queries_per_video: int = 3
    min_rows: int = 100
    max_rows: int = 300
    dim: int = 500
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def scaled(self, factor: int) -> WorldSpec:
        """The same world with ``factor`` times as many training videos (and queries)."""
        return WorldSpec(**{**asdict(self), "train_videos": self.train_videos * factor})


def ensure_world(root: str | Path, spec: WorldSpec) -> Path:
    """The world's folder ``root/<spec key>``, generated unless a complete one is there."""
    out = Path(root) / f"world_{spec.train_videos}_{spec.key()}"
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == asdict(spec):
        return out
    write_world(out, spec)
    return out


def write_world(out: str | Path, spec: WorldSpec) -> dict:
    """Write the world into ``out``; returns the summary also written to ``out/world.json``."""
    import h5py

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    rng = np.random.default_rng(spec.seed)
    counts = {"train": spec.train_videos, "val": spec.val_videos, "test": spec.test_videos}
    tmp = out / (FEATURES_FILE + ".tmp")
    rows_total = 0
    with h5py.File(tmp, "w") as f:
        for split, n in counts.items():
            records = {}
            for i in range(n):
                vid = f"v_bench_{split}{i:06d}"
                rows = int(rng.integers(spec.min_rows, spec.max_rows + 1))
                rows_total += rows
                f.create_dataset(f"{vid}/c3d_features", data=rng.standard_normal((rows, spec.dim),
                                                                                  dtype=np.float32))
                records[vid] = _annotation(rng, float(rows), spec.queries_per_video)
            (out / SPLIT_FILES[split]).write_text(json.dumps(records))
    tmp.replace(out / FEATURES_FILE)
    summary = {"spec": asdict(spec), "rows": rows_total,
               "queries": {s: n * spec.queries_per_video for s, n in counts.items()},
               "feature_bytes": (out / FEATURES_FILE).stat().st_size}
    (out / MARKER).write_text(json.dumps(summary, indent=1))
    return summary


def _annotation(rng: np.random.Generator, duration: float, queries: int) -> dict:
    stamps, sentences = [], []
    for _ in range(queries):
        s = float(rng.uniform(0, 0.8 * duration))
        e = float(min(duration, s + rng.uniform(0.05, 0.5) * duration))
        stamps.append([round(s, 2), round(max(e, s + 1.0), 2)])
        # 1-3 clauses of 5-8 words: 6-26 words, ActivityNet's range (mean ~13), so that batches
        # are padded to max_tokens = 20 as the real ones are
        clauses = []
        for k in range(int(rng.integers(1, 4))):
            words = ["then" if k else "", str(rng.choice(_SUBJECTS)), str(rng.choice(_VERBS)), "the",
                     str(rng.choice(_ADJECTIVES)), str(rng.choice(_NOUNS)), str(rng.choice(_PLACES))]
            clauses.append(" ".join(w for w in words if w))
        sentences.append(", ".join(clauses).capitalize() + ".")
    return {"duration": duration, "timestamps": stamps, "sentences": sentences}
