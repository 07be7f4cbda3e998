"""The full feature check: corrupted files of each kind stop `validate` and `train` before training,
with the same message (file, video, problem); the skip policy counts; the result is cached."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, TINY_WORLD, tiny_train_config, world_overrides
from fsan_lightning.data import feature_check as fc
from fsan_lightning.data.feature_check import VideoNeed, cached_check, check_feature_values, video_needs
from fsan_lightning.data.features import open_feature_store
from fsan_lightning.data.validate import main as validate_main

FEATURES = "sub_activitynet_v1-3.c3d.hdf5"
KEY = "{vid}/c3d_features"


def _rewrite(path: Path, vid: str, array: np.ndarray | None) -> None:
    with h5py.File(path, "a") as f:
        del f[KEY.format(vid=vid)]
        if array is not None:
            f[KEY.format(vid=vid)] = array


def _corrupt(kind: str, path: Path, vid: str) -> None:
    with h5py.File(path, "r") as f:
        x = f[KEY.format(vid=vid)][()]
    if kind == "nan":
        x[7, 3] = np.nan
        _rewrite(path, vid, x)
    elif kind == "1d":
        _rewrite(path, vid, x[:, 0])
    elif kind == "width":
        _rewrite(path, vid, x[:, :-2])
    elif kind == "empty":
        _rewrite(path, vid, np.zeros((0, x.shape[1]), np.float32))
    elif kind == "missing":
        _rewrite(path, vid, None)


#: corruption -> what the message says (after "<file>, record <vid>, key '<vid>/c3d_features': ")
EXPECTED = {
    "nan": "features contain NaN or inf in 1 of",
    "1d": "features must be 2-D [T, D], got shape (",
    "width": f"feature width {TINY_WORLD['feature_dim'] - 2}, expected {TINY_WORLD['feature_dim']}",
    "empty": "features have zero rows",
    "missing": "videos have no features in",
}


@pytest.fixture
def world(tiny_world_dir, tmp_path) -> Path:
    """A private copy of the tiny world (so a test may corrupt its features)."""
    out = tmp_path / "world"
    shutil.copytree(tiny_world_dir, out)
    return out


def _test_video(world: Path) -> str:
    return sorted(json.loads((world / "val_2.json").read_text()))[0]


def _message_lines(world: Path, kind: str, vid: str, total: int = 8) -> list[str]:
    if kind == "missing":
        return [f"1 of {total} videos have no features in {world / FEATURES} (first: {vid})"]
    return [f"{world / FEATURES}, record {vid}, key '{vid}/c3d_features': {EXPECTED[kind]}"]


# --------------------------------------------------------------------------- the check itself
def test_check_finds_every_kind_and_counts_warnings(tmp_path):
    path = tmp_path / "f.h5"
    good = np.ones((40, 6), np.float32)
    nan = good.copy()
    nan[12, 1] = np.inf
    with h5py.File(path, "w") as f:
        for vid, arr in {"a": good, "b": good, "c": good[:20], "nan": nan, "flat": good[:, 0], "narrow": good[:, :5],
                         "empty": good[:0], "long": np.ones((200, 6), np.float32)}.items():
            f[f"{vid}/c3d_features"] = arr
    needs = {v: VideoNeed(1, 40.0, ("test",)) for v in ("a", "b", "c", "nan", "flat", "narrow", "empty", "long", "gone")}
    needs["c"] = VideoNeed(1, 20.0, ("train",))
    check = check_feature_values(open_feature_store(path), needs, num_clips=32)
    kinds = {v: p["kind"] for v, p in check.problems.items()}
    assert kinds == {"nan": "nonfinite", "flat": "rank", "narrow": "width", "empty": "zero_rows", "gone": "missing"}
    assert check.width == 6 and check.rows == 40 + 40 + 20 + 200 and check.rate == 1.0  # median rows / s
    assert "first row 12" in check.problems["nan"]["message"] and "record nan" in check.problems["nan"]["message"]
    assert set(check.warnings) == {"short", "duration_mismatch"}
    assert set(check.warnings["short"]) == {"c"}  # 20 rows < 32 clips
    assert set(check.warnings["duration_mismatch"]) == {"long"}  # 200 s of rows vs 40 s annotated
    message = check.broken_message()
    assert message.startswith("4 of 9 videos have unusable features (nonfinite=1, rank=1, width=1, zero_rows=1):")
    assert "[test split]" in message and "data.bad_features=skip" in message
    # a configured rate and a wider tolerance: no mismatch
    loose = check_feature_values(open_feature_store(path), needs, feature_rate=1.0, duration_tolerance=5.0)
    assert "duration_mismatch" not in loose.warnings and "short" not in loose.warnings


def test_npy_folder_and_configured_width(tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones((10, 4), np.float32))
    np.save(folder / "b.npy", np.ones((10, 3), np.float32))
    needs = {"a": VideoNeed(1, 10.0, ("test",)), "b": VideoNeed(1, 10.0, ("test",))}
    check = check_feature_values(open_feature_store(folder), needs, dim=3)  # e.g. the checkpoint's width
    assert check.broken == ["a"] and "feature width 4, expected 3" in check.problems["a"]["message"]
    assert "a.npy" in check.problems["a"]["message"]


def test_cache_is_keyed_by_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["a/c3d_features"] = np.ones((5, 2), np.float32)
    needs = {"a": VideoNeed(1, 5.0, ("train",))}
    store = open_feature_store(path)
    first = cached_check(store, needs, tmp_path / "cache")
    assert not first.cached and first.problems == {}
    reads = []
    real = fc.check_feature_values
    monkeypatch.setattr(fc, "check_feature_values", lambda *a, **k: reads.append(1) or real(*a, **k))
    assert cached_check(store, needs, tmp_path / "cache").cached and reads == []  # skipped
    assert not cached_check(store, needs, tmp_path / "cache", duration_tolerance=0.1).cached  # other params
    with h5py.File(path, "a") as f:
        f["a/c3d_features"][0, 0] = np.nan
    again = cached_check(store, needs, tmp_path / "cache")
    assert not again.cached and again.broken == ["a"]  # the file changed: read again


def test_video_needs_take_the_largest_duration_and_every_split():
    from fsan_lightning.data.records import Query

    q = lambda vid, d: Query(f"{vid}#{d}", vid, "a b", d, ((0.0, 1.0),))  # noqa: E731
    needs = video_needs({"train": [q("x", 10.0), q("x", 12.0)], "test": [q("x", 10.0), q("y", 30.0)]}, 5.0)
    assert needs == {"x": VideoNeed(2, 12.0, ("train", "test")), "y": VideoNeed(6, 30.0, ("test",))}


# --------------------------------------------------------------------------- validate
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_validate_names_file_video_and_problem(kind, world, capsys):
    vid = _test_video(world)
    _corrupt(kind, world / FEATURES, vid)
    code = validate_main(["synthetic", str(world / "val_2.json"), "--features", str(world / FEATURES)])
    out = capsys.readouterr().out
    assert code == 1 and "NOT usable" in out
    for line in _message_lines(world, kind, vid):
        assert line in out
    skipped = validate_main(["synthetic", str(world / "val_2.json"), "--features", str(world / FEATURES),
                             "--missing-features", "skip", "--bad-features", "skip"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n = sum(len(v["sentences"]) for k, v in json.loads((world / "val_2.json").read_text()).items() if k == vid)
    reason = "missing_features" if kind == "missing" else f"bad_features_{fc_kind(kind)}"
    assert skipped == 0 and summary["dropped"] == {reason: n} and summary["videos"] == 7


def fc_kind(kind: str) -> str:
    return {"nan": "nonfinite", "1d": "rank", "width": "width", "empty": "zero_rows"}[kind]


def test_validate_clean_world_passes_with_no_message(world, capsys):
    code = validate_main(["synthetic", str(world / "val_2.json"), "--features", str(world / FEATURES)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[-2] == "usable"
    assert not [line for line in lines[:-1] if "warning" in line.lower() or "unusable features" in line
                or "no features" in line]
    summary = json.loads(lines[-1])
    assert summary["bad_features"] == 0 and summary["feature_problems"] == {} and summary["feature_warnings"] == {}


# --------------------------------------------------------------------------- train, eval
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_train_stops_before_training_with_the_same_message(kind, world, tmp_path):
    from fsan_lightning.data.errors import DataFormatError
    from fsan_lightning.train import train

    vid = _test_video(world)
    _corrupt(kind, world / FEATURES, vid)
    run_dir = tmp_path / "run"
    cfg = tiny_train_config(world, run_dir, f"paths.data_dir={tmp_path / 'cache'}")
    with pytest.raises(DataFormatError) as err:
        train(cfg)
    for line in _message_lines(world, kind, vid, total=40):
        assert line in str(err.value)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "csv").exists()  # no training step


@pytest.mark.slow  # a subprocess (~15 s on 2 shared cores); the in-process test above is in the fast suite
def test_train_cli_stops_with_the_message_and_no_traceback(world, tmp_path):
    vid = _test_video(world)
    _corrupt("nan", world / FEATURES, vid)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "fsan_lightning.train", *world_overrides(world), "logger=csv",
                           f"paths.data_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith(f"error: {world / FEATURES}: 1 of 40 videos have unusable features (nonfinite=1)")
    assert _message_lines(world, "nan", vid)[0] in proc.stderr and "[test split]" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
    logged = (tmp_path / "run" / "train.log").read_text()  # the run's log keeps the traceback
    assert "[ERROR] - stopped: " in logged and "Traceback" in logged and _message_lines(world, "nan", vid)[0] in logged


def test_skip_policy_drops_and_counts(world, tmp_path):
    from fsan_lightning._entry import build_datamodule
    from conftest import compose_config

    vid = _test_video(world)
    _corrupt("nan", world / FEATURES, vid)
    cfg = compose_config("train", world_overrides(world) + [f"paths.data_dir={tmp_path}", "paths.output_dir=/tmp/x",
                                                            "data.bad_features=skip"])
    dm = build_datamodule(cfg)
    n = sum(len(v["sentences"]) for k, v in json.loads((world / "val_2.json").read_text()).items() if k == vid)
    report = dm.report_dict()
    assert report["splits"]["test"]["dropped"] == {"bad_features_nonfinite": n}
    assert report["splits"]["test"]["videos"] == 7 and report["splits"]["train"]["dropped"] == {}
    assert report["feature_check"]["problems"] == {"nonfinite": 1} and vid in report["feature_check"]["problem_videos"]
    assert vid not in {q.vid for q in dm.queries("test")}
    # the second setup of the same files reads nothing: the check comes from the cache
    again = build_datamodule(cfg)
    assert again.feature_check.cached and again.report_dict()["splits"]["test"]["dropped"] == {"bad_features_nonfinite": n}


def test_check_only_reads_the_splits_asked(world, tmp_path):
    """What eval does: the test split at the checkpoint's width; a broken training video does not matter."""
    from fsan_lightning._entry import build_datamodule
    from conftest import compose_config

    train_vid = sorted(json.loads((world / "train.json").read_text()))[0]
    _corrupt("nan", world / FEATURES, train_vid)
    cfg = compose_config("train", world_overrides(world) + [f"paths.data_dir={tmp_path}", "paths.output_dir=/tmp/x"])
    dm = build_datamodule(cfg, check_splits=("test",), width=TINY_WORLD["feature_dim"])
    assert dm.feature_check.videos == 8 and dm.feature_check.problems == {}
    from fsan_lightning.data.feature_check import FeatureCheckError

    with pytest.raises(FeatureCheckError, match="feature width 32, expected 30"):
        build_datamodule(cfg, check_splits=("test",), width=30)


