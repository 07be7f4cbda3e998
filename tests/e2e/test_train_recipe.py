"""`make train`'s recipe (experiment=synthetic_cpu, model fsan_cpu) end to end on the tiny world."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from conftest import QUIET, compose_config, world_overrides
from fsan_lightning.predictor import FSANPredictor
from helpers import assert_same_windows, read_features, stub_data_side

#: the recipes that train the default model: the bare entry point, make train, the ActivityNet-scale
#: world, and both Table 4 experiments (issue 19: each uses the full architecture)
DEFAULT_RECIPES = [[], ["experiment=synthetic_cpu"], ["experiment=anet_sim_cpu"], ["experiment=synthetic_table4"],
                   ["experiment=anet_sim_table4"], ["experiment=context_cpu"]]


@pytest.fixture(scope="module")
def recipe_run(tiny_world_dir, tmp_path_factory, monkeypatch_module):
    from fsan_lightning.train import train

    monkeypatch_module.setenv("WANDB_MODE", "disabled")
    run_dir = tmp_path_factory.mktemp("recipe")
    # the recipe's own network, its width following the world's features; its self-training terms (the SAP
    # losses' form) start after epoch 0 instead of epoch 5, so that 2 epochs train ICIM
    cfg = compose_config("train", ["experiment=synthetic_cpu", *world_overrides(tiny_world_dir), *QUIET,
                                   f"paths.output_dir={run_dir}", "trainer.max_epochs=2",
                                   "model.loss.self_training.start_epoch=1"])
    return run_dir, train(cfg), cfg


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.parametrize("overrides", DEFAULT_RECIPES, ids=lambda o: o[0] if o else "bare")
def test_default_recipes_compose_the_full_architecture(overrides):
    """ICIM with >= 2 layers and both attentions, grounding on the alignment map, the SAP losses on."""
    cfg = compose_config("train", overrides)
    m = cfg.model
    assert m.net.kind == "attached_two_stage" and m.net.interaction.kind == "bottleneck_gated_icim"
    assert m.net.interaction.layers >= 2 and m.cross_attn is True and m.inner_attn is True
    assert m.grounding_head == "sap" and m.sap_loss is True
    assert m.loss.weights.self_training > 0 and m.loss.weights.self_training_base > 0
    assert m.loss.self_training.teacher == "base_sibling" and m.loss.matching.kind == "base"
    assert dict(m.optim.part_lr) == {"net.interaction": 3.0e-4} and m.optim.lr == 3.0e-3
    assert cfg.trainer.max_epochs == 15 and m.loss.self_training.start_epoch == 5  # the terms train 10 epochs


def test_context_world_is_the_embedded_recipe_with_repeats_cached_apart():
    embedded, context = compose_config("train", ["experiment=synthetic_cpu"]), compose_config("train", ["experiment=context_cpu"])
    assert context.data.synthetic == {"repeat_fraction": 0.5} and embedded.data.synthetic is None
    assert context.data.data_dir != embedded.data.data_dir  # the embedded world's cache is never overwritten
    assert context.model == embedded.model and context.trainer == embedded.trainer


def test_recipe_builds_the_full_network(recipe_run, tiny_world_dir):
    _, results, cfg = recipe_run
    m = cfg.model
    n = m.net
    assert (n.d_model, n.video_encoder.kind, n.alignment.kind, n.text_encoder.kind) == (
        None, "feature_space", "feature_space", "word_residual")
    assert (n.grounder.kind, n.grounder.beta, n.grounder.temperature) == ("feedback", 1.0, 0.1)
    assert (n.grounder.inner.kind, n.grounder.inner.threshold, m.sap_loss) == ("maxsum", 0.25, True)
    # the SAP losses in their self-training form, on both maps; the paper's inner/outer forms weigh 0
    assert dict(m.loss.weights) == {"triplet": 1.0, "triplet_video": 1.0, "inner": 0.0, "outer": 0.0,
                                    "self_training": 0.1, "self_training_base": 0.1}
    assert dict(m.loss.self_training) == {"temperature": 0.05, "joint": 1.0, "start_epoch": 1,  # 5 unless overridden
                                          "teacher": "base_sibling"}
    predictor = FSANPredictor.from_checkpoint(results["checkpoint"])
    net = predictor.module.net
    feature_dim = read_features(tiny_world_dir, "v_syn_test00000").shape[1]
    assert net.__class__.__name__ == "AttachedTwoStageFSAN"
    assert net.video_encoder.proj.__class__.__name__ == "Identity"
    assert net.alignment.text_proj.__class__.__name__ == "Identity"
    assert net.text_encoder.residual.weight.shape[1] == feature_dim  # d_model null -> the feature width
    assert net.grounder.__class__.__name__ == "FeedbackGrounder" and net.grounder.beta == 1.0
    inner = net.grounder.inner  # the checkpoint rebuilds the wrapped rule too
    assert inner.__class__.__name__ == "MaxSumGrounder" and inner.threshold == 0.25 and inner.tokens == "content"
    icim = net.interaction
    assert icim.__class__.__name__ == "BottleneckGatedICIM" and len(icim.layers) == 2
    for layer in icim.layers:  # both attentions, both ways
        assert None not in (layer.cross_text, layer.cross_video, layer.self_text, layer.self_video)
    # ICIM trained at its own learning rate, the rest at the base one
    groups = predictor.module.configure_optimizers().param_groups  # no scheduler in the recipe
    assert sorted(g["lr"] for g in groups) == [3.0e-4, 3.0e-3]
    # the word salience was fitted from the training split before training and travels in the checkpoint
    # (the tiny world's words are all in fewer than 10 training videos: equal weights here; see below)
    assert dict(n.salience) == {"min_videos": 10, "power": 0.5} and bool(net.salience.fitted)
    assert set(results["test"]) >= {"R1@0.5", "mIoU"}


def test_recipe_self_training_trains_the_interaction_after_the_warm_up(recipe_run):
    """The teacher grounds the training split before the first epoch past the warm-up; both terms train,
    and ICIM leaves the identity (its gates open), which only the self-training term can do here."""
    run_dir, results, _ = recipe_run
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    for name in ("train/loss_self_training", "train/loss_self_training_base"):
        st = {int(r["epoch"]): float(r[name]) for r in rows if r.get(name)}
        assert set(st) == {1} and all(math.isfinite(v) and v > 0 for v in st.values()), name  # absent in epoch 0
    clips = [float(r["train/pseudo_moment_clips"]) for r in rows if r.get("train/pseudo_moment_clips")]
    assert len(clips) == 1 and clips[0] >= 1
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    gates = [v for k, v in state.items() if k.startswith("net.interaction.") and ".gate_" in k]
    assert gates and max(float(g.abs().max()) for g in gates) > 0


def test_recipe_logs_the_base_map_reading_beside_the_interacted_one(recipe_run):
    """val/base_<metric>: the same weights ranked with ICIM bypassed. In epoch 0 ICIM is still the identity
    (its gates open only once the self-training terms train), so both readings are equal there."""
    run_dir, _, _ = recipe_run
    rows = [r for r in csv.DictReader(open(run_dir / "csv" / "metrics.csv")) if r.get("val/mIoU")]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for name in ("R1@0.1", "R1@0.5", "R5@0.5", "mIoU"):
        assert rows[0][f"val/base_{name}"] == rows[0][f"val/{name}"], name
        assert math.isfinite(float(rows[1][f"val/base_{name}"]))
    assert not any(k.startswith("test/base_") for r in csv.DictReader(open(run_dir / "csv" / "metrics.csv"))
                   for k, v in r.items() if v)  # validation only


def test_only_networks_with_a_bypass_get_the_base_map_reading():
    assert _default_module().val_base_metric is not None
    assert _default_module("model=fsan_synthetic").val_base_metric is None  # one stage: no base map


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


def _default_module(*overrides: str):
    """make train's module on a stub data side (vocabulary, feature width, word vectors), seeded."""
    from fsan_lightning._entry import build_module

    torch.manual_seed(0)
    return build_module(compose_config("train", ["experiment=synthetic_cpu", *overrides]), stub_data_side())


