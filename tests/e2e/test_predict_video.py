"""predict --video: features extracted with the checkpoint's recorded backbone, refused otherwise."""
from __future__ import annotations

import json

import pytest
import torch

from fsan_lightning import predict
from fsan_lightning.data.video.backbone import load_backbone
from fsan_lightning.lit.callbacks import FeatureProvenance
from fsan_lightning.lit.module import FSANModule
from helpers import colour_video, net_config, sample_video

WORDS = ["<pad>", "<unk>", "a", "red", "blue", "square", "man", "car"]


def save_checkpoint(path, record, video_dim=1280):
    """A checkpoint as train writes it (module hparams + state dict + the features' record), untrained."""
    torch.manual_seed(0)
    net = net_config(text_encoder={"layers": 0}, interaction={"layers": 0})
    module = FSANModule(vocab=WORDS, video_dim=video_dim, word_dim=50, function_word_ids=[2], net=net,
                        loss={"weights": {"triplet": 1.0}}, data_num_clips=8, data_max_tokens=20)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    FeatureProvenance(record).on_save_checkpoint(None, module, ckpt)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def record():
    return load_backbone("efficientnet-lite0", image_size=64).spec(fps=2.0).to_dict()


def run(capsys, *args):
    rc = predict.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_predict_video_prints_moments_within_the_duration_and_draws_the_strip(tmp_path, capsys, record):
    ckpt = save_checkpoint(tmp_path / "m.ckpt", record)
    video = sample_video("carphone_distorted.mp4")
    fig = tmp_path / "fig.png"
    rc, out, err = run(capsys, "--ckpt", ckpt, "--video", video, "--query", "a man in a car", "--json",
                       "--figure", fig)
    assert rc == 0, err
    row = json.loads(out)
    assert row["duration"] == pytest.approx(4.004, abs=1e-3)
    windows = row["pred_relevant_windows"]
    assert len(windows) == 5 and all(0 <= s < e <= row["duration"] + 1e-4 for s, e, _ in windows)
    assert len(row["alignment"][0]) == 8  # 8 rows (2 fps x 4 s) kept as the 8 clips
    assert fig.is_file() and fig.stat().st_size > 10_000 and f"figure: {fig}" in err
    # a self-written video: table output, the duration is the file's
    colours = colour_video(tmp_path / "rb.mp4", [(220, 20, 20), (20, 40, 220)], seconds_each=3.0)
    rc, out, err = run(capsys, "--ckpt", ckpt, "--video", colours, "--query", "a red square")
    assert rc == 0, err
    assert "duration 6.00 s" in out


def test_checkpoints_of_other_features_are_refused(tmp_path, capsys, record):
    video = sample_video("carphone_distorted.mp4")
    cases = {
        "none": (None, 1280, "records no feature extractor"),
        "weights": ({**record, "weights_sha256": "0" * 16}, 1280, "installed weights are"),
        "width": ({**record, "dim": 1280}, 500, "trained on 500-d features but records 1280-d"),
        "name": ({**record, "name": "resnet50"}, 1280, "unknown backbone 'resnet50'"),
    }
    for name, (rec, dim, message) in cases.items():
        ckpt = save_checkpoint(tmp_path / f"{name}.ckpt", rec, video_dim=dim)
        rc, _, err = run(capsys, "--ckpt", ckpt, "--video", video, "--query", "a man")
        assert rc == 1 and message in err, (name, err)
    ckpt = save_checkpoint(tmp_path / "ok.ckpt", record)
    rc, _, err = run(capsys, "--ckpt", ckpt, "--video", tmp_path / "absent.mp4", "--query", "a man")
    assert rc == 1 and "absent.mp4: file not found" in err
    rc, _, err = run(capsys, "--ckpt", ckpt, "--video", video, "--features", video, "--query", "a man")
    assert rc == 1 and "not both or neither" in err


def test_pca_reduced_features_train_and_predict_with_the_same_projection(tmp_path, capsys):
    import h5py
    import numpy as np

    from fsan_lightning import extract
    from fsan_lightning.lit.datamodule import GroundingDataModule
    from fsan_lightning.video_predict import checkpoint_backbone, video_features

    vids = tmp_path / "v"
    colours = [(220, 20, 20), (20, 40, 220), (20, 200, 40), (240, 220, 30)]
    lines = []
    for i in range(4):
        colour_video(vids / f"c{i}.mp4", [colours[i], colours[(i + 1) % 4]], seconds_each=1.0)
        lines.append(json.dumps({"video": f"v/c{i}.mp4", "sentences": ["a red square"], "timestamps": [[0, 1]]}))
    (tmp_path / "descriptions.jsonl").write_text("\n".join(lines) + "\n")
    raw, reduced = tmp_path / "raw.h5", tmp_path / "features.h5"
    assert extract.main([str(tmp_path / "descriptions.jsonl"), "--out", str(raw), "--fps", "2", "--image-size", "64",
                         "--no-progress", "--pca-dim", "4", "--pca-out", str(reduced)]) == 0
    capsys.readouterr()
    with h5py.File(raw) as f, h5py.File(reduced) as g:
        x, y = f["c0/c3d_features"][()], g["c0/c3d_features"][()]
        mean, u = g["_fsan_pca/x_mean"][()], g["_fsan_pca/U"][()]
        assert y.shape == (4, 4) and u.shape == (1280, 4)
        np.testing.assert_allclose(y, (x - mean) @ u, rtol=1e-4, atol=1e-4)
        assert g["c0/c3d_features"].attrs["duration"] == pytest.approx(2.0)
    dm = GroundingDataModule(dataset="own", data_dir=str(tmp_path), val_fraction=0.25, test_fraction=0.25)
    dm.setup()
    assert dm.video_dim == 4 and dm.feature_provenance["pca_dim"] == 4
    ckpt = tmp_path / "pca.ckpt"
    torch.manual_seed(0)
    net = net_config(text_encoder={"layers": 0}, interaction={"layers": 0})
    module = FSANModule(vocab=WORDS, video_dim=4, word_dim=50, function_word_ids=[2], net=net,
                        loss={"weights": {"triplet": 1.0}}, data_num_clips=8, data_max_tokens=20)
    state = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    FeatureProvenance(dm.feature_provenance, dm.feature_projection).on_save_checkpoint(None, module, state)
    torch.save(state, ckpt)
    feats, _ = video_features(vids / "c0.mp4", checkpoint_backbone(ckpt))
    np.testing.assert_allclose(feats, y, rtol=1e-4, atol=1e-4)  # the same projection as the training file
    rc, out, err = run(capsys, "--ckpt", ckpt, "--video", vids / "c0.mp4", "--query", "a red square")
    assert rc == 0, err
    assert "duration 2.00 s" in out
