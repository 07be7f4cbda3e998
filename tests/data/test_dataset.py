"""GroundingDataset items, collate (the batch contract of docs/architecture.md), negatives, sampler."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fsan_lightning.data.dataset import EpochSampler, GroundingDataset, collate
from fsan_lightning.data.features import HDF5FeatureStore
from fsan_lightning.data.records import Query
from fsan_lightning.data.text import Vocab

TRAIN_KEYS = {"video", "video_mask", "tokens", "token_mask", "content_mask", "duration", "qidx", "vid", "qid",
              "query", "neg_tokens", "neg_token_mask", "neg_content_mask"}
EVAL_KEYS = {"video", "video_mask", "tokens", "token_mask", "content_mask", "duration", "qidx", "vid", "qid",
             "query", "gt", "gt_all"}

SENTENCES = ["the man slices a tomato", "a dog runs in the park", "someone washes the red cup",
             "a girl throws the ball", "the boy kicks a box", "zzqx qqzx", "?!", "he opens the door slowly"]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "f.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for i, t in enumerate([3, 10, 40, 7, 12]):
            f[f"v{i}/c3d_features"] = rng.normal(size=(t, 8)).astype(np.float32)
    return HDF5FeatureStore(path)


def make_queries():
    return [Query(f"v{i % 5}#{i}", f"v{i % 5}", s, 20.0 + i, ((1.0, 5.0 + i),) if i != 3 else
                  ((1.0, 5.0), (2.0, 6.0), (0.0, 4.0)))
            for i, s in enumerate(SENTENCES)]


@pytest.fixture
def vocab():
    return Vocab.build(SENTENCES[:5])


def test_train_batch_contract(store, vocab):
    ds = GroundingDataset(make_queries(), store, vocab, num_clips=5, max_tokens=4, train=True, seed=3)
    batch = collate([ds[i] for i in range(len(ds))])
    assert set(batch) == TRAIN_KEYS  # no gt / gt_all: training batches carry no timestamps
    b = len(ds)
    assert batch["video"].dtype == torch.float32 and batch["video"].shape == (b, 5, 8)
    assert batch["video_mask"].dtype == torch.bool and batch["video_mask"].shape == (b, 5)
    assert batch["video_mask"][0].tolist() == [True, True, True, False, False]  # v0 has 3 rows
    assert (batch["video"][0, 3:] == 0).all()
    assert batch["video_mask"][1:5].all()
    for key in ("tokens", "neg_tokens"):
        assert batch[key].dtype == torch.int64 and batch[key].shape[0] == b and batch[key].shape[1] <= 4
    for key in ("token_mask", "content_mask", "neg_token_mask", "neg_content_mask"):
        assert batch[key].dtype == torch.bool
    assert batch["duration"].dtype == torch.float32 and batch["duration"].tolist() == [20.0 + i for i in range(b)]
    assert batch["qidx"].dtype == torch.int64 and batch["qidx"].tolist() == list(range(b))
    assert batch["vid"][:2] == ["v0", "v1"] and batch["qid"][0] == "v0#0" and batch["query"][0] == SENTENCES[0]
    # "the man slices a" (max 4 tokens): content = man, slices
    assert batch["tokens"][0].tolist() == vocab.encode(["the", "man", "slices", "a"])
    assert batch["content_mask"][0].tolist() == [False, True, True, False]
    # "zzqx qqzx": unknown words -> id 1, still content words; "?!" -> one unknown token
    assert batch["tokens"][5].tolist()[:2] == [1, 1] and batch["token_mask"][5].tolist()[:3] == [True, True, False]
    assert batch["tokens"][6].tolist()[:2] == [1, 0] and batch["token_mask"][6].sum() == 1
    assert ((batch["tokens"] != 0) == batch["token_mask"]).all()
    assert (batch["content_mask"] <= batch["token_mask"]).all()
    # binding negatives on: this split's siblings offer no well-formed swap, so every item carries its own
    # sentence in their place, marked as absent
    ds = GroundingDataset(make_queries(), store, vocab, num_clips=5, max_tokens=4, train=True, seed=3,
                          binding_tolerance=0)
    bound = collate([ds[i] for i in range(len(ds))])
    assert set(bound) == TRAIN_KEYS | {"bind_tokens", "bind_token_mask", "bind_content_mask", "bind_ok"}
    assert bound["bind_ok"].dtype == torch.bool and not bound["bind_ok"].any()
    assert torch.equal(bound["bind_tokens"], bound["tokens"])


def test_binding_negative_items(store, vocab):
    sentences = ["the man slices a red tomato", "the man washes a blue tomato", "a dog runs", "a cat runs"]
    queries = [Query(f"v{i // 2}#{i % 2}", f"v{i // 2}", s, 30.0, ((1.0, 5.0),)) for i, s in enumerate(sentences)]
    ds = GroundingDataset(queries, store, Vocab.build(sentences), num_clips=4, max_tokens=10, train=True,
                          seed=1, binding_tolerance=0)
    # "the man slices a red tomato" beside "the man washes a blue tomato": slices -> washes or red -> blue,
    # drawn per epoch
    seen = set()
    for epoch in range(12):
        it = ds[(0, epoch)]
        assert it["bind_ok"] and torch.equal(it["bind_tokens"], ds[(0, epoch)]["bind_tokens"])
        seen.add(tuple(it["bind_tokens"].tolist()))
    encode = Vocab.build(sentences).encode
    assert seen == {tuple(encode(s.split())) for s in ("the man washes a red tomato", "the man slices a blue tomato")}
    assert not ds[(2, 0)]["bind_ok"]  # "a dog runs" -> "a cat runs" is its sibling: no binding negative


def test_sibling_items(store, vocab):
    sentences = ["the man slices a red tomato", "the man washes a blue tomato", "a dog runs"]
    queries = [Query(f"v{i // 2}#{i % 2}", f"v{i // 2}", s, 30.0, ((1.0, 5.0),)) for i, s in enumerate(sentences)]
    ds = GroundingDataset(queries, store, Vocab.build(sentences), num_clips=4, max_tokens=10, train=True,
                          seed=1, siblings=True)
    assert all(torch.equal(ds[(0, e)]["sib_tokens"], ds[(1, 0)]["tokens"]) for e in range(3))
    assert ds[(0, 0)]["sib_ok"] and torch.equal(ds[(0, 0)]["sib_content"], ds[(1, 0)]["content"])
    assert not ds[(2, 0)]["sib_ok"] and torch.equal(ds[(2, 0)]["sib_tokens"], ds[(2, 0)]["tokens"])  # alone in v1
    batch = collate([ds[i] for i in range(3)])
    assert batch["sib_ok"].tolist() == [True, True, False]
    assert batch["sib_token_mask"].dtype == torch.bool and batch["sib_tokens"].shape[0] == 3
    assert "sib_tokens" not in collate([GroundingDataset(queries, store, Vocab.build(sentences), num_clips=4,
                                                         max_tokens=10, train=True)[0]])


def test_eval_batch_contract(store, vocab):
    ds = GroundingDataset(make_queries(), store, vocab, num_clips=6, max_tokens=20, train=False)
    batch = collate([ds[i] for i in (0, 3, 4)])
    assert set(batch) == EVAL_KEYS
    assert batch["gt"].dtype == torch.float32 and batch["gt"].tolist() == [[1.0, 5.0], [1.0, 5.0], [1.0, 9.0]]
    assert batch["gt_all"].shape == (3, 3, 2)
    assert batch["gt_all"][1].tolist() == [[1.0, 5.0], [2.0, 6.0], [0.0, 4.0]]
    assert batch["gt_all"][0].tolist() == [[1.0, 5.0], [-1.0, -1.0], [-1.0, -1.0]]


def test_video_is_the_pooled_store_features(store, vocab):
    from fsan_lightning.data.features import pool_clips

    ds = GroundingDataset(make_queries(), store, vocab, num_clips=6, max_tokens=20, train=False)
    clips, mask = pool_clips(store.read("v2"), 6)
    item = ds[2]
    np.testing.assert_array_equal(item["video"].numpy(), clips)
    assert item["video_mask"].tolist() == mask.tolist()


def test_didemo_chunked_items(tmp_path, vocab):
    path = tmp_path / "d.hdf5"
    with h5py.File(path, "w") as f:
        f["a/c3d_features"] = np.arange(12, dtype=np.float32).reshape(6, 2)
    qs = [Query("1", "a", "the man", 25.0, ((0.0, 5.0),) * 4), Query("2", "a", "a dog", 30.0, ((5.0, 10.0),))]
    ds = GroundingDataset(qs, HDF5FeatureStore(path), vocab, num_clips=6, max_tokens=20, train=False, chunked=True)
    assert ds[0]["video_mask"].tolist() == [True] * 5 + [False]
    assert ds[1]["video_mask"].all()
    assert (ds[0]["video"][5] == 0).all() and ds[0]["video"][4].tolist() == [8.0, 9.0]


def test_negatives_are_deterministic_and_from_another_video(store, vocab):
    qs = make_queries()
    ds = GroundingDataset(qs, store, vocab, num_clips=4, max_tokens=20, train=True, seed=7)
    again = GroundingDataset(qs, store, vocab, num_clips=4, max_tokens=20, train=True, seed=7)
    other_seed = GroundingDataset(qs, store, vocab, num_clips=4, max_tokens=20, train=True, seed=8)
    e0 = [ds.negative_index(i, 0) for i in range(len(ds))]
    assert e0 == [again.negative_index(i, 0) for i in range(len(ds))]
    changed_epoch = changed_seed = 0
    for epoch in range(20):
        for i in range(len(ds)):
            j = ds.negative_index(i, epoch)
            assert qs[j].vid != qs[i].vid
            changed_epoch += j != ds.negative_index(i, epoch + 1)
            changed_seed += j != other_seed.negative_index(i, epoch)
    n = 20 * len(ds)
    assert changed_epoch > n / 2 and changed_seed > n / 2  # 6-7 candidates each: rarely equal by chance
    # uniform over the other videos' queries: every candidate shows up
    assert {ds.negative_index(0, e) for e in range(200)} == {j for j, q in enumerate(qs) if q.vid != "v0"}
    # the item carries the negative's tokens; an int index uses set_epoch's epoch
    ds.set_epoch(5)
    item = ds[2]
    assert item["neg_tokens"].tolist() == ds._tokens[ds.negative_index(2, 5)].tolist()
    assert ds[(2, 5)]["neg_tokens"].tolist() == item["neg_tokens"].tolist()


def test_training_needs_two_videos(store, vocab):
    qs = [Query("a#0", "v1", "a man", 10.0, ((1.0, 2.0),)), Query("a#1", "v1", "a dog", 10.0, ((1.0, 2.0),))]
    with pytest.raises(ValueError, match="at least 2 videos"):
        GroundingDataset(qs, store, vocab, num_clips=4, max_tokens=20, train=True)
    GroundingDataset(qs, store, vocab, num_clips=4, max_tokens=20, train=False)  # fine for evaluation


def test_epoch_sampler():
    data = list(range(10))
    s = EpochSampler(data, seed=1)
    first = list(s)
    assert all(e == 0 for _, e in first) and sorted(i for i, _ in first) == data
    assert list(s) == first
    s.set_epoch(1)
    second = list(s)
    assert all(e == 1 for _, e in second) and [i for i, _ in second] != [i for i, _ in first]
    assert [i for i, _ in EpochSampler(data, shuffle=False)] == data
    shards = [list(EpochSampler(data, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(i for sh in shards for i, _ in sh) == data


def test_epoch_reaches_persistent_workers(store, vocab):
    """The epoch travels with each index, so persistent workers see the new epoch's negatives."""
    ds = GroundingDataset(make_queries(), store, vocab, num_clips=4, max_tokens=20, train=True, seed=2)
    sampler = EpochSampler(ds, seed=2)
    loader = DataLoader(ds, batch_size=3, sampler=sampler, collate_fn=collate, num_workers=2,
                        persistent_workers=True, multiprocessing_context="fork")
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch)
        for batch in loader:
            for row, qidx in enumerate(batch["qidx"].tolist()):
                expect = ds._tokens[ds.negative_index(qidx, epoch)]
                got = batch["neg_tokens"][row][batch["neg_token_mask"][row]]
                assert got.tolist() == expect.tolist()
