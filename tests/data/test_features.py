"""Feature stores (HDF5 / .npy folder, lazy per process, picklable), shape/value checks, pooling."""
from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from fsan_lightning.data.errors import DataFormatError
from fsan_lightning.data.features import (
    HDF5FeatureStore,
    MissingFeaturesError,
    NpyFolderFeatureStore,
    check_features,
    chunk_clips,
    open_feature_store,
    pool_clips,
)


def rows(t, d=2):
    """Row i = [i, 10 i, ...]: bin means are easy to compute by hand."""
    return (np.arange(t, dtype=np.float32)[:, None] * (10.0 ** np.arange(d, dtype=np.float32))[None, :])


# ---------------------------------------------------------------- pooling, hand-computed

def test_pool_hand_computed_5_rows_to_2():
    # edges = round([0, 2.5, 5]) = [0, 2, 5] (half to even): bins {0,1} and {2,3,4}
    clips, mask = pool_clips(rows(5), 2)
    np.testing.assert_allclose(clips, [[0.5, 5.0], [3.0, 30.0]])
    assert mask.tolist() == [True, True] and clips.dtype == np.float32


def test_pool_hand_computed_7_rows_to_3():
    # edges = round([0, 2.33, 4.67, 7]) = [0, 2, 5, 7]: bins {0,1}, {2,3,4}, {5,6}
    clips, _ = pool_clips(rows(7), 3)
    np.testing.assert_allclose(clips[:, 0], [0.5, 3.0, 5.5])


def test_pool_identity_and_fewer_rows_than_clips():
    clips, mask = pool_clips(rows(4), 4)
    np.testing.assert_array_equal(clips, rows(4))
    clips, mask = pool_clips(rows(3), 5)
    np.testing.assert_array_equal(clips[:3], rows(3))
    np.testing.assert_array_equal(clips[3:], 0)
    assert mask.tolist() == [True, True, True, False, False]


def test_pool_rejects_bad_input():
    with pytest.raises(ValueError):
        pool_clips(np.zeros((0, 3), np.float32), 4)
    with pytest.raises(ValueError):
        pool_clips(rows(3), 0)


def reference_pool(x, n):
    """Literal loop of the documented rule."""
    t = len(x)
    if t < n:
        out = np.zeros((n, x.shape[1]))
        out[:t] = x
        return out, np.arange(n) < t
    out = np.zeros((n, x.shape[1]))
    for k in range(n):
        a, b = int(np.round(k * t / n)), int(np.round((k + 1) * t / n))
        out[k] = x[a:b].mean(0) if b > a else x[min(a, t - 1)]
    return out, np.ones(n, bool)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.integers(1, 70), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_pool_property(t, n, d, seed):
    x = np.random.default_rng(seed).normal(size=(t, d)).astype(np.float32)
    clips, mask = pool_clips(x, n)
    ref, ref_mask = reference_pool(x, n)
    assert clips.shape == (n, d) and mask.shape == (n,)
    np.testing.assert_allclose(clips, ref, rtol=1e-5, atol=1e-5)
    assert mask.tolist() == ref_mask.tolist()
    assert mask.sum() == min(t, n) and mask[: mask.sum()].all()  # a prefix
    assert (clips[~mask] == 0).all()
    assert (clips[mask] >= x.min(0) - 1e-5).all() and (clips[mask] <= x.max(0) + 1e-5).all()


def test_chunk_clips_didemo():
    clips, mask = chunk_clips(rows(6), 5, 6)
    np.testing.assert_array_equal(clips[:5], rows(5))
    assert (clips[5] == 0).all() and mask.tolist() == [True] * 5 + [False]
    with pytest.raises(ValueError):
        chunk_clips(rows(4), 5, 6)


# ---------------------------------------------------------------- stores

@pytest.fixture
def h5file(tmp_path):
    path = tmp_path / "feats.hdf5"
    with h5py.File(path, "w") as f:
        f["a/c3d_features"] = rows(10, 4)
        f["b/c3d_features"] = rows(3, 4) + 1
        bad = rows(5, 4)
        bad[2, 1] = np.nan
        f["nanvid/c3d_features"] = bad
        f["wide/c3d_features"] = rows(5, 6)
        f["empty/c3d_features"] = np.zeros((0, 4), np.float32)
        f["other/thing"] = rows(2, 4)  # not a feature entry under the template
    return path


def test_hdf5_store_reads_lazily(h5file):
    store = HDF5FeatureStore(h5file)
    assert store._file is None  # nothing opened at construction
    assert store.shape("a") == (10, 4) and store.shape("zzz") is None
    np.testing.assert_array_equal(store.read("a"), rows(10, 4))
    assert store.read("b").dtype == np.float32
    assert store.vids() == ["a", "b", "empty", "nanvid", "wide"]
    store.close()
    assert store._file is None