def test_predict_checks_every_requested_video_before_predicting(trained_run, world, tmp_path, capsys):
    from fsan_lightning.predict import main as predict_main

    vids = sorted(json.loads((world / "val_2.json").read_text()))[:3]
    _corrupt("nan", world / FEATURES, vids[0])
    _corrupt("width", world / FEATURES, vids[1])
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"vid": v, "query": "a man", "duration": 30.0}) + "\n" for v in vids))
    out = tmp_path / "preds.jsonl"
    rc = predict_main(["--ckpt", trained_run[1]["checkpoint"], "--features", str(world / FEATURES),
                       "--queries", str(queries), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists() and "Traceback" not in err
    assert err.startswith(f"error: {world / FEATURES}: 2 of 3 videos have unusable features (nonfinite=1, width=1):")
    assert _message_lines(world, "nan", vids[0])[0] in err and _message_lines(world, "width", vids[1])[0] in err


def test_missing_and_broken_videos_are_reported_together(world, tmp_path):
    from fsan_lightning._entry import build_datamodule
    from conftest import compose_config
    from fsan_lightning.data.feature_check import FeatureCheckError

    vids = sorted(json.loads((world / "val_2.json").read_text()))[:2]
    _corrupt("missing", world / FEATURES, vids[0])
    _corrupt("empty", world / FEATURES, vids[1])
    cfg = compose_config("train", world_overrides(world) + [f"paths.data_dir={tmp_path}", "paths.output_dir=/tmp/x"])
    with pytest.raises(FeatureCheckError) as err:
        build_datamodule(cfg)
    text = str(err.value)
    assert _message_lines(world, "missing", vids[0], total=40)[0] in text
    assert _message_lines(world, "empty", vids[1])[0] in text


def test_duration_disagreement_is_a_counted_warning_not_an_error(world, tmp_path, caplog):
    import logging

    from fsan_lightning._entry import build_datamodule
    from conftest import compose_config

    ann = json.loads((world / "train.json").read_text())
    vid = sorted(ann)[0]
    ann[vid]["duration"] *= 3  # the features now cover a third of the annotated length
    (world / "train.json").write_text(json.dumps(ann))
    cfg = compose_config("train", world_overrides(world) + [f"paths.data_dir={tmp_path}", "paths.output_dir=/tmp/x"])
    with caplog.at_level(logging.INFO, logger="fsan_lightning"):
        dm = build_datamodule(cfg)
    report = dm.report_dict()
    assert report["splits"]["train"]["warnings"] == {"duration_mismatch": 1}
    assert report["splits"]["test"]["warnings"] == {} and report["splits"]["train"]["dropped"] == {}
    assert list(report["feature_check"]["warning_videos"]["duration_mismatch"]) == [vid]
    lines = [r.getMessage() for r in caplog.records]
    assert any("1 of 40 videos have a feature length that disagrees with the annotated duration" in m
               and vid in m for m in lines)
    assert any(m.startswith("train: ") and "feature warnings 1 (duration_mismatch=1)" in m for m in lines)
