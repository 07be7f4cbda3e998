"""The framework end to end, in-process: train -> select on val -> test; eval reproduces it."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import compose_config, tiny_train_config, world_overrides
from fsan_lightning.lit.checkpoint import CheckpointError, load_module


def test_train_writes_run_directory(trained_run, tiny_world_dir):
    run_dir, results, _ = trained_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["test"] == results["test"]
    for key in ("R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.1", "R5@0.5", "R5@0.7", "mIoU"):
        assert 0.0 <= on_disk["test"][key] <= 100.0
    assert {"val_best", "checkpoint", "seed", "commit", "wall_time_s"} <= set(on_disk)
    assert Path(on_disk["checkpoint"]).is_file() and "last" not in Path(on_disk["checkpoint"]).name
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report  # per-split counts written before training
    test_pairs = sum(len(v["sentences"]) for v in json.loads((tiny_world_dir / "val_2.json").read_text()).values())
    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    assert len(rows) == test_pairs
    for row in rows:
        assert {"qid", "vid", "query", "duration", "pred_relevant_windows"} <= set(row)
        windows = row["pred_relevant_windows"]
        assert len(windows) == 5
        for s, e, _ in windows:
            assert 0.0 <= s < e <= row["duration"] + 1e-6


def test_eval_reproduces_train_test_metrics(trained_run, tiny_world_dir, tmp_path):
    from fsan_lightning.eval import evaluate

    _, results, _ = trained_run
    cfg = compose_config("eval", world_overrides(tiny_world_dir) + ["trainer.enable_progress_bar=false", "logger=csv",
        f"paths.output_dir={tmp_path}", f"ckpt_path={results['checkpoint']}"])
    os.environ["WANDB_MODE"] = "disabled"
    evaluated = evaluate(cfg)
    assert set(evaluated["test"]) == set(results["test"])
    for key, value in results["test"].items():
        assert evaluated["test"][key] == pytest.approx(value, abs=1e-6), key
    assert (tmp_path / "predictions_test.jsonl").read_text() == (
        Path(results["run_dir"]) / "predictions_test.jsonl").read_text()


def test_scorer_agrees_with_train_metrics(trained_run, tiny_world_dir):
    run_dir, results, _ = trained_run
    out = subprocess.run(
        [sys.executable, "-m", "fsan_lightning.score", "--dataset", "synthetic", "--annotations",
         str(tiny_world_dir / "val_2.json"), "--predictions", str(run_dir / "predictions_test.jsonl")],
        capture_output=True, text=True, check=True)
    scored = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("R1@0.3", "R1@0.5", "R5@0.5", "mIoU"):
        # predictions are rounded to 1e-4 s in the file
        assert scored[key] == pytest.approx(results["test"][key], abs=0.3), key


def test_checkpoint_alone_rebuilds_the_model(trained_run):
    _, results, _ = trained_run
    module = load_module(results["checkpoint"])
    assert module.hparams.vocab[:2] == ["<pad>", "<unk>"]
    assert module.net.cross_attn if hasattr(module.net, "cross_attn") else True


def test_crafted_pickle_checkpoint_is_refused(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"vocab": [], "video_dim": 1}, "x": RunsCode()}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_module(bad)
    assert not (tmp_path / "pwned").exists()


def test_not_an_fsan_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="not an FSAN checkpoint"):
        load_module(path)


def test_unknown_model_setting_fails_before_training(tiny_world_dir, tmp_path):
    """A typo in a sweep fails before training instead of being ignored, with an error naming the key."""
    from hydra.errors import ConfigCompositionException

    from fsan_lightning.train import train

    # a plain override of a key the (struct) model config lacks: Hydra refuses it while composing
    with pytest.raises(ConfigCompositionException, match="cros_attn"):
        tiny_train_config(tiny_world_dir, tmp_path, "model.cros_attn=false")
    with pytest.raises(ConfigCompositionException, match="layerz"):
        tiny_train_config(tiny_world_dir, tmp_path, "model.net.interaction.layerz=2")
    # a key added with +: the module / the part's class refuses it when the model is built
    for extra, names in [("+model.cros_attn=false", "cros_attn"),
                         ("+model.net.interaction.layerz=2", r"model\.net\.interaction.*layerz"),
                         ("+model.loss.sap.tua=0.1", "tua")]:
        cfg = tiny_train_config(tiny_world_dir, tmp_path, extra)
        with pytest.raises(Exception, match=names):
            train(cfg)
        assert not (tmp_path / "checkpoints").exists()
        assert not (tmp_path / "results.json").exists()


def test_config_groups_compose():
    """Every option of every group composes (instantiation of GPU trainers is not attempted)."""
    groups = {
        "data": ["synthetic", "activitynet", "didemo", "charades"],
        "model": ["fsan", "fsan_small", "fsan_synthetic", "fsan_synthetic_full", "prototype", "random"],
        "trainer": ["cpu", "gpu", "gpu_amp", "ddp"],
        "logger": ["default", "csv", "wandb", "tensorboard", "none"],
        "callbacks": ["default", "none"],
    }
    for group, options in groups.items():
        for option in options:
            cfg = compose_config("train", [f"{group}={option}", "paths.output_dir=/tmp/x"])
            assert cfg[group] is not None or option == "none"
    paper = compose_config("train", ["model=fsan", "paths.output_dir=/tmp/x"])
    net, loss = paper.model.net, paper.model.loss
    assert net.d_model == 512 and net.interaction.layers == 6 and paper.model.optim.lr == 1e-4
    assert net.dropout == 0.1 and abs(loss.weights.triplet - 1 / 3) < 1e-12
    assert loss.weights.inner == loss.weights.outer == loss.weights.triplet
    assert compose_config("train", ["trainer=gpu_amp", "paths.output_dir=/tmp/x"]).trainer.precision == "bf16-mixed"
    anet = compose_config("train", ["data=activitynet", "data.data_dir=/d", "paths.output_dir=/tmp/x"])
    assert (anet.data.train_file, anet.data.val_file, anet.data.test_file) == ("train.json", "val_1.json", "val_2.json")


def test_binding_term_trains_through_the_entry_point(tiny_world_dir, tmp_path):
    """`+model.loss.weights.triplet_binding` runs the binding pass and logs it, train and held-out."""
    import csv

    from fsan_lightning.train import train

    with pytest.raises(ValueError, match="data.binding_tolerance"):  # the term without its negatives
        train(tiny_train_config(tiny_world_dir, tmp_path / "off", "+model.loss.weights.triplet_binding=0.5",
                                "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "test=false"))
    cfg = tiny_train_config(tiny_world_dir, tmp_path, "+model.loss.weights.triplet_binding=0.5",
                            "+data.binding_tolerance=0",
                            "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "trainer.log_every_n_steps=1",
                            "test=false")
    train(cfg)
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    trained = [float(r["train/loss_triplet_binding"]) for r in rows if r.get("train/loss_triplet_binding")]
    heldout = [float(r["val/heldout_triplet_binding"]) for r in rows if r.get("val/heldout_triplet_binding")]
    assert trained and heldout and all(0 <= x <= 2.2 for x in trained + heldout)  # hinge of cosines, margin 0.2


def test_sibling_term_trains_through_the_entry_point(tiny_world_dir, tmp_path):
    """`+model.loss.weights.sibling` runs the sibling pass and logs it, train and held-out."""
    import csv

    from fsan_lightning.train import train

    with pytest.raises(ValueError, match="data.siblings"):  # the term without its siblings
        train(tiny_train_config(tiny_world_dir, tmp_path / "off", "+model.loss.weights.sibling=0.5",
                                "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "test=false"))
    cfg = tiny_train_config(tiny_world_dir, tmp_path, "+model.loss.weights.sibling=0.5", "+data.siblings=true",
                            "+model.loss.sibling.window=2", "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
                            "trainer.log_every_n_steps=1", "test=false")
    train(cfg)
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    trained = [float(r["train/loss_sibling"]) for r in rows if r.get("train/loss_sibling")]
    heldout = [float(r["val/heldout_sibling"]) for r in rows if r.get("val/heldout_sibling")]
    assert trained and heldout and all(0 <= x <= 2.2 for x in trained + heldout)  # hinges of cosine contrasts
