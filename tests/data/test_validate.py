"""`python -m fsan_lightning.data.validate`: last line JSON, exit codes, real files' counts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fsan_lightning.data.validate import main
from helpers import FIXTURES

HERE = FIXTURES
SHARED = Path(os.environ["FSAN_SHARED_DATA"]) if os.environ.get("FSAN_SHARED_DATA") else (
    Path("/work/shared/data") if Path("/work/shared/data").is_dir() else None)
needs_shared = pytest.mark.skipif(SHARED is None, reason="set FSAN_SHARED_DATA to the shared/data folder")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err


@needs_shared
@pytest.mark.parametrize("dataset,rel,durations,expect", [
    ("activitynet", "activitynet_captions/train.json", [],
     {"queries": 37421 - 2, "videos": 10009, "dropped": {"zero_length": 2},
      "repaired": {"end_clipped_float_artefact": 232, "end_clipped_past_duration": 29, "reversed_swapped": 2,
                   "sentence_had_newline": 5}, "missing_features": 0}),
    ("activitynet", "activitynet_captions/val_2.json", [],
     {"queries": 17031, "videos": 4885, "dropped": {},
      "repaired": {"end_clipped_float_artefact": 110, "end_clipped_past_duration": 1, "sentence_had_newline": 3},
      "missing_features": 0}),
    ("didemo", "didemo/test_data.json", [],
     {"queries": 4021, "videos": 1004, "dropped": {}, "repaired": {"sentence_had_newline": 7}, "missing_features": 0}),
    ("charades", "charades_sta/charades_sta_train.txt", ["charades_sta/Charades_v1_train.csv"],
     {"queries": 12408 - 3, "videos": 5336, "dropped": {"start_at_or_past_duration": 3},
      "repaired": {"end_clipped_past_duration": 1802, "reversed_swapped": 1}, "missing_features": 0}),
])
def test_validate_real_files(capsys, dataset, rel, durations, expect):
    args = [dataset, SHARED / rel] + (["--durations", *[SHARED / d for d in durations]] if durations else [])
    code, lines, _ = run(capsys, *args)
    assert code == 0
    assert json.loads(lines[-1]) == expect


def test_validate_malformed_exits_2(capsys):
    code, lines, err = run(capsys, "activitynet", HERE / "malformed" / "anet_mismatched.json")
    assert code == 2 and lines == []
    assert "anet_mismatched.json, record v_a, key 'timestamps': 2 timestamps but 1 sentences" in err


@pytest.fixture
def feats(tmp_path):
    path = tmp_path / "f.hdf5"
    with h5py.File(path, "w") as f:
        f["v_rev/c3d_features"] = np.ones((7, 5), np.float32)
    return path


def test_validate_features_missing_error_and_skip(capsys, feats):
    ann = HERE / "good" / "anet_anomalies.json"  # videos v_rev (2 queries) and v_over (3)
    code, lines, _ = run(capsys, "activitynet", ann, "--features", feats)
    assert code == 1 and "NOT usable" in lines
    assert any("1 of 2 videos have no features" in line and "v_over" in line for line in lines)
    assert json.loads(lines[-1])["missing_features"] == 1
    code, lines, _ = run(capsys, "activitynet", ann, "--features", feats, "--missing-features", "skip")
    out = json.loads(lines[-1])
    assert code == 0 and out["queries"] == 2 and out["videos"] == 1 and out["missing_features"] == 1
    assert out["dropped"] == {"empty_sentence": 1, "missing_features": 3, "start_at_or_past_duration": 1,
                              "zero_length": 1}


def test_validate_scan_values_finds_nan(capsys, tmp_path):
    path = tmp_path / "nan.hdf5"
    with h5py.File(path, "w") as f:
        f["v_rev/c3d_features"] = np.ones((7, 5), np.float32)
        x = np.ones((4, 5), np.float32)
        x[3, 0] = np.nan
        f["v_over/c3d_features"] = x
    ann = HERE / "good" / "anet_anomalies.json"
    code, lines, _ = run(capsys, "activitynet", ann, "--features", path)  # values are always read
    assert code == 1 and "NOT usable" in lines
    assert any("nan.hdf5, record v_over" in line and "NaN" in line and "first row 3" in line for line in lines)
    assert json.loads(lines[-1])["feature_problems"] == {"nonfinite": 1}
    assert run(capsys, "activitynet", ann, "--features", path, "--scan-values")[0] == 1  # the old flag still parses


def test_validate_as_a_module_command():
    """The real command line: exit status and the JSON last line."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-m", "fsan_lightning.data.validate", "charades",
                           str(HERE / "good" / "charades_anomalies.txt"), "--durations",
                           str(HERE / "good" / "charades_durations.csv")], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "queries": 4, "videos": 2, "dropped": {"start_at_or_past_duration": 1},
        "repaired": {"end_clipped_past_duration": 2, "reversed_swapped": 1}, "missing_features": 0}
    code = ("import sys, fsan_lightning.data.validate, fsan_lightning.data.dataset, "
            "fsan_lightning.data.synthetic, fsan_lightning.data.prepare; print(sorted(sys.modules))")
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "fsan_lightning.data.dataset" in modules.stdout and "pytorch_lightning" not in modules.stdout
