"""Recipes of `make ablations/table2/table3`: configs, job plans, the job runner, end to end (slow)."""
from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import QUIET, REPO, TINY_MODEL, TINY_WORLD, compose_config, world_overrides
from fsan_lightning.reproduce import sweep
from fsan_lightning.reproduce.paper import ABLATION_SWITCH, FULL_MODEL_SWITCHES, TABLE4

ROWS = [key for key, _ in TABLE4.settings]
#: the MLP row's own head settings (model.net.head; read only when grounding_head=mlp)
HEAD_SETTINGS = {"no_grounding_module": {"kind": "clip", "segment_rule": "maxsum", "condition": "none"}}


def _model_without(model, switches, head_keys) -> dict:
    """The composed model config as a dict, less the given switches and model.net.head keys."""
    out = OmegaConf.to_container(model, resolve=True)
    for key in switches:
        out.pop(key)
    for key in head_keys:
        out["net"]["head"].pop(key, None)
    return out


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("row", ROWS)
def test_ablation_configs_set_exactly_their_switch(row):
    cfg = compose_config("train", [f"ablation={row}"])
    expected = dict(FULL_MODEL_SWITCHES)
    if row in ABLATION_SWITCH:
        key, value = ABLATION_SWITCH[row]
        expected[key] = value
    assert {k: cfg.model[k] for k in expected} == expected
    # everything else is the default model's, except the MLP row's own head settings (read only when
    # grounding_head=mlp; docs/model.md "The MLP head")
    own = set(HEAD_SETTINGS.get(row, {}))
    assert {k: cfg.model.net.head[k] for k in own} == HEAD_SETTINGS.get(row, {})
    base = compose_config("train", [])
    assert _model_without(cfg.model, expected, own) == _model_without(base.model, expected, own)


def test_ablation_row_wins_over_a_model_default_but_not_over_the_command_line():
    cfg = compose_config("train", ["ablation=full", "model.sap_loss=false"])
    assert cfg.model.sap_loss is False
    cfg = compose_config("train", ["experiment=activitynet", "ablation=no_cross_attn", "data.data_dir=/d"])
    assert cfg.model.cross_attn is False and cfg.model.net.d_model == 512


@pytest.mark.parametrize("name, dataset, clips", [("activitynet", "activitynet", 64), ("didemo", "didemo", 6),
                                                  ("charades", "charades", 32)])
def test_experiment_configs_hold_the_papers_settings(name, dataset, clips):
    """Section 4.2: d 512, Adam 1e-4, batch 128, dropout 0.1, loss weights 1/3, one GPU."""
    cfg = compose_config("train", [f"experiment={name}", "data.data_dir=/d"])
    m = cfg.model
    assert m._target_.endswith("FSANModule")
    assert (m.net.d_model, m.optim.lr, m.net.dropout, m.net.interaction.layers) == (512, 1e-4, 0.1, 6)
    assert set(m.loss.weights) == {"triplet", "inner", "outer"}  # no negative-video term (the paper's Eq. 13)
    assert m.loss.weights.triplet == m.loss.weights.inner == m.loss.weights.outer == pytest.approx(1 / 3)
    assert cfg.data.dataset == dataset and cfg.data.batch_size == 128 and cfg.data.num_clips == clips
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 1


def test_synthetic_didemo_recipe_composes_a_small_cpu_run(tmp_path):
    rcp = sweep.recipe("table2", None, None, synthetic_dir=tmp_path)
    cfg = compose_config("train", list(rcp.base) + ["ablation=full"])
    small = compose_config("train", ["experiment=synthetic_cpu"])
    assert cfg.data.dataset == "didemo" and cfg.data.data_dir == str(tmp_path)
    assert cfg.data.features == "didemo_features.hdf5" and cfg.data.num_clips == 6 and cfg.data.num_workers == 0
    assert cfg.data.feature_key == "{vid}/c3d_features"  # how data.synthetic writes every format
    assert cfg.model.net == small.model.net and cfg.trainer.accelerator == "cpu"
    assert rcp.data == "synthetic" and "DiDeMo's format" in rcp.note


