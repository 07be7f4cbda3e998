"""The entry points' refusals, error handling and quiet output (fsan_lightning._cli)."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import REPO, compose_config, world_overrides
from fsan_lightning import _cli

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def test_data_keys_are_the_datamodule_signature():
    from fsan_lightning.lit.datamodule import GroundingDataModule

    params = [p for p in inspect.signature(GroundingDataModule.__init__).parameters if p != "self"]
    assert list(_cli.DATA_KEYS) == params


@pytest.mark.parametrize("argv", [["model=fsan_small"], ["model.d_model=8"], ["+model.x=1"], ["++model.lr=1"],
                                  ["~model"], ["ckpt_path=a", "model=fsan"]])
def test_eval_refuses_model_overrides(argv):
    with pytest.raises(_cli.UsageError) as err:
        _cli.refuse_overrides("eval", argv)
    text = str(err.value)
    assert text.startswith("eval takes the model from the checkpoint") and argv[-1] in text
    assert "ckpt_path=PATH" in text and "data.<key>=..." in text and "trainer.<arg>=..." in text


@pytest.mark.parametrize("entry", ["train", "eval"])
def test_unknown_data_key_lists_the_valid_ones(entry):
    for argv in (["data.batchsize=3"], ["+data.batchsize=3"], ["-m", "data.batchsize=3,4"]):
        with pytest.raises(_cli.UsageError, match=r"unknown data setting\(s\) \['\+?data.batchsize=3"):
            _cli.refuse_overrides(entry, argv)
    with pytest.raises(_cli.UsageError) as err:
        _cli.refuse_overrides(entry, ["data.batchsize=3"])
    assert "'batch_size'" in str(err.value) and "'num_clips'" in str(err.value)


@pytest.mark.parametrize("argv", [["data=activitynet", "data.data_dir=/d", "data.batch_size=3"],
                                  ["data.synthetic={train_videos:3}", "~data.glove", "+data.limit_queries=5"],
                                  ["--config-name", "train", "-m", "seed=0,1", "model.d_model=8"],
                                  ["data._target_=my.Module", "+data.anything=1"]])
def test_overrides_that_apply_pass(argv):
    _cli.refuse_overrides("train", argv)


def test_composed_unknown_data_key_is_refused_before_reading(tmp_path):
    from fsan_lightning._entry import build_datamodule

    cfg = compose_config("train", ["+data.batchsize=3", f"paths.data_dir={tmp_path}", "paths.output_dir=/tmp/x"])
    with pytest.raises(_cli.UsageError, match=r"unknown data setting\(s\) \['batchsize'\]; data.<key> takes"):
        build_datamodule(cfg)
    assert not (tmp_path / "synthetic").exists()  # nothing generated or read


def test_eval_model_override_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "fsan_lightning.eval", "model=fsan_small", "ckpt_path=x.ckpt"],
                          capture_output=True, text=True, env=ENV, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: eval takes the model from the checkpoint") and "Traceback" not in proc.stderr
    assert "model=fsan_small cannot apply" in proc.stderr


def test_train_unknown_data_key_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "fsan_lightning.train", "data.batchsize=3"],
                          capture_output=True, text=True, env=ENV, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: unknown data setting(s) ['data.batchsize=3']; data.<key> takes: [")


def test_user_errors_print_one_line_and_exit_2(capsys):
    from fsan_lightning.data.errors import DataFormatError

    with pytest.raises(SystemExit) as stop, _cli.user_errors():
        raise DataFormatError("f.h5", "features have zero rows", "v1", "v1/c3d_features")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: f.h5, record v1, key 'v1/c3d_features': features have zero rows\n"
    with pytest.raises(KeyError), _cli.user_errors():  # a bug keeps its traceback
        raise KeyError("x")


def test_eval_checks_the_test_split_at_the_checkpoint_width(trained_run, tiny_world_dir, tmp_path):
    import shutil

    import h5py

    from fsan_lightning.data.feature_check import FeatureCheckError
    from fsan_lightning.eval import evaluate

    world = tmp_path / "world"
    shutil.copytree(tiny_world_dir, world)
    path = world / "sub_activitynet_v1-3.c3d.hdf5"
    import json

    vid = sorted(json.loads((world / "val_2.json").read_text()))[0]
    with h5py.File(path, "a") as f:
        x = f[f"{vid}/c3d_features"][()]
        del f[f"{vid}/c3d_features"]
        f[f"{vid}/c3d_features"] = x[:, :-1]
    _, results, _ = trained_run
    cfg = compose_config("eval", world_overrides(world) + [
        "trainer.enable_progress_bar=false", "logger=csv", f"paths.output_dir={tmp_path / 'run'}",
        f"paths.data_dir={tmp_path}", f"ckpt_path={results['checkpoint']}"])
    with pytest.raises(FeatureCheckError) as err:
        evaluate(cfg)
    assert f"{path}, record {vid}" in str(err.value) and "feature width 31, expected 32" in str(err.value)
    assert "[test split]" in str(err.value)


def test_results_table():
    table = _cli.results_table({"test": {"R1@0.5": 39.0, "mIoU": 36.944, "note": "x"}})
    assert table.splitlines() == ["      R1@0.5   mIoU", "test   39.00  36.94"]
    assert _cli.results_table({}) == ""


def test_warning_filter_drops_only_the_leafspec_warning():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _cli.install_warning_filters()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
                      "treespec.is_leaf()` instead.", FutureWarning, stacklevel=1)
        warnings.warn("something else", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]


def test_alignment_images_have_one_size_for_wandb():
    from fsan_lightning.viz.alignment import alignment_figure_array, pad_to_same_size

    a = alignment_figure_array(np.random.rand(3, 8), ["a", "b", "c"], 10.0, [1, 4], [2, 5], "a b c")
    b = alignment_figure_array(np.random.rand(9, 30), list("abcdefghi"), 30.0, [1, 4], [2, 5], "q")
    assert a.shape != b.shape
    pa, pb = pad_to_same_size([a, b])
    assert pa.shape == pb.shape == (max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1]), 3)
    assert (pa[: a.shape[0], : a.shape[1]] == a).all() and (pa[a.shape[0]:] == 255).all()


def test_wandb_logger_does_not_pass_the_deprecated_anonymous_setting(tmp_path):
    from fsan_lightning.lit.loggers import WandbLogger

    assert "anonymous" not in WandbLogger(save_dir=str(tmp_path), offline=True)._wandb_init
    assert WandbLogger(save_dir=str(tmp_path), offline=True, anonymous=True)._wandb_init["anonymous"] == "allow"


@pytest.mark.slow
def test_make_train_output_is_quiet(tiny_world_dir, tmp_path):
    """`make train`'s command on the tiny world, W&B offline (on, as for a user): no warning line at all,
    the start-of-run lines (one per split, the model), then the results table and the run directory."""
    env = {**ENV, "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fsan_lightning.train", "experiment=synthetic_cpu",
                           *world_overrides(tiny_world_dir), "trainer.max_epochs=2", f"paths.data_dir={tmp_path}",
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    lowered = out.lower()
    for noise in ("warning", "leafspec", "_pytree", "images sizes", "anonymous", "traceback", "gpu available",
                  "seed set", "tip:"):
        assert noise not in lowered, noise
    logged = [line.split("] - ", 1)[1] for line in out.splitlines() if "][INFO] - " in line]
    assert [line.split(":")[0] for line in logged] == ["train", "val", "test", "model"]
    assert logged[-1].startswith("model: FSANModule, ") and " parameters (" in logged[-1]
    lines = out.splitlines()
    assert f"run directory: {run_dir}" in lines and any(line.startswith("test   ") for line in lines)
    assert (run_dir / "wandb").is_dir() and any("wandb sync" in line for line in lines)


def test_in_a_sweep_a_data_error_fails_only_that_job(monkeypatch, capsys):
    from fsan_lightning.data.errors import DataFormatError

    monkeypatch.setattr(_cli, "_in_multirun", lambda: True)
    with pytest.raises(DataFormatError), _cli.user_errors():  # Hydra's sweep records it and goes on
        raise DataFormatError("f.h5", "features have zero rows", "v1")
    assert capsys.readouterr().err == "error: f.h5, record v1: features have zero rows\n"
