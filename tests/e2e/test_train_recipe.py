"""`make train`'s recipe (experiment=synthetic_cpu, model fsan_synthetic) end to end on the tiny world."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from conftest import QUIET, compose_config, world_overrides
from fsan_lightning.predictor import FSANPredictor
from helpers import assert_same_windows, read_features


@pytest.fixture(scope="module")
def recipe_run(tiny_world_dir, tmp_path_factory, monkeypatch_module):
    from fsan_lightning.train import train

    monkeypatch_module.setenv("WANDB_MODE", "disabled")
    run_dir = tmp_path_factory.mktemp("recipe")
    # the recipe's own network, its width following the world's features, with its opt-in self-training
    # form of the SAP losses, whose teacher runs before epoch 1 instead of epoch 5
    cfg = compose_config("train", ["experiment=synthetic_cpu", *world_overrides(tiny_world_dir), *QUIET,
                                   f"paths.output_dir={run_dir}", "trainer.max_epochs=2",
                                   "model.sap_loss=true", "model.loss.weights.self_training=0.1",
                                   "model.loss.self_training.start_epoch=1"])
    return run_dir, train(cfg), cfg


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_recipe_builds_the_feature_space_model(recipe_run, tiny_world_dir):
    _, results, cfg = recipe_run
    m = cfg.model
    n = m.net
    assert (n.d_model, n.video_encoder.kind, n.alignment.kind, n.text_encoder.kind) == (
        None, "feature_space", "feature_space", "word_residual")
    assert (n.grounder.kind, n.grounder.beta, n.grounder.temperature) == ("feedback", 1.0, 0.1)
    assert (n.grounder.inner.kind, n.grounder.inner.threshold, m.sap_loss, n.interaction.layers) == ("maxsum", 0.25, True, 0)  # sap_loss: the opt-in above
    # the SAP losses in their self-training form (opted in above; 0 in the recipe): inner/outer weigh 0
    assert dict(m.loss.weights) == {"triplet": 1.0, "triplet_video": 1.0, "inner": 0.0, "outer": 0.0,
                                    "self_training": 0.1}
    assert dict(m.loss.self_training) == {"temperature": 0.05, "joint": 1.0, "start_epoch": 1,  # 5 unless overridden
                                          "teacher": "sibling"}
    predictor = FSANPredictor.from_checkpoint(results["checkpoint"])
    net = predictor.module.net
    feature_dim = read_features(tiny_world_dir, "v_syn_test00000").shape[1]
    assert net.video_encoder.proj.__class__.__name__ == "Identity"
    assert net.alignment.text_proj.__class__.__name__ == "Identity"
    assert net.text_encoder.residual.weight.shape[1] == feature_dim  # d_model null -> the feature width
    assert net.grounder.__class__.__name__ == "FeedbackGrounder" and net.grounder.beta == 1.0
    inner = net.grounder.inner  # the checkpoint rebuilds the wrapped rule too
    assert inner.__class__.__name__ == "MaxSumGrounder" and inner.threshold == 0.25
    assert inner.tokens == "content" and len(net.interaction.layers) == 0
    # the word salience was fitted from the training split before training and travels in the checkpoint
    # (the tiny world's words are all in fewer than 10 training videos: equal weights here; see below)
    assert dict(n.salience) == {"min_videos": 10, "power": 0.5} and bool(net.salience.fitted)
    assert set(results["test"]) >= {"R1@0.5", "mIoU"}


def test_recipe_self_training_runs_after_the_warm_up(recipe_run):
    """The teacher grounds the training split before the first epoch past the warm-up, and the term trains."""
    run_dir, _, _ = recipe_run
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    st = {int(r["epoch"]): float(r["train/loss_self_training"]) for r in rows if r.get("train/loss_self_training")}
    assert set(st) == {1} and all(math.isfinite(v) and v > 0 for v in st.values())  # absent in epoch 0, before start_epoch
    clips = [float(r["train/pseudo_moment_clips"]) for r in rows if r.get("train/pseudo_moment_clips")]
    assert len(clips) == 1 and clips[0] >= 1


def test_recipe_checkpoint_predicts_what_the_test_run_wrote(recipe_run, tiny_world_dir):
    run_dir, results, _ = recipe_run
    torch.set_num_threads(1)
    predictor = FSANPredictor.from_checkpoint(results["checkpoint"])
    rows = [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]
    for ref in rows[:5]:
        got = predictor.predict(ref["query"], read_features(tiny_world_dir, ref["vid"]), ref["duration"])
        assert_same_windows(got["pred_relevant_windows"], ref["pred_relevant_windows"])


def test_fitted_salience_travels_in_the_checkpoint(tiny_world_dir, tmp_path, monkeypatch):
    """With words frequent enough to be weighted, the checkpoint's predictor reproduces the test run's windows,
    and the weights change what the network grounds."""
    from fsan_lightning.train import train

    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.set_num_threads(1)
    cfg = compose_config("train", ["experiment=synthetic_cpu", *world_overrides(tiny_world_dir), *QUIET,
                                   f"paths.output_dir={tmp_path}", "trainer.max_epochs=1",
                                   "model.net.salience.min_videos=2"])
    results = train(cfg)
    predictor = FSANPredictor.from_checkpoint(results["checkpoint"])
    salience = predictor.module.net.salience
    assert bool(salience.fitted) and torch.count_nonzero(salience.logits) > 0
    rows = [json.loads(line) for line in (tmp_path / "predictions_test.jsonl").read_text().splitlines()]
    for ref in rows[:5]:
        got = predictor.predict(ref["query"], read_features(tiny_world_dir, ref["vid"]), ref["duration"])
        assert_same_windows(got["pred_relevant_windows"], ref["pred_relevant_windows"])
    salience.logits.zero_()  # equal weights: some query grounds elsewhere
    changed = [predictor.predict(r["query"], read_features(tiny_world_dir, r["vid"]), r["duration"])
               ["pred_relevant_windows"][0] != r["pred_relevant_windows"][0] for r in rows]
    assert any(changed)


def test_recipe_default_trains_without_the_self_training_term():
    """Session 8: the self-training form gained on validation but not on the embedded test split, so the
    recipe keeps it off (docs/model.md, "SAP as self-training")."""
    m = compose_config("train", ["experiment=synthetic_cpu"]).model
    assert m.sap_loss is False and m.loss.weights.self_training == 0.0