# ----------------------------------------------------------------------------- recipes and plans
def test_recipes_choose_the_data():
    assert sweep.recipe("table4", None, None).base == ("experiment=synthetic_table4",)
    assert sweep.recipe("table4", "activitynet", "/d").base == ("experiment=activitynet", "data.data_dir=/d")
    assert sweep.recipe("table4", "activitynet", None, ["data.data_dir=/d"]).base == ("experiment=activitynet",)
    assert sweep.recipe("table4", "mydata", "/d").base == ("data=mydata", "data.data_dir=/d")
    assert sweep.recipe("table3", None, None).base == ("experiment=synthetic_cpu",)
    real = sweep.recipe("table3", None, "/anet")
    assert real.base == ("experiment=activitynet", "data.data_dir=/anet") and real.data == "activitynet"
    assert sweep.recipe("table2", None, "/didemo").base == ("experiment=didemo", "data.data_dir=/didemo")
    with pytest.raises(ValueError, match="DATA_DIR"):
        sweep.recipe("table4", "activitynet", None)
    with pytest.raises(ValueError, match="DATA_DIR"):
        sweep.recipe("table3", "activitynet", None)
    with pytest.raises(ValueError, match="'activitynet'"):
        sweep.recipe("table3", "didemo", "/d")
    # the ActivityNet-scale world needs no --data-dir (real annotations, features generated)
    for table, exp in (("table3", "anet_sim_cpu"), ("table4", "anet_sim_table4")):
        rcp = sweep.recipe(table, "anet_sim", None)
        assert rcp.base == (f"experiment={exp}",) and rcp.data == "anet_sim" and "simulated" in rcp.note


def test_plan_is_rows_times_seeds_then_the_prototype():
    jobs = sweep.plan("table4", ["experiment=synthetic_cpu"], [0, 1], ["trainer.max_epochs=1", "model.net.d_model=32"],
                      prototype=True)
    assert [j.name for j in jobs] == [f"{r}_s{s}" for s in (0, 1) for r in ROWS] + ["prototype_s0"]
    assert jobs[1].overrides == ("experiment=synthetic_cpu", "ablation=no_sap_loss", "seed=0",
                                 "trainer.max_epochs=1", "model.net.d_model=32")
    assert jobs[-1].overrides == ("experiment=synthetic_cpu", "model=prototype", "seed=0", "trainer.max_epochs=1")
    assert [j.name for j in sweep.plan("table2", [], [3])] == ["full_s3"]
    assert [j.name for j in sweep.plan("table4", [], [0], rows=["full", "no_sap_loss"])] == \
        ["no_sap_loss_s0", "full_s0"]  # the paper's order
    with pytest.raises(ValueError, match="unknown Table 4 rows"):
        sweep.plan("table4", [], [0], rows=["full", "no_such_row"])
    with pytest.raises(ValueError, match="one trained row"):
        sweep.plan("table3", [], [0], rows=["no_sap_loss"])
    with pytest.raises(ValueError, match="no seed"):
        sweep.plan("table4", [], [])


def test_seeds_parse():
    assert sweep.parse_seeds("0,1,2") == [0, 1, 2] and sweep.parse_seeds("4") == [4]
    for bad in ("a", "0,0", ""):
        with pytest.raises(Exception, match="--seeds"):
            sweep.parse_seeds(bad)


def test_error_line_finds_the_exception():
    log = "Error executing job with overrides: []\nTraceback (most recent call last):\n  File x\n" \
          "ValueError: data.data_dir=/x: no such folder\n\nSet the environment variable HYDRA_FULL_ERROR=1\n"
    assert sweep.error_line(log) == "ValueError: data.data_dir=/x: no such folder"
    assert sweep.error_line("just text\nlast line\n") == "last line"
    assert sweep.error_line("") == "(no output)"