def test_hdf5_store_errors_name_video_and_file(h5file):
    store = HDF5FeatureStore(h5file)
    with pytest.raises(MissingFeaturesError, match=r"feats.hdf5, record zzz, key 'zzz/c3d_features'"):
        store.read("zzz")
    with pytest.raises(DataFormatError, match=r"feats.hdf5, record nanvid.*NaN or inf in 1 of 5 rows \(first row 2\)"):
        store.read("nanvid")
    with pytest.raises(DataFormatError, match=r"record empty.*zero rows"):
        store.read("empty")
    with pytest.raises(DataFormatError, match=r"record wide.*width 6, expected 4"):
        store.read("wide", dim=4)
    with pytest.raises(DataFormatError, match=r"record wide.*width 6, expected 4"):
        check_features(store, {"a": 1, "wide": 1})
    with pytest.raises(DataFormatError, match=r"record empty.*zero rows"):
        check_features(store, {"a": 1, "empty": 1})
    with pytest.raises(DataFormatError, match=r"record b.*3 rows, fewer than the 6 needed"):
        check_features(store, {"b": 6})
    assert check_features(store, {"a": 1, "b": 2, "gone": 1, "alsogone": 1}) == (["alsogone", "gone"], 4)


def test_hdf5_key_template_and_pickling(tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["v1"] = rows(4, 3)
        f["grp/v2"] = rows(2, 3)
    store = open_feature_store(path, "{vid}")
    assert isinstance(store, HDF5FeatureStore) and store.vids() == ["v1"]
    assert store.shape("v1") == (4, 3)
    clone = pickle.loads(pickle.dumps(store))  # an open handle is not pickled
    assert clone._file is None and store._file is not None
    np.testing.assert_array_equal(clone.read("v1"), rows(4, 3))
    assert open_feature_store(path, "grp/{vid}").vids() == ["v2"]
    with pytest.raises(ValueError, match="must contain"):
        HDF5FeatureStore(path, "features")
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        open_feature_store(tmp_path / "nothere.h5")
    notes = tmp_path / "notes.h5"
    notes.write_text("not hdf5")
    with pytest.raises(DataFormatError, match="cannot open as HDF5"):
        open_feature_store(notes).shape("x")


def test_npy_folder_store(tmp_path):
    np.save(tmp_path / "a.npy", rows(6, 3))
    np.save(tmp_path / "n.npy", np.full((2, 3), np.inf, np.float32))
    store = open_feature_store(tmp_path)
    assert isinstance(store, NpyFolderFeatureStore)
    assert store.vids() == ["a", "n"] and store.shape("a") == (6, 3) and store.shape("b") is None
    np.testing.assert_array_equal(store.read("a"), rows(6, 3))
    with pytest.raises(DataFormatError, match=r"record n, key 'n.npy'.*NaN or inf"):
        store.read("n")
    with pytest.raises(MissingFeaturesError, match="record b"):
        store.read("b")


class PidDataset(Dataset):
    def __init__(self, store, vids):
        self.store, self.vids = store, vids

    def __len__(self):
        return len(self.vids)

    def __getitem__(self, i):
        x = self.store.read(self.vids[i])
        return torch.from_numpy(x), os.getpid(), self.store._pid


def test_hdf5_two_workers_open_their_own_handle(h5file):
    store = HDF5FeatureStore(h5file)
    store.shape("a")  # opened in the parent (as setup's checks do), then closed
    store.close()
    ds = PidDataset(store, ["a", "b"] * 4)
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    seen = list(loader)
    parent = os.getpid()
    worker_pids = {pid for _, pid, _ in seen}
    assert len(worker_pids) == 2 and parent not in worker_pids
    assert all(pid == opener for _, pid, opener in seen)  # each worker opened the file itself
    for (x, _, _), vid in zip(seen, ds.vids):
        np.testing.assert_array_equal(x.numpy(), store.read(vid))
    store.close()


def test_store_inherited_handle_is_reopened_after_fork(h5file):
    """Even if the parent still holds an open handle, a worker opens its own."""
    store = HDF5FeatureStore(h5file)
    store.read("a")
    loader = DataLoader(PidDataset(store, ["a", "b"]), batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    pids = [(pid, opener) for _, pid, opener in loader]
    assert all(pid == opener != os.getpid() for pid, opener in pids)
    assert store._pid == os.getpid()  # the parent's handle is untouched
    np.testing.assert_array_equal(store.read("b"), rows(3, 4) + 1)


def test_pool_is_bit_identical_to_reduceat_on_float64():
    """The pooled clips equal the former np.add.reduceat formulation exactly (results stay pinned)."""
    rng = np.random.default_rng(3)
    for t in (64, 65, 100, 333, 1400):
        feats = (rng.standard_normal((t, 37)) * 10).astype(np.float32)
        edges = np.round(np.arange(65) * t / 64).astype(np.int64)
        ref = (np.add.reduceat(feats.astype(np.float64), edges[:-1], axis=0)
               / np.maximum(np.diff(edges), 1)[:, None]).astype(np.float32)
        assert np.array_equal(pool_clips(feats, 64)[0], ref)


def test_read_accepts_huge_finite_values_and_rejects_non_finite_ones(tmp_path):
    import h5py

    from fsan_lightning.data.errors import DataFormatError
    from fsan_lightning.data.features import HDF5FeatureStore

    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["big/c3d_features"] = np.full((4, 3), 3e38, dtype=np.float32)  # finite; their float32 sum would overflow
        bad = np.zeros((4, 3), dtype=np.float32)
        bad[2, 1] = np.nan
        f["bad/c3d_features"] = bad
    store = HDF5FeatureStore(tmp_path / "f.h5")
    assert store.read("big").shape == (4, 3)
    with pytest.raises(DataFormatError, match="NaN or inf in 1 of 4 rows"):
        store.read("bad")
