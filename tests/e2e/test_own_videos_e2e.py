"""End to end on self-written videos: extract -> weak training (data=own) -> grounding held-out videos."""
from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import QUIET, compose_config

pytestmark = pytest.mark.slow


def test_own_videos_weakly_trained_ground_held_out_descriptions_better_than_random(tmp_path, capsys):
    from fsan_lightning import extract, predict
    from fsan_lightning.data.own import read_descriptions
    from fsan_lightning.metrics.random_baseline import random_baseline_expected
    from fsan_lightning.train import train

    from fsan_lightning.data.video.toy import make_world

    os.environ["WANDB_MODE"] = "disabled"
    torch.set_num_threads(1)
    data = tmp_path / "own"
    desc = make_world(data, videos=24, seed=0)  # 2-4 segments of coloured moving shapes per video
    assert extract.main([str(desc), "--out", str(data / "features.h5"), "--fps", "2", "--image-size", "96",
                         "--no-progress"]) == 0
    capsys.readouterr()
    cfg = compose_config("train", ["experiment=own_cpu", f"data.data_dir={data}", f"paths.output_dir={tmp_path / 'run'}",
                                   *QUIET])
    results = train(cfg)
    test = results["test"]

    # the held-out test videos' descriptions against uniform random segments on the same clip grid
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["features"]["backbone"]["name"] == "efficientnet-lite0"
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions_test.jsonl").read_text().splitlines()]
    by_vid = {d.vid: d for d in read_descriptions(desc)}
    gts = [by_vid[r["vid"]].timestamps[int(r["qid"].split("#")[1])] for r in rows]
    random = random_baseline_expected([r["duration"] for r in rows], gts, num_clips=cfg.data.num_clips)
    assert len(rows) >= 8
    print("own-videos e2e:", {k: round(test[k], 2) for k in ("R1@0.5", "mIoU")}, "random:", {k: round(random[k], 2) for k in ("R1@0.5", "mIoU")})
    assert test["R1@0.5"] > random["R1@0.5"] + 15, (test, random)
    assert test["mIoU"] > 1.5 * random["mIoU"], (test, random)

    # the checkpoint records the backbone; predict --video re-extracts a test video the same way
    ckpt = torch.load(results["checkpoint"], weights_only=True)
    assert ckpt["fsan_lightning_features"] == {"name": "efficientnet-lite0", "weights_sha256": "579344248a93e230",
                                               "image_size": 96, "dim": 1280, "fps": 2.0}
    vid = rows[0]["vid"]
    fig = tmp_path / "strip.png"
    capsys.readouterr()
    rc = predict.main(["--ckpt", results["checkpoint"], "--video", str(by_vid[vid].path), "--query", rows[0]["query"],
                       "--json", "--figure", str(fig)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    answer = json.loads(out)
    assert answer["duration"] == pytest.approx(rows[0]["duration"], abs=1e-6)
    assert answer["pred_relevant_windows"] == rows[0]["pred_relevant_windows"]  # the same features as training
    assert fig.is_file()