# ----------------------------------------------------------------------------- the runner, with a fake trainer
FAKE_TRAIN = """#!/bin/sh
# stands in for `python -m fsan_lightning.train ...`: fails for the no_sap_loss row, succeeds otherwise
for a in "$@"; do case "$a" in hydra.run.dir=*) dir="${a#hydra.run.dir=}";; esac; done
case "$*" in *ablation=no_sap_loss*) echo "Traceback (most recent call last):"; echo "RuntimeError: boom"; exit 1;; esac
echo '{"seed": 0, "test": {"mIoU": 1.0}}' > "$dir/results.json"
"""


def test_run_job_writes_failed_json_and_skips_done_jobs(tmp_path):
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_TRAIN)
    fake.chmod(0o755)
    jobs = sweep.plan("table4", ["experiment=synthetic_cpu"], [0], rows=["no_sap_loss", "full"])
    bad = sweep.run_job(jobs[0], tmp_path / "sweep", python=str(fake))
    assert bad["status"] == "failed" and bad["error"] == "exit code 1: RuntimeError: boom"
    failure = json.loads((tmp_path / "sweep" / "no_sap_loss_s0" / "failed.json").read_text())
    assert failure["returncode"] == 1 and "hydra.run.dir=" in failure["command"]
    assert failure["log_tail"][-1] == "RuntimeError: boom"
    good = sweep.run_job(jobs[1], tmp_path / "sweep", python=str(fake))
    assert good["status"] == "done" and (tmp_path / "sweep" / "full_s0" / "results.json").is_file()
    again = sweep.run_job(jobs[1], tmp_path / "sweep", python=str(fake))
    assert again["status"].startswith("skipped")


