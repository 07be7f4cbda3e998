"""Scale-out on CPU: 2-process DDP (gloo) equals a 1-process eval; joblib and submitit_local sweeps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import QUIET, TINY_MODEL, world_overrides

METRIC_KEYS = ("R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.1", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU")


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["WANDB_MODE"] = "disabled"
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=_clean_env(), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


@pytest.mark.slow
def test_ddp_two_cpu_processes_equal_single_process_eval(tiny_world_dir, tmp_path):
    run = tmp_path / "ddp"
    _run(["fsan_lightning.train", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
          f"hydra.run.dir={run}", "trainer.max_epochs=2", *QUIET, *world_overrides(tiny_world_dir), *TINY_MODEL],
         tmp_path)
    trained = json.loads((run / "results.json").read_text())
    lines = (run / "predictions_test.jsonl").read_text().splitlines()
    test_pairs = sum(len(v["sentences"]) for v in json.loads((tiny_world_dir / "val_2.json").read_text()).values())
    assert len(lines) == test_pairs  # padded duplicates of the distributed sampler removed
    assert len({json.loads(line)["qid"] for line in lines}) == test_pairs
    single = tmp_path / "single"
    _run(["fsan_lightning.eval", f"ckpt_path={trained['checkpoint']}", f"hydra.run.dir={single}",
          "trainer.enable_progress_bar=false", "logger=csv", *world_overrides(tiny_world_dir)], tmp_path)
    evaluated = json.loads((single / "results.json").read_text())
    for key in METRIC_KEYS:
        assert evaluated["test"][key] == pytest.approx(trained["test"][key], abs=1e-6), key
    assert (single / "predictions_test.jsonl").read_text().splitlines() == lines


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launcher_multirun_two_jobs(launcher, tiny_world_dir, tmp_path):
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=15"]
    _run(["fsan_lightning.train", "-m", f"hydra/launcher={launcher}", *extra, "seed=0,1", f"hydra.sweep.dir={sweep}",
          "trainer.max_epochs=1", *QUIET, *world_overrides(tiny_world_dir), *TINY_MODEL], tmp_path)
    seeds = []
    for job in ("0", "1"):
        results = json.loads((sweep / job / "results.json").read_text())
        assert set(METRIC_KEYS) <= set(results["test"])
        seeds.append(results["seed"])
        assert OmegaConf.load(sweep / job / ".hydra" / "config.yaml").seed == results["seed"]
    assert sorted(seeds) == [0, 1]


def test_bf16_mixed_trains_on_cpu(tiny_world_dir, tmp_path):
    """trainer=gpu_amp's precision (bf16-mixed) instantiates on CPU and trains a few steps to finite losses."""
    from conftest import compose_config
    from fsan_lightning.train import train

    amp = compose_config("train", ["trainer=gpu_amp", "paths.output_dir=/tmp/x"])
    assert amp.trainer.precision == "bf16-mixed" and amp.trainer.accelerator == "gpu"
    from conftest import tiny_train_config

    cfg = tiny_train_config(tiny_world_dir, tmp_path, "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                            "+trainer.limit_train_batches=3", "trainer.log_every_n_steps=1")
    results = train(cfg)
    assert all(v == v for v in results["test"].values())  # no NaN
    import csv

    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(abs(x) < 1e6 for x in losses)
