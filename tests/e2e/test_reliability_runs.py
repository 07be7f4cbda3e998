"""Interrupted and failing runs: exact resumption after SIGKILL, the NaN guard, atomic results."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import QUIET, TINY_MODEL, tiny_train_config, world_overrides

TESTS = Path(__file__).resolve().parents[1]  # killer.py


def _train_cli(run_dir: Path, world_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fsan_lightning.train", f"hydra.run.dir={run_dir}", "trainer.max_epochs=3",
           *QUIET, *world_overrides(world_dir), *TINY_MODEL, *extra]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(TESTS)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tiny_world_dir, tmp_path):
    """Killed with SIGKILL during epoch 2 of 3, resumed with ckpt_path=last: same test metrics (1e-6)."""
    whole = _train_cli(tmp_path / "whole", tiny_world_dir)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _train_cli(tmp_path / "cut", tiny_world_dir, "+callbacks.killer._target_=killer.KillAtBatch",
                        "+callbacks.killer.epoch=1", "+callbacks.killer.batch=1")
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut" / "results.json").exists()
    assert (tmp_path / "cut" / "checkpoints" / "last.ckpt").is_file()
    resumed = _train_cli(tmp_path / "cut", tiny_world_dir, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((tmp_path / "whole" / "results.json").read_text())
    b = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert set(a["test"]) == set(b["test"])
    for key in a["test"]:
        assert b["test"][key] == pytest.approx(a["test"][key], abs=1e-6), key
    assert Path(a["checkpoint"]).name == Path(b["checkpoint"]).name
    assert (tmp_path / "whole" / "predictions_test.jsonl").read_text() == (
        tmp_path / "cut" / "predictions_test.jsonl").read_text()


def test_last_checkpoint_is_the_last_epoch_not_the_best(tiny_world_dir, tmp_path):
    """ckpt_path=last must resume after the last finished epoch: last.ckpt is written every epoch, also
    when the monitored score did not improve (Lightning's save_last writes it only with a new best)."""
    from fsan_lightning.train import train

    cfg = tiny_train_config(tiny_world_dir, tmp_path, "trainer.max_epochs=3", "monitor=fake/score",
                            "+callbacks.fake._target_=fake_metric.FallingScore")
    results = train(cfg)
    assert Path(results["checkpoint"]).name == "epoch000.ckpt"  # selection still follows the monitor
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2
    assert last["global_step"] == torch.load(results["checkpoint"], weights_only=False)["global_step"] * 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch000.ckpt", "last.ckpt"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_checkpoint(tiny_world_dir, tmp_path, monkeypatch):
    from fsan_lightning.models import FSANCriterion
    from fsan_lightning.train import train

    original = FSANCriterion.forward
    calls = {"n": 0}

    def poisoned(self, passes, sap_weight=1.0):
        out = original(self, passes, sap_weight=sap_weight)
        calls["n"] += 1
        if calls["n"] > 15:  # the tiny world has 9-10 batches an epoch: NaN in epoch 2
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(FSANCriterion, "forward", poisoned)
    cfg = tiny_train_config(tiny_world_dir, tmp_path, "trainer.max_epochs=3")
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 1"):
        train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "results.json").exists()


def test_results_json_is_written_atomically(tmp_path, monkeypatch):
    """A failure mid-write (e.g. a kill while serialising) leaves the previous file intact, no temp files."""
    from fsan_lightning import runio

    target = tmp_path / "results.json"
    runio.atomic_write_json(target, {"test": {"mIoU": 1.0}})

    def exploding_fsync(fd):
        raise OSError("disk pulled")

    monkeypatch.setattr(os, "fsync", exploding_fsync)
    with pytest.raises(OSError):
        runio.atomic_write_json(target, {"test": {"mIoU": 2.0}})
    assert json.loads(target.read_text()) == {"test": {"mIoU": 1.0}}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
