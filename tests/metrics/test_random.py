"""The random baseline: exact expectations on tiny grids, Monte Carlo vs the exact expectation, the CLI."""

import json

import numpy as np
import pytest

from fsan_lightning.metrics import (
    didemo_candidates,
    didemo_random_baseline,
    random_baseline,
    random_baseline_expected,
)
from fsan_lightning.metrics.random_baseline import clip_segments, main


def test_clip_segments():
    assert clip_segments(2).tolist() == [[0, 0], [0, 1], [1, 1]]
    assert clip_segments(64).shape == (64 * 65 // 2, 2)


def test_one_clip_is_deterministic():
    # the only segment is the whole video; gt = first half -> IoU 0.5 exactly
    out = random_baseline([20.0, 40.0], [[0, 10], [0, 20]], num_clips=1, draws=3, top_k=1, ks=(1,))
    assert out == {"R1@0.1": 100.0, "R1@0.3": 100.0, "R1@0.5": 100.0, "R1@0.7": 0.0, "mIoU": 50.0}


def test_two_clips_exact_expectation():
    # segments (x d): [0,.5] IoU 1, [0,1] IoU .5, [.5,1] IoU 0 against gt [0, d/2]
    # top-1: P(IoU>=.5) = 2/3, P(IoU>=.7) = 1/3, E[IoU] = 1/2
    # two distinct: P(hit@.7) = 1 - C(2,2)/C(3,2) = 2/3; P(hit@.5) = 1 - C(1,2)/C(3,2) = 1
    out = random_baseline_expected(
        [10.0], [[0.0, 5.0]], num_clips=2, top_k=2, ks=(1, 2), thresholds=(0.5, 0.7)
    )
    want = {"R1@0.5": 200 / 3, "R1@0.7": 100 / 3, "R2@0.5": 100.0, "R2@0.7": 200 / 3, "mIoU": 50.0}
    assert out == pytest.approx(want)
    # Monte Carlo converges to it (2000 queries x 20 draws: standard error < 0.3 points)
    mc = random_baseline(
        [10.0] * 2000,
        [[0.0, 5.0]] * 2000,
        num_clips=2,
        draws=20,
        seed=1,
        top_k=2,
        ks=(1, 2),
        thresholds=(0.5, 0.7),
    )
    assert mc == pytest.approx(want, abs=1.5)


def test_top_k_segments_are_distinct():
    # with 3 segments and top_k=3, the draws must cover all three: R3@0.7 is certain
    out = random_baseline(
        [10.0] * 50, [[0.0, 5.0]] * 50, num_clips=2, draws=5, top_k=3, ks=(3,), thresholds=(0.7,)
    )
    assert out["R3@0.7"] == 100.0
    with pytest.raises(ValueError, match="distinct"):
        random_baseline([10.0], [[0.0, 5.0]], num_clips=2, top_k=4, ks=(4,))


def test_monte_carlo_matches_expectation_on_varied_videos():
    rng = np.random.default_rng(0)
    d = rng.uniform(10, 200, size=400)
    s = rng.uniform(0, 0.8, size=400) * d
    e = s + rng.uniform(0.05, 1.0, size=400) * (d - s)
    gts = np.stack([s, e], 1)
    exact = random_baseline_expected(d, gts, num_clips=16)
    mc = random_baseline(d, gts, num_clips=16, draws=25, seed=3)
    assert list(mc) == list(exact)
    assert mc == pytest.approx(exact, abs=2.0)
    assert random_baseline(d, gts, num_clips=16, draws=2, seed=5) == random_baseline(
        d, gts, num_clips=16, draws=2, seed=5
    )
    assert random_baseline(d, gts, num_clips=16, draws=2, seed=5) != random_baseline(
        d, gts, num_clips=16, draws=2, seed=6
    )


def test_didemo_random_one_moment_agreed_by_all():
    # every annotator on (2, 3): P(rank 1) = 1/21, P(rank <= 5) = 5/21, E[IoU] = mean over the 21 candidates
    gt = np.tile(np.array([[2, 3]] * 4), (3000, 1, 1))
    c = didemo_candidates().numpy()
    inter = np.clip(np.minimum(c[:, 1], 3) + 1 - np.maximum(c[:, 0], 2), 0, None)
    union = np.maximum(c[:, 1], 3) + 1 - np.minimum(c[:, 0], 2)
    out = didemo_random_baseline(gt, draws=10, seed=0)
    assert out == pytest.approx(
        {"Rank@1": 100 / 21, "Rank@5": 500 / 21, "mIoU": 100 * (inter / union).mean()}, abs=0.8
    )


def test_cli_exact_on_activitynet_file(tmp_path, capsys):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"v_a": {"duration": 30.0, "timestamps": [[0, 15]], "sentences": ["a b"]}}))
    assert main(["--dataset", "activitynet", "--annotations", str(ann), "--num-clips", "3", "--exact"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the 6 segments' IoUs with [0, 15]: 2/3, 3/4, 1/2, 1/4, 1/6, 0
    assert out["R1@0.5"] == pytest.approx(50.0, abs=1e-3) and out["R1@0.7"] == pytest.approx(
        100 / 6, abs=1e-3
    )
    assert out["R5@0.7"] == pytest.approx(500 / 6, abs=1e-3) and out["R5@0.1"] == 100.0
    assert out["mIoU"] == pytest.approx(100 * (2 / 3 + 3 / 4 + 1 / 2 + 1 / 4 + 1 / 6) / 6, abs=1e-3)
    assert out["num_queries"] == 1 and out["num_clips"] == 3 and out["exact"] is True
    with pytest.raises(ValueError, match="distinct"):
        random_baseline_expected([30.0], [[0.0, 15.0]], num_clips=2)


def test_cli_didemo(tmp_path, capsys):
    ann = tmp_path / "didemo.json"
    recs = [
        {
            "annotation_id": i,
            "video": f"v{i}.mp4",
            "description": "x y",
            "num_segments": 6,
            "dl_link": "",
            "times": [[1, 1]] * 4,
        }
        for i in range(200)
    ]
    ann.write_text(json.dumps(recs))
    assert main(["--dataset", "didemo", "--annotations", str(ann), "--draws", "10"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) >= {"Rank@1", "Rank@5", "mIoU"}
    assert out["Rank@5"] == pytest.approx(500 / 21, abs=4.0)


def test_cli_missing_file_fails(tmp_path, capsys):
    assert main(["--dataset", "activitynet", "--annotations", str(tmp_path / "nope.json")]) != 0
    assert "nope.json" in capsys.readouterr().err