def test_dry_run_prints_one_train_command_per_job(capsys, tmp_path):
    assert sweep.main(["--table", "table4", "--seeds", "0,1", "--sweep-dir", str(tmp_path), "--no-prototype",
                       "--dry-run", "--", "trainer.max_epochs=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    first = shlex.split(lines[0])
    assert first[1:3] == ["-m", "fsan_lightning.train"]
    assert first[3:] == ["experiment=synthetic_table4", "ablation=no_grounding_module", "seed=0",
                         "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}/no_grounding_module_s0"]
    assert sweep.main(["--table", "table4", "--data", "activitynet", "--dry-run"]) == 2


def test_make_targets_call_the_sweep(tmp_path):
    out = subprocess.run(["make", "--no-print-directory", "-n", "ablations", "SEEDS=0,1", "ARGS=a=1 b=2", f"SWEEP_DIR={tmp_path}/s",
                          f"OUT={tmp_path}/o", "DATA=activitynet", "DATA_DIR=/feat"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    cmd = shlex.split(out.strip())
    assert cmd[1:] == ["-m", "fsan_lightning.reproduce.sweep", "--table", "table4", "--data", "activitynet",
                       "--seeds", "0,1", "--data-dir", "/feat", "--sweep-dir", f"{tmp_path}/s", "--out",
                       f"{tmp_path}/o", "--", "a=1", "b=2"]
    for table in ("table2", "table3"):
        out = subprocess.run(["make", "--no-print-directory", "-n", table], cwd=REPO, capture_output=True, text=True, check=True).stdout
        assert shlex.split(out.strip())[1:] == ["-m", "fsan_lightning.reproduce.sweep", "--table", table,
                                                "--seeds", "0", "--"]
    out = subprocess.run(["make", "--no-print-directory", "-n", "table3", "DATA=anet_sim"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert shlex.split(out.strip())[1:] == ["-m", "fsan_lightning.reproduce.sweep", "--table", "table3", "--data",
                                            "anet_sim", "--seeds", "0", "--"]
    usage = subprocess.run(["make", "figures"], cwd=REPO, capture_output=True, text=True, check=False)
    assert usage.returncode != 0 and "RUN=<run dir>" in usage.stderr


# ----------------------------------------------------------------------------- end to end (slow)
def _args(world: Path) -> str:
    """ARGS for make: the tiny world and model, one epoch; quoted for the recipe's shell."""
    return " ".join(shlex.quote(a) for a in [*world_overrides(world), *TINY_MODEL, *QUIET, "trainer.max_epochs=1"])


@pytest.mark.slow
def test_make_ablations_end_to_end_with_a_failing_row(tiny_world_dir, tmp_path):
    """`make ablations` on the tiny world: five rows (+ the prototype), one fails, the rest is aggregated."""
    sweep_dir, out = tmp_path / "sweep", tmp_path / "table"
    # head.hidden=-1 breaks only the MLP grounding head, i.e. the "w/o grounding module" row
    args = _args(tiny_world_dir) + " model.net.head.hidden=-1"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run(["make", "-C", str(REPO), "ablations", f"ARGS={args}", "SEEDS=0",
                           f"SWEEP_DIR={sweep_dir}", f"OUT={out}", f"PY={sys.executable}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode != 0, proc.stdout  # make reports the failed job (the sweep exits 3)
    assert "1 of" in proc.stderr and "no_grounding_module_s0" in proc.stderr, proc.stderr[-3000:]
    table = {r["key"]: r for r in csv.DictReader((out / "table4.csv").open())}
    assert table["no_grounding_module"]["status"] == "failed"
    failure = json.loads((sweep_dir / "no_grounding_module_s0" / "failed.json").read_text())
    assert "negative dimension" in failure["error"]
    for row in ROWS[1:]:
        results = json.loads((sweep_dir / f"{row}_s0" / "results.json").read_text())
        cfg = yaml.safe_load((sweep_dir / f"{row}_s0" / ".hydra" / "config.yaml").read_text())
        key, value = ABLATION_SWITCH.get(row, ("sap_loss", True))
        assert cfg["model"][key] == value and cfg["trainer"]["max_epochs"] == 1
        assert table[row]["status"] == "ok" and table[row]["seeds"] == "0"
        for metric in ("R1@0.5", "R5@0.3", "mIoU"):
            assert float(table[row][f"{metric}_mean"]) == pytest.approx(results["test"][metric], abs=1e-4)
    assert table["random"]["status"] == "ok" and "Nv 16" in table["random"]["note"]
    if sweep.has_model_config("prototype"):
        assert table["prototype"]["status"] == "ok"
    md = (out / "table4.md").read_text()
    assert "ours on synthetic" in md and "sweep --table table4" in md
    assert json.loads((sweep_dir / "sweep.json").read_text())["outcomes"][0]["status"] == "failed"


@pytest.mark.slow
def test_table2_recipe_on_a_synthetic_didemo_world(tmp_path):
    """Table 2 without real features: the DiDeMo-format synthetic world, scored with the DiDeMo protocol."""
    world = {k: v for k, v in TINY_WORLD.items() if k not in ("min_rows", "max_rows")}
    cmd = [sys.executable, "-m", "fsan_lightning.reproduce.sweep", "--table", "table2", "--sweep-dir",
           str(tmp_path / "sweep"), "--out", str(tmp_path / "t"), "--synthetic-dir", str(tmp_path / "world"),
           *[f"--synthetic-set={k}={v}" for k, v in world.items()], "--",
           *TINY_MODEL, *QUIET, "trainer.max_epochs=1", "data.batch_size=8"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "world" / "didemo_features.hdf5").is_file()
    results = json.loads((tmp_path / "sweep" / "full_s0" / "results.json").read_text())
    assert {"Rank@1", "Rank@5", "mIoU"} <= set(results["test"]) and "R1@0.5" not in results["test"]
    table = {r["key"]: r for r in csv.DictReader((tmp_path / "t" / "table2.csv").open())}
    assert list(table) == ["random", "full"]
    assert float(table["full"]["Rank@1_mean"]) == pytest.approx(results["test"]["Rank@1"], abs=1e-4)
    assert table["full"]["Rank@1_paper"] == "19.4000" and table["random"]["Rank@1_paper"] == "3.7500"
    assert "DiDeMo's format" in (tmp_path / "t" / "table2.md").read_text()
