"""Checkpoints of the flat-settings FSAN (before the composable model) load and predict as they did.

tests/fixtures/legacy/*.ckpt were written by commit 8b482d8 (the `make train` recipe and the paper form with
the MLP head, on the tiny world); legacy_predictions.json holds that code's predictions on fixed inputs.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fsan_lightning.lit.checkpoint import CheckpointError, load_module
from fsan_lightning.lit.legacy import convert_hparams
from fsan_lightning.predictor import FSANPredictor
from helpers import FIXTURES

LEGACY = FIXTURES / "legacy"


@pytest.mark.parametrize("name", ["legacy_feature_space", "legacy_paper_form_mlp"])
def test_legacy_checkpoint_predicts_what_the_old_code_predicted(name):
    torch.set_num_threads(1)
    want = json.loads((LEGACY / "legacy_predictions.json").read_text())[name]
    feats = np.load(LEGACY / "legacy_features.npy")
    got = FSANPredictor.from_checkpoint(LEGACY / f"{name}.ckpt").predict("a person opens the door", feats, 74.0)
    np.testing.assert_allclose(np.array(got["pred_relevant_windows"]), np.array(want), atol=1e-5)


def test_legacy_conversion_maps_the_variants():
    hp = torch.load(LEGACY / "legacy_feature_space.ckpt", weights_only=True)["hyper_parameters"]
    new = convert_hparams(hp)
    assert new["net"]["video_encoder"] == {"kind": "feature_space"}
    assert new["net"]["text_encoder"]["kind"] == "word_residual"
    assert new["net"]["grounder"] == {"kind": "maxsum", "tokens": "content", "threshold": 0.25}
    assert new["loss"]["weights"]["triplet_video"] == pytest.approx(1 / 3) and new["sap_loss"] is False
    assert load_module(LEGACY / "legacy_paper_form_mlp.ckpt").net.head.__class__.__name__ == "MLPClipHead"


def test_unconvertible_legacy_checkpoint_names_the_setting(tmp_path):
    ckpt = torch.load(LEGACY / "legacy_paper_form_mlp.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["mlp_sap_triplet"] = False
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="mlp_sap_triplet"):
        load_module(tmp_path / "old.ckpt")
