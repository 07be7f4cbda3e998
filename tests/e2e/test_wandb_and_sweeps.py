"""W&B offline logging read back from disk, the DDP-under-multirun guard, and a real sweep (slow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import TINY_MODEL, tiny_train_config, world_overrides
from helpers import logged_keys, wait_for_exit_record


def test_wandb_offline_run_is_written_and_readable(tiny_world_dir, tmp_path, monkeypatch):
    """A real offline W&B run: config, losses and metrics land in the run's wandb folder."""
    from fsan_lightning import _entry
    from fsan_lightning.train import train

    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    run_dir = tmp_path / "run"
    cfg = tiny_train_config(tiny_world_dir, run_dir, "logger=wandb", "trainer.max_epochs=1")
    _entry.configure_environment(cfg)
    train(cfg)
    assert os.environ["WANDB_MODE"] in ("offline", "dryrun")  # no key: offline, never a prompt
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((run_dir / "wandb").iterdir())
    run_files = list(runs[0].glob("*.wandb"))  # the log that `wandb sync` uploads
    assert len(run_files) == 1
    wait_for_exit_record(run_files[0])  # wandb's core process may still be flushing after finish()
    history, config = logged_keys(run_files[0])
    assert {"model", "data", "trainer", "seed"} <= config  # the composed config
    assert {"train/loss", "train/loss_triplet", "train/loss_inner", "train/loss_outer"} <= history
    assert {"val/mIoU", "val/R1@0.5", "val/p_inside", "val/p_outside", "test/R1@0.5"} <= history
    assert any(k.startswith("val/alignment_maps") for k in history)  # Figure-3 style images
    media = list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert media, "alignment maps were not written as images"


def test_ddp_inside_basic_multirun_is_refused():
    from fsan_lightning._entry import guard_ddp_under_multirun

    cfg = OmegaConf.create({"trainer": {"strategy": "ddp", "devices": 2, "num_nodes": 1}})
    hydra_cfg = OmegaConf.create({"mode": "RunMode.MULTIRUN",
                                  "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}})
    with pytest.raises(RuntimeError, match="submitit"):
        guard_ddp_under_multirun(cfg, hydra_cfg=hydra_cfg)
    # one device, a single run, or another launcher: allowed
    guard_ddp_under_multirun(OmegaConf.create({"trainer": {"strategy": "ddp", "devices": 1}}), hydra_cfg=hydra_cfg)
    guard_ddp_under_multirun(cfg, hydra_cfg=OmegaConf.create({"mode": "RunMode.RUN", "launcher": hydra_cfg.launcher}))
    guard_ddp_under_multirun(cfg, hydra_cfg=OmegaConf.create(
        {"mode": "RunMode.MULTIRUN", "launcher": {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}}))


@pytest.mark.slow
def test_cli_sweep_runs_one_job_per_value(tiny_world_dir, tmp_path):
    """`python -m fsan_lightning.train -m model.cross_attn=false,true`: two run dirs, two different results."""
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "fsan_lightning.train", "-m", "model.cross_attn=false,true",
           f"hydra.sweep.dir={sweep_dir}", "logger=csv", "callbacks.progress_bar=null",
           "trainer.enable_progress_bar=false", "trainer.max_epochs=2",
           # the default model's ICIM trains only once its self-training terms start (epoch 5 unless set)
           "model.loss.self_training.start_epoch=1",
           *world_overrides(tiny_world_dir), *TINY_MODEL]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, text=True, timeout=600)
    results = [json.loads((sweep_dir / str(i) / "results.json").read_text()) for i in (0, 1)]
    cfgs = [OmegaConf.load(sweep_dir / str(i) / ".hydra" / "config.yaml") for i in (0, 1)]
    assert [c.model.cross_attn for c in cfgs] == [False, True]
    assert results[0]["test"] != results[1]["test"]
    assert results[0]["run_dir"] != results[1]["run_dir"]
