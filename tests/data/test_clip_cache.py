"""ClipCache: the LRU order, the byte budget, the counters, and items equal with and without it."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from fsan_lightning.data.clip_cache import ClipCache
from fsan_lightning.data.dataset import GroundingDataset, collate
from fsan_lightning.data.features import HDF5FeatureStore
from fsan_lightning.data.records import Query
from fsan_lightning.data.text import Vocab

MIB = 2**20


def entry(mib: float):
    """An entry of (about) ``mib`` MiB: clips float32 [n, 1] and a mask bool [1]."""
    return np.zeros((int(mib * MIB) // 4 - 1, 1), np.float32), np.ones(4, bool)


def test_hits_misses_and_least_recently_used_out():
    cache = ClipCache(max_mb=3)
    made = []

    def make(key):
        return lambda: made.append(key) or entry(1)

    for key in ["a", "b", "c"]:
        cache.get(key, make(key))
    assert len(cache) == 3 and cache.nbytes == 3 * MIB and made == ["a", "b", "c"]
    cache.get("a", make("a"))            # a hit: "a" becomes the most recently used
    cache.get("d", make("d"))            # over budget: the least recently used, "b", goes
    assert made == ["a", "b", "c", "d"]
    assert "b" not in cache and all(k in cache for k in "acd")
    assert (cache.hits, cache.misses, cache.evictions) == (1, 4, 1)
    assert cache.nbytes == 3 * MIB


def test_a_hit_returns_the_stored_arrays():
    cache = ClipCache(max_mb=1)
    first = cache.get("v", lambda: (np.arange(6, dtype=np.float32).reshape(3, 2), np.ones(3, bool)))
    again = cache.get("v", lambda: pytest.fail("a hit must not recompute"))
    assert again[0] is first[0] and again[1] is first[1]


def test_an_entry_over_the_whole_budget_is_returned_not_kept():
    cache = ClipCache(max_mb=1)
    cache.get("small", lambda: entry(0.5))
    big = cache.get("big", lambda: entry(2))
    assert big[0].nbytes > MIB
    assert "big" not in cache and "small" in cache and cache.evictions == 0


def test_an_error_propagates_and_nothing_is_stored():
    cache = ClipCache(max_mb=1)

    def broken():
        raise ValueError("bad features of v7")

    with pytest.raises(ValueError, match="v7"):
        cache.get("v7", broken)
    assert "v7" not in cache and cache.nbytes == 0 and cache.misses == 1


def test_pickling_drops_the_entries_and_keeps_the_budget():
    cache = ClipCache(max_mb=2)
    cache.get("a", lambda: entry(1))
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.nbytes == 0 and copy.max_bytes == 2 * MIB
    assert len(cache) == 1


@pytest.mark.parametrize("budget", [0, -1.0])
def test_the_budget_must_be_positive(budget):
    with pytest.raises(ValueError, match="positive budget"):
        ClipCache(budget)


class CountingStore(HDF5FeatureStore):
    def __init__(self, path):
        super().__init__(path)
        self.reads: list[str] = []

    def read(self, vid, dim=None):
        self.reads.append(vid)
        return super().read(vid, dim)


@pytest.mark.parametrize("chunked", [False, True])
def test_items_with_the_cache_equal_items_without_and_each_video_is_read_once(tmp_path, chunked):
    path = tmp_path / "f.hdf5"
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        for i, t in enumerate([3, 10, 40]):
            f[f"v{i}/c3d_features"] = rng.normal(size=(t, 5)).astype(np.float32)
    sentences = ["the man slices a tomato", "a dog runs", "someone washes the cup", "a girl throws it",
                 "the boy kicks a box", "he opens the door"]
    # DiDeMo mode reads round(duration / 5) chunk rows: durations of 15 s, i.e. 3 rows, fit every video
    qs = [Query(f"q{i}", f"v{i % 3}", s, 15.0, ((0.0, 5.0),)) for i, s in enumerate(sentences)]
    vocab = Vocab.build(sentences)
    plain_store, cached_store = CountingStore(path), CountingStore(path)
    kwargs = dict(num_clips=4, max_tokens=20, train=True, seed=1, chunked=chunked)
    plain = GroundingDataset(qs, plain_store, vocab, **kwargs)
    cache = ClipCache(max_mb=1)
    cached = GroundingDataset(qs, cached_store, vocab, clip_cache=cache, **kwargs)
    for epoch in range(2):
        a = collate([plain[(i, epoch)] for i in range(len(qs))])
        b = collate([cached[(i, epoch)] for i in range(len(qs))])
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            else:
                assert value == b[key], key
    assert len(plain_store.reads) == 2 * len(qs)
    assert sorted(cached_store.reads) == ["v0", "v1", "v2"]
    assert (cache.hits, cache.misses) == (2 * len(qs) - 3, 3)
