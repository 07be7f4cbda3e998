"""model=prototype and model=random: hand-built worlds with known answers, weak supervision, the pipeline."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from conftest import QUIET, compose_config, world_overrides
from fsan_lightning.baselines.prototype import fit_prototypes
from fsan_lightning.lit.baselines import PrototypeModule, RandomModule
from fsan_lightning.lit.checkpoint import load_module
from fsan_lightning.metrics import (
    didemo_candidates,
    didemo_random_baseline,
    random_baseline,
    seconds_to_chunks,
)

VOCAB = ["<pad>", "<unk>", "ball", "cup", "the"]
E0, E1, E2 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]


def hand_batch(videos, sentences, vids, *, durations=None, gts=None):
    """A collate-style batch: token ids of the words in VOCAB, 'the' a function word, all clips valid."""
    ids = [[VOCAB.index(w) for w in s.split()] for s in sentences]
    ns = max(len(t) for t in ids)
    tokens = torch.zeros(len(ids), ns, dtype=torch.int64)
    for i, t in enumerate(ids):
        tokens[i, : len(t)] = torch.tensor(t)
    video = torch.tensor(videos, dtype=torch.float32)
    batch = {
        "video": video, "video_mask": torch.ones(video.shape[:2], dtype=torch.bool),
        "tokens": tokens, "token_mask": tokens > 0, "content_mask": (tokens > 0) & (tokens != VOCAB.index("the")),
        "qidx": torch.arange(len(ids)), "vid": list(vids), "qid": [f"{v}#{i}" for i, v in enumerate(vids)],
        "query": list(sentences),
        "duration": torch.tensor(durations or [float(video.shape[1])] * len(ids), dtype=torch.float32),
    }
    if gts is not None:
        batch["gt"] = torch.tensor(gts, dtype=torch.float32)
        batch["gt_all"] = batch["gt"][:, None, :].clone()
    return batch


TRAIN = hand_batch([[E0, E0, E2, E2], [E1, E1, E2, E2], [E0, E0, E2, E2]], ["the ball", "the cup", "ball"],
                   ["v_ball", "v_cup", "v_ball"])  # v_ball twice: one video, counted once
# eval videos of 6 clips, 12 s. A: e2 e2 | e1 | e0 e0 | e2, "ball" = clips 3-4 = [6, 10] s. B: e2 | e1 e1 | e0 | e2 e2,
# "cup" = clips 1-2 = [2, 6] s. Each has more evidence for than against its word, so the centred neutral clips
# (cosine 0) score below 0 and the max-sum run is exactly the word's clips.
EVAL_VIDEO = [E2, E2, E1, E0, E0, E2]
EVAL_VIDEO_B = [E2, E1, E1, E0, E2, E2]
EVAL = hand_batch([EVAL_VIDEO, EVAL_VIDEO_B, EVAL_VIDEO], ["the ball", "the cup", "the"], ["v_a", "v_b", "v_a"],
                  durations=[12.0] * 3, gts=[[6.0, 10.0], [2.0, 6.0], [0.0, 12.0]])


def quiet_trainer():
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False)


def fitted_prototype(**kwargs) -> PrototypeModule:
    module = PrototypeModule(vocab=VOCAB, video_dim=3, min_videos=1, **kwargs)
    module.fit_from_batches([TRAIN])
    return module


def test_prototype_fit_hand_case():
    m = fitted_prototype()
    # per dimension over the 8 clips of the 2 distinct videos: dims 0, 1 mean 1/4 std sqrt(3)/4; dim 2 mean 1/2 std 1/2
    assert torch.allclose(m.feature_mean, torch.tensor([0.25, 0.25, 0.5]))
    assert torch.allclose(m.feature_std, torch.tensor([math.sqrt(3) / 4, math.sqrt(3) / 4, 0.5]))
    r = 1 / math.sqrt(2)
    assert torch.allclose(m.prototypes[VOCAB.index("ball")], torch.tensor([r, -r, 0.0]), atol=1e-6)
    assert torch.allclose(m.prototypes[VOCAB.index("cup")], torch.tensor([-r, r, 0.0]), atol=1e-6)
    assert m.prototypes[VOCAB.index("the")].abs().sum() == 0  # a function word: no prototype
    assert m.word_videos.tolist() == [0, 0, 1, 1, 0] and int(m.num_train_videos) == 2
    # min_videos=2: no word qualifies
    m2 = PrototypeModule(vocab=VOCAB, video_dim=3, min_videos=2)
    m2.fit_from_batches([TRAIN])
    assert m2.prototypes.abs().sum() == 0


def test_prototype_grounds_the_known_answer():
    m = fitted_prototype()
    ranking = m.eval_rank(EVAL)
    assert ranking.windows.shape == (3, 5, 3)
    top1 = ranking.windows[:, 0, :2].tolist()
    assert top1 == [[6.0, 10.0], [2.0, 6.0], [0.0, 12.0]]  # "the" alone knows nothing: the whole video
    # the top-5 after NMS 0.5: no two windows overlap by more than IoU 0.5
    from fsan_lightning.ops import temporal_iou
    for q in range(2):
        w = ranking.windows[q, :, :2]
        iou = temporal_iou(w[:, None], w[None])
        assert (iou[~torch.eye(5, dtype=torch.bool)] <= 0.5 + 1e-6).all()
    # the same through Lightning's test loop: metrics and prediction rows
    trainer = quiet_trainer()
    out = trainer.test(m, dataloaders=DataLoader([EVAL], batch_size=None), verbose=False)[0]
    assert out["test/R1@0.7"] == 100.0 and out["test/mIoU"] == pytest.approx(100.0)
    assert out["test/known_word_share"] == pytest.approx(2 / 3)
    rows = m.test_predictions
    assert [r["qid"] for r in rows] == EVAL["qid"] and rows[0]["pred_relevant_windows"][0][:2] == [6.0, 10.0]


def test_prototype_fit_refuses_timestamps_and_unfitted_use():
    with pytest.raises(ValueError, match="carries timestamps"):
        fit_prototypes([EVAL], len(VOCAB))
    with pytest.raises(RuntimeError, match="not fitted"):
        PrototypeModule(vocab=VOCAB, video_dim=3).eval_rank(EVAL)
    with pytest.raises(ValueError, match="model.words"):
        PrototypeModule(vocab=VOCAB, video_dim=3, words="nouns")


def test_didemo_protocol_ranks_all_21_moments():
    m = fitted_prototype(eval_protocol="didemo")
    batch = hand_batch([EVAL_VIDEO, EVAL_VIDEO_B], ["the ball", "the cup"], ["a", "b"], durations=[30.0, 25.0],
                       gts=[[15.0, 25.0], [5.0, 15.0]])
    batch["video_mask"][1, 5] = False  # a 5-chunk video
    w = m.eval_rank(batch).windows
    assert w.shape == (2, 21, 3)
    assert w[0, 0, :2].tolist() == [15.0, 25.0] and w[1, 0, :2].tolist() == [5.0, 15.0]
    for q in range(2):  # every candidate once, on the 5 s grid
        chunks = seconds_to_chunks(w[q, :, :2].double(), atol=1e-6)
        assert sorted(map(tuple, chunks.tolist())) == sorted(map(tuple, didemo_candidates().tolist()))
    assert torch.isinf(w[1, -6:, 2]).all()  # the moments that reach chunk 5 of the 5-chunk video come last


def test_random_module_one_draw_and_mean_over_draws():
    r = RandomModule(vocab=VOCAB, video_dim=3, seed=7, draws=4)
    batch = hand_batch([EVAL_VIDEO] * 3, ["ball", "cup", "the"], ["v"] * 3,
                       durations=[12.0, 30.0, 7.0], gts=[[6.0, 10.0], [4.0, 6.0], [0.0, 7.0]])
    w = r.eval_rank(batch).windows
    assert w.shape == (3, 5, 3) and torch.isnan(w[..., 2]).all()
    for q, d in enumerate([12.0, 30.0, 7.0]):
        cells = {(round(float(s) * 6 / d), round(float(e) * 6 / d) - 1) for s, e in w[q, :, :2]}
        assert len(cells) == 5 and all(0 <= s <= e < 6 for s, e in cells)  # 5 distinct segments of the grid
    # the draw depends on (seed, qidx) only, not on the batch
    single = {k: (v[1:2] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}
    assert torch.equal(r.eval_rank(single).windows[..., :2], w[1:2, :, :2])
    out = quiet_trainer().test(r, dataloaders=DataLoader([batch], batch_size=None), verbose=False)[0]
    want = random_baseline([12.0, 30.0, 7.0], [[6.0, 10.0], [4.0, 6.0], [0.0, 7.0]], num_clips=6, draws=4, seed=7)
    for key, value in want.items():
        assert out[f"test/{key}"] == pytest.approx(value, abs=1e-4)
    assert "test/one_draw/R1@0.5" in out


def test_random_module_didemo():
    r = RandomModule(vocab=VOCAB, video_dim=3, seed=3, draws=5, eval_protocol="didemo")
    batch = hand_batch([EVAL_VIDEO] * 2, ["ball", "cup"], ["v"] * 2, durations=[30.0, 25.0],
                       gts=[[15.0, 25.0], [10.0, 15.0]])
    batch["gt_all"] = torch.tensor([[[15.0, 25.0], [15.0, 20.0]], [[10.0, 15.0], [-1.0, -1.0]]])
    w = r.eval_rank(batch).windows
    for q in range(2):  # a permutation of the 21 moments
        chunks = seconds_to_chunks(w[q, :, :2].double(), atol=1e-6)
        assert sorted(map(tuple, chunks.tolist())) == sorted(map(tuple, didemo_candidates().tolist()))
    out = quiet_trainer().test(r, dataloaders=DataLoader([batch], batch_size=None), verbose=False)[0]
    want = didemo_random_baseline([[[3, 4], [3, 3]], [[2, 2], [-1, -1]]], draws=5, seed=3)
    for key, value in want.items():
        assert out[f"test/{key}"] == pytest.approx(value, abs=1e-4)


# ---------------------------------------------------------------------- on the tiny synthetic world


def _datamodule(data_dir: Path):
    from fsan_lightning.lit.datamodule import GroundingDataModule

    dm = GroundingDataModule(dataset="activitynet", data_dir=str(data_dir), num_clips=16, batch_size=8,
                             eval_batch_size=16)
    dm.setup("fit")
    return dm


def _copy_world(src: Path, dst: Path, edit_train) -> Path:
    dst.mkdir()
    for name in ("val_1.json", "val_2.json", "sub_activitynet_v1-3.c3d.hdf5"):
        os.symlink(src / name, dst / name)
    train = json.loads((src / "train.json").read_text())
    for video in train.values():
        edit_train(video)
    (dst / "train.json").write_text(json.dumps(train))
    return dst


def test_prototype_never_reads_training_timestamps(tiny_world_dir, tmp_path):
    """Train annotations with other timestamps give the same model; other sentences do not."""
    def whole_video(v):
        v["timestamps"] = [[0.0, v["duration"]] for _ in v["timestamps"]]

    def other_words(v):
        v["sentences"] = [s.replace("the", "a") + " quickly" for s in v["sentences"]]

    original = _datamodule(tiny_world_dir)
    moved = _datamodule(_copy_world(tiny_world_dir, tmp_path / "moved", whole_video))
    reworded = _datamodule(_copy_world(tiny_world_dir, tmp_path / "reworded", other_words))
    assert original.vocab.words == moved.vocab.words
    models = []
    for dm in (original, moved):
        m = PrototypeModule(vocab=list(dm.vocab.words), video_dim=dm.video_dim)
        m.fit_from_datamodule(dm)
        models.append(m.state_dict())
    assert models[0].keys() == models[1].keys()
    for key in models[0]:
        assert torch.equal(models[0][key], models[1][key]), key
    assert models[0]["prototypes"].abs().sum() > 0
    m = PrototypeModule(vocab=list(reworded.vocab.words), video_dim=reworded.video_dim)
    m.fit_from_datamodule(reworded)
    quickly = reworded.vocab.words.index("quickly")
    assert int(m.word_videos[quickly]) == int(m.num_train_videos)  # in every video: no prototype
    assert m.prototypes[quickly].abs().sum() == 0
    with pytest.raises(ValueError, match="vocabulary"):
        PrototypeModule(vocab=list(original.vocab.words), video_dim=original.video_dim).fit_from_datamodule(reworded)


def _train(model: str, world: Path, run_dir: Path, *extra: str) -> dict:
    from fsan_lightning.train import train

    os.environ["WANDB_MODE"] = "disabled"
    cfg = compose_config("train", world_overrides(world) + QUIET + [f"model={model}", f"paths.output_dir={run_dir}",
                                                                    *extra])
    return train(cfg)


def _score(world: Path, predictions: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "fsan_lightning.score", "--dataset", "synthetic", "--annotations",
                          str(world / "val_2.json"), "--predictions", str(predictions)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def prototype_run(tiny_world_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("prototype_run")
    return run_dir, _train("prototype", tiny_world_dir, run_dir)


def test_prototype_through_the_training_entry(prototype_run, tiny_world_dir, tmp_path):
    run_dir, results = prototype_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["test"] == results["test"] and Path(on_disk["checkpoint"]).name == "model.ckpt"
    for key in ("R1@0.3", "R1@0.5", "R5@0.5", "mIoU"):
        assert 0.0 <= on_disk["val_best"][key] <= 100.0 and 0.0 <= on_disk["test"][key] <= 100.0
    module = load_module(on_disk["checkpoint"])
    assert isinstance(module, PrototypeModule) and int(module.num_train_videos) == 24
    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    pairs = sum(len(v["sentences"]) for v in json.loads((tiny_world_dir / "val_2.json").read_text()).values())
    assert len(rows) == pairs and all(len(r["pred_relevant_windows"]) == 5 for r in rows)
    scored = _score(tiny_world_dir, run_dir / "predictions_test.jsonl")
    for key in ("R1@0.3", "R1@0.5", "R5@0.5", "mIoU"):
        assert scored[key] == pytest.approx(results["test"][key], abs=0.3), key
    # the eval entry rebuilds the same model from the checkpoint alone
    from fsan_lightning.eval import evaluate

    cfg = compose_config("eval", world_overrides(tiny_world_dir) + ["trainer.enable_progress_bar=false", "logger=csv",
                                                                    f"paths.output_dir={tmp_path}",
                                                                    f"ckpt_path={on_disk['checkpoint']}"])
    evaluated = evaluate(cfg)
    for key, value in results["test"].items():
        assert evaluated["test"][key] == pytest.approx(value, abs=1e-6), key


def test_random_through_the_training_entry(tiny_world_dir, tmp_path):
    from fsan_lightning.data.readers import read_annotations

    results = _train("random", tiny_world_dir, tmp_path / "a", "seed=3")
    queries, _ = read_annotations("synthetic", tiny_world_dir / "val_2.json")
    # results.json: the mean over 10 draws, exactly metrics.random_baseline on the test file (16 clips)
    want = random_baseline([q.duration for q in queries], [q.moments[0] for q in queries], num_clips=16, draws=10,
                           seed=3)
    for key, value in want.items():
        assert results["test"][key] == pytest.approx(value, abs=1e-4), key
    # the predictions file: one draw, scored by the offline scorer as logged under one_draw/
    scored = _score(tiny_world_dir, tmp_path / "a" / "predictions_test.jsonl")
    for key in want:
        assert scored[key] == pytest.approx(results["test"][f"one_draw/{key}"], abs=1e-4), key
    # deterministic per seed whatever the batching; another seed draws otherwise
    _train("random", tiny_world_dir, tmp_path / "b", "seed=3", "data.eval_batch_size=5", "test=true")
    _train("random", tiny_world_dir, tmp_path / "c", "seed=4")
    text = {d: (tmp_path / d / "predictions_test.jsonl").read_text() for d in "abc"}
    assert text["a"] == text["b"] and text["a"] != text["c"]
    assert isinstance(load_module(results["checkpoint"]), RandomModule)


def test_baseline_configs_compose():
    proto = compose_config("train", ["model=prototype", "paths.output_dir=/tmp/x"])
    assert proto.model._target_.endswith("PrototypeModule") and proto.model.min_videos == 2
    rand = compose_config("train", ["model=random", "seed=5", "paths.output_dir=/tmp/x"])
    assert rand.model._target_.endswith("RandomModule") and rand.model.seed == 5 and rand.model.draws == 10
