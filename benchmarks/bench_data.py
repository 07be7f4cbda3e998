"""Benchmark 3: the data pipeline, HDF5 -> pooling -> tokenisation -> collate, in one process.

A pass builds `GroundingDataset` over the training split (tokenising every sentence: the once-per-
sample text work) and iterates one epoch through a ``DataLoader(num_workers=0)`` with the shuffled
`EpochSampler` and `collate`: what one DataLoader worker does. The baseline reads the same rows in
the same order with plain h5py (``f[key][()]``). Passes alternate (raw, pipeline, raw, ...) after a
warm-up read, so both see the same page cache and the same load; the medians are compared. One
torch thread, as in a DataLoader worker.
"""
from __future__ import annotations

import time
from pathlib import Path

import h5py
from torch.utils.data import DataLoader

from fsan_lightning.data.dataset import EpochSampler, GroundingDataset, collate
from fsan_lightning.data.features import DEFAULT_KEY_TEMPLATE, HDF5FeatureStore
from fsan_lightning.data.readers import read_annotations
from fsan_lightning.data.text import Vocab

from .common import PAPER_BATCH, PAPER_NS, PAPER_NV, load_average, median, using_threads
from .world import FEATURES_FILE, SPLIT_FILES


class Pipeline:
    """The training split of a world as the framework serves it, and the raw read of the same rows."""

    def __init__(self, world_dir: str | Path, batch: int = PAPER_BATCH, num_clips: int = PAPER_NV,
                 max_tokens: int = PAPER_NS, seed: int = 0):
        world_dir = Path(world_dir)
        self.features = world_dir / FEATURES_FILE
        self.queries, _ = read_annotations("activitynet", world_dir / SPLIT_FILES["train"])
        self.vocab = Vocab.build([q.sentence for q in self.queries], max_tokens=max_tokens)
        self.batch, self.num_clips, self.max_tokens, self.seed = batch, num_clips, max_tokens, seed
        self.store = HDF5FeatureStore(self.features)
        self.dim = self.store.shape(self.queries[0].vid)[1]
        self.order = [i for i, _ in EpochSampler(self._dataset(), shuffle=True, seed=seed)]

    def _dataset(self) -> GroundingDataset:
        return GroundingDataset(self.queries, self.store, self.vocab, num_clips=self.num_clips,
                                max_tokens=self.max_tokens, train=True, seed=self.seed, dim=self.dim)

    def pipeline_pass(self) -> int:
        """Tokenise every query, then one epoch of collated batches; returns the samples served."""
        ds = self._dataset()
        loader = DataLoader(ds, batch_size=self.batch, sampler=EpochSampler(ds, shuffle=True, seed=self.seed),
                            collate_fn=collate, num_workers=0)
        served = 0
        for batch in loader:
            served += batch["video"].shape[0]
        return served

    def raw_pass(self) -> int:
        """Read the same videos' rows in the same order with h5py; returns the samples read."""
        with h5py.File(self.features, "r") as f:
            for i in self.order:
                f[DEFAULT_KEY_TEMPLATE.format(vid=self.queries[i].vid)][()]
        return len(self.order)


def run(world_dir: str | Path, batch: int = PAPER_BATCH, passes: int = 3, log=print) -> dict:
    """Samples/s of the pipeline and of the raw read (medians of ``passes`` alternating passes).

    Runs at 1 torch thread, the setting of a DataLoader worker process.
    """
    with using_threads(1):
        return _run(world_dir, batch, passes, log)


def _run(world_dir, batch, passes, log) -> dict:
    pipe = Pipeline(world_dir, batch)
    pipe.raw_pass()  # warm the page cache
    raw_s, pipe_s = [], []
    for _ in range(passes):
        for fn, out in ((pipe.raw_pass, raw_s), (pipe.pipeline_pass, pipe_s)):
            t0 = time.perf_counter()
            n = fn()
            out.append(time.perf_counter() - t0)
            if n != len(pipe.order):
                raise RuntimeError(f"a pass served {n} samples, expected {len(pipe.order)}")
    n = len(pipe.order)
    raw_rate, pipe_rate = n / median(raw_s), n / median(pipe_s)
    log(f"  data: {n} samples, raw h5py {raw_rate:8.0f}/s, pipeline {pipe_rate:8.0f}/s "
        f"({pipe_rate / raw_rate:.0%} of raw)")
    return {"samples": n, "batch": batch, "num_clips": pipe.num_clips, "feature_dim": pipe.dim,
            "raw_samples_per_s": round(raw_rate, 1), "pipeline_samples_per_s": round(pipe_rate, 1),
            "pipeline_over_raw": round(pipe_rate / raw_rate, 3), "raw_pass_s": [round(t, 3) for t in raw_s],
            "pipeline_pass_s": [round(t, 3) for t in pipe_s], "threads": 1, "loadavg": load_average()}
