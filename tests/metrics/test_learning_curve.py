"""experiments/localization/learning_curve.py: a run's best / last epoch and the curve's table, hand-computed."""
from __future__ import annotations

import math

import pytest

from helpers import load_experiment_script


@pytest.fixture(scope="module")
def curve():
    return load_experiment_script("localization/learning_curve.py")


def _rows(epochs):
    """metrics.csv rows: a training row per epoch (no val/mIoU) and a validation row."""
    rows = []
    for epoch, (r5, miou, base_r5, base_miou) in enumerate(epochs):
        rows.append({"epoch": str(epoch), "train/loss": "1.0", "val/mIoU": ""})
        rows.append({"epoch": str(epoch), "val/R1@0.5": str(r5), "val/mIoU": str(miou), "val/heldout_triplet": "0.17",
                     "val/base_R1@0.5": str(base_r5), "val/base_mIoU": str(base_miou)})
    return rows


def test_best_epoch_is_the_first_of_the_highest_val_miou_and_last_is_the_last(curve):
    out = curve.epoch_summary(_rows([(30, 35, 30, 35), (40, 38, 41, 37), (42, 38, 44, 39), (39, 36, 45, 40)]))
    assert out["best_epoch"] == 1 and out["R1@0.5"] == 40 and out["mIoU"] == 38
    assert out["last_epoch"] == 3 and out["last_R1@0.5"] == 39 and out["last_base_mIoU"] == 40
    assert out["heldout_triplet"] == pytest.approx(0.17)


def test_a_network_without_a_base_map_reads_nan_and_no_validation_is_refused(curve):
    rows = [{"epoch": "0", "val/R1@0.5": "40", "val/mIoU": "38"}]
    assert math.isnan(curve.epoch_summary(rows)["last_base_R1@0.5"])
    with pytest.raises(ValueError, match="no validation epoch"):
        curve.epoch_summary([{"epoch": "0", "train/loss": "1.0"}])


def test_table_groups_seeds_per_model_and_size_with_sample_sd(curve):
    s0 = curve.epoch_summary(_rows([(40, 38, 42, 39)]))
    s1 = curve.epoch_summary(_rows([(44, 40, 44, 42)]))
    st = curve.epoch_summary([{"epoch": "0", "val/R1@0.5": "50", "val/mIoU": "45"}])
    table = curve.curve_table({"full_N500_s0": s0, "full_N500_s1": s1, "strip_N2000_s0": st}).splitlines()
    assert len(table) == 4
    # mean 42, sample sd of (40, 44) = 2.83; interacted minus base: (-2, 0) -> -1.00 ± 1.41, (-1, -2) -> -1.50 ± 0.71
    assert table[2].startswith("| full | 500 | 0,1 | 42.00 ± 2.83 | 39.00 ± 1.41 | 0.170 ± 0.000 | 0, 0 |")
    assert table[2].endswith("| 43.00 ± 1.41 / 40.50 ± 2.12 | -1.00 ± 1.41 / -1.50 ± 0.71 |")
    assert table[3] == "| strip | 2,000 | 0 | 50.00 | 45.00 | - | 0 | 50.00 / 45.00 | - | - |"
    with pytest.raises(ValueError, match="not <label>_N<size>_s<seed>"):
        curve.curve_table({"full_s0": s0})


def test_run_grid_composes_one_independent_world_per_size_and_skips_finished_runs(curve, tmp_path, monkeypatch):
    done = tmp_path / "full_N500_s0"
    done.mkdir()
    (done / "results.json").write_text("{}")
    calls = []

    def fake_call(cmd, stdout, stderr):
        calls.append(cmd)
        return 0

    monkeypatch.setattr(curve.subprocess, "call", fake_call)
    curve.run_grid(tmp_path, [500, 2000], {"full": "fsan_cpu", "strip": "fsan_synthetic"}, [0], "synthetic_cpu",
                   tmp_path / "worlds", ["trainer.max_epochs=2"])
    runs = [next(a.split("=", 1)[1] for a in cmd if a.startswith("hydra.run.dir=")) for cmd in calls]
    assert runs == [str(tmp_path / n) for n in ("strip_N500_s0", "full_N2000_s0", "strip_N2000_s0")]
    first = calls[0]
    assert first[1:3] == ["-m", "fsan_lightning.train"]
    assert {"experiment=synthetic_cpu", "model=fsan_synthetic", "seed=0", "test=false", "trainer.max_epochs=2",
            "data.synthetic={split_streams:independent,train_videos:500}",
            f"data.data_dir={tmp_path / 'worlds' / 'ind_500'}"} <= set(first)

    monkeypatch.setattr(curve.subprocess, "call", lambda *a, **k: 3)
    (tmp_path / "strip_N500_s0").mkdir(exist_ok=True)
    with pytest.raises(SystemExit, match="strip_N500_s0: exit 3"):
        curve.run_grid(tmp_path, [500], {"strip": "fsan_synthetic"}, [0], "synthetic_cpu", tmp_path, [])