def _blocks(module) -> set[str]:
    """The ICIM attention blocks present in every layer."""
    names = ("cross_text", "cross_video", "self_text", "self_video")
    return {n for n in names if all(getattr(layer, n) is not None for layer in module.net.interaction.layers)}


def test_each_table4_switch_removes_a_part_the_default_trains():
    full = _default_module()
    assert _blocks(full) == {"cross_text", "cross_video", "self_text", "self_video"}
    assert full.criterion.weights["self_training"] > 0 and full.criterion.weights["self_training_base"] > 0
    assert getattr(full.net, "head", None) is None and "mil" not in full.criterion.weights
    assert _blocks(_default_module("ablation=no_cross_attn")) == {"self_text", "self_video"}
    assert _blocks(_default_module("ablation=no_inner_attn")) == {"cross_text", "cross_video"}
    no_sap = _default_module("ablation=no_sap_loss").criterion.weights
    assert no_sap["self_training"] == 0 and no_sap["self_training_base"] == 0 and no_sap["triplet"] == 1
    mlp = _default_module("ablation=no_grounding_module")
    assert mlp.net.head is not None and mlp.criterion.weights["mil"] > 0
    for part in (full, mlp):  # ICIM with both attentions in the MLP row too
        assert len(part.net.interaction.layers) == 2


def _group_lrs(module) -> dict[str, float]:
    """Each parameter name -> the learning rate of its Adam group in ``configure_optimizers``."""
    optimizer = module.configure_optimizers()
    by_id = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in module.named_parameters() if p.requires_grad}


def test_default_slow_rate_covers_the_positional_tables_the_base_map_reads():
    """part_lr's prefix net.interaction takes ICIM's positional tables too; the base map reads them, so the
    "w/o SAP" row is the stripped model with those tables at a tenth of the rate (session 18), not the stripped model."""
    full = _group_lrs(_default_module())
    assert full["net.interaction.text_pos"] == full["net.interaction.video_pos"] == pytest.approx(3.0e-4)
    assert full["net.text_encoder.residual.weight"] == pytest.approx(3.0e-3)
    stripped = _group_lrs(_default_module("model=fsan_synthetic"))
    assert stripped["net.interaction.text_pos"] == pytest.approx(3.0e-3)
    slow = _group_lrs(_default_module("model=fsan_synthetic", "+model.optim.part_lr={net.interaction:3.0e-4}"))
    no_sap = _group_lrs(_default_module("ablation=no_sap_loss"))
    assert slow == {name: lr for name, lr in no_sap.items() if name in slow}
    assert set(no_sap) - set(slow) == {n for n in no_sap if n.startswith("net.interaction.") and "_pos" not in n}
