"""Table logic and aggregation of a sweep: known means and stds on hand-written results.json files."""
from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import pytest
import yaml

from fsan_lightning.reproduce import runs
from fsan_lightning.reproduce.aggregate import aggregate, random_metrics
from fsan_lightning.reproduce.aggregate import main as aggregate_main
from fsan_lightning.reproduce.paper import RECALL_COLUMNS, TABLE2, TABLE3, TABLE4, table_spec
from fsan_lightning.reproduce.tables import (
    JobRecord,
    build_rows,
    format_cell,
    mean_std,
    render_csv,
    render_markdown,
    setting_row,
)

FSAN = "fsan_lightning.lit.module.FSANModule"
SWITCHES = {"grounding_head": "sap", "sap_loss": True, "cross_attn": True, "inner_attn": True}


# ----------------------------------------------------------------------------- pure table logic
def test_mean_std_is_the_sample_std():
    assert mean_std([10.0, 20.0, 30.0]) == (20.0, 10.0)
    m, s = mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3) and s == pytest.approx(math.sqrt(7 / 3))  # sum of squares 42/9, / (3-1)
    assert mean_std([5.0]) == (5.0, None)
    with pytest.raises(ValueError, match="no values"):
        mean_std([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_std([1.0, float("nan")])


def test_setting_row_keeps_failed_jobs_out_of_the_mean():
    jobs = [JobRecord("full", 0, {"mIoU": 10.0, "R1@0.5": 4.0}), JobRecord("full", 1, None, error="boom"),
            JobRecord("full", 2, {"mIoU": 14.0, "R1@0.5": 6.0})]
    row = setting_row("full", "full model", jobs, ["R1@0.5", "mIoU"], {"mIoU": 36.10})
    assert row.mean == {"R1@0.5": 5.0, "mIoU": 12.0}
    assert row.std["mIoU"] == pytest.approx(math.sqrt(8.0))
    assert row.seeds == [0, 2] and [j.seed for j in row.failed] == [1]
    assert row.status == "partial"
    assert format_cell(row, "mIoU") == "12.00 ± 2.83 (36.10)"
    assert format_cell(row, "R1@0.5") == "5.00 ± 1.41"       # the paper row gives no R1@0.5 here
    failed = setting_row("x", "x", [JobRecord("x", 0, None, error="e")], ["mIoU"], {"mIoU": 1.0})
    assert failed.status == "failed" and format_cell(failed, "mIoU") == "failed (1.00)"
    not_run = setting_row("y", "y", [], ["mIoU"])
    assert not_run.status == "not run" and format_cell(not_run, "mIoU") == "–"


def test_rows_follow_the_paper_order_with_baselines_first():
    jobs = [JobRecord("full", 0, {"mIoU": 1.0}), JobRecord("prototype", 0, {"mIoU": 2.0}),
            JobRecord("no_sap_loss+no_cross_attn", 0, {"mIoU": 3.0}), JobRecord("no_sap_loss", 0, {"mIoU": 4.0})]
    rows = build_rows(TABLE4, jobs, RECALL_COLUMNS)
    assert [r.key for r in rows] == ["prototype", "no_grounding_module", "no_sap_loss", "no_cross_attn",
                                     "no_inner_attn", "full", "no_sap_loss+no_cross_attn"]
    assert rows[0].label == "Prototype (no training)" and rows[0].kind == "baseline"


def test_markdown_and_csv_render_every_row():
    rows = [setting_row("full", "FSAN", [JobRecord("full", 0, {"Rank@1": 10.0, "Rank@5": 50.0, "mIoU": 30.0}),
                                         JobRecord("full", 1, {"Rank@1": 12.0, "Rank@5": 52.0, "mIoU": 32.0})],
                        TABLE2.columns, TABLE2.paper["full"])]
    md = render_markdown("T", TABLE2.columns, rows, ["a note"], {"commit": "abc"})
    assert "| FSAN | 0,1 | 11.00 ± 1.41 (19.40) | 51.00 ± 1.41 (57.85) | 31.00 ± 1.41 (31.92) |" in md
    assert "- a note" in md and "- commit: abc" in md
    (line,) = list(csv.DictReader(io.StringIO(render_csv(TABLE2.columns, rows))))
    assert line["Rank@1_mean"] == "11.0000" and line["Rank@1_std"] == "1.4142" and line["Rank@1_paper"] == "19.4000"
    assert line["seeds"] == "0 1" and line["status"] == "ok"


def test_paper_numbers_match_the_references():
    assert TABLE4.paper["full"] == {"R1@0.1": 78.45, "R1@0.3": 55.11, "R1@0.5": 29.43, "R5@0.1": 92.59,
                                    "R5@0.3": 76.79, "R5@0.5": 63.32, "mIoU": 36.10}
    assert TABLE4.paper["no_sap_loss"]["R1@0.1"] == 65.59 and TABLE4.paper["no_grounding_module"]["mIoU"] == 34.57
    assert TABLE3.paper["random"]["R5@0.5"] == 24.49 and "mIoU" not in TABLE3.paper["full"]
    assert TABLE2.paper["full"] == {"Rank@1": 19.40, "Rank@5": 57.85, "mIoU": 31.92}
    with pytest.raises(ValueError, match="unknown table"):
        table_spec("table9")


# ----------------------------------------------------------------------------- run directories
@pytest.mark.parametrize("model, expected", [
    ({}, "full"),
    ({"_target_": FSAN, **SWITCHES}, "full"),
    ({"grounding_head": "mlp"}, "no_grounding_module"),
    ({"sap_loss": False}, "no_sap_loss"),
    ({"cross_attn": False}, "no_cross_attn"),
    ({"inner_attn": False}, "no_inner_attn"),
    ({"sap_loss": False, "cross_attn": False}, "no_sap_loss+no_cross_attn"),
    ({"grounding_head": "other"}, "grounding_head=other"),
    ({"_target_": "fsan_lightning.lit.baselines.PrototypeModule"}, "prototype"),
])
def test_setting_of_a_model_config(model, expected):
    assert runs.setting_of(model) == expected


def write_job(run_dir: Path, seed: int, model: dict | None = None, test: dict | None = None, *,
              choices: dict | None = None, results: bool = True, failed: str | None = None,
              report: dict | None = None, predictions: list[str] | None = None) -> Path:
    """A run directory as `python -m fsan_lightning.train` leaves it (only the files aggregation reads)."""
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = {"seed": seed, "model": {"_target_": FSAN, **SWITCHES, **(model or {})},
           "data": {"dataset": "synthetic", "num_clips": 16}, "trainer": {"max_epochs": 2}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {"model": "fsan_small", "trainer": "cpu", **(choices or {})}}}}))
    if results:
        body = {"seed": seed, "commit": "c0ffee", **({"test": test} if test is not None else {})}
        (run_dir / "results.json").write_text(json.dumps(body))
    if failed:
        (run_dir / "failed.json").write_text(json.dumps({"error": failed}))
    if report:
        (run_dir / "data_report.json").write_text(json.dumps(report))
    if predictions is not None:
        (run_dir / "predictions_test.jsonl").write_text(
            "".join(json.dumps({"qid": q, "pred_relevant_windows": [[0, 1, 0.5]]}) + "\n" for q in predictions))
    return run_dir


def metrics(**values) -> dict:
    base = {k: 50.0 for k in RECALL_COLUMNS}
    base.update({k.replace("_", "@").replace("R1@", "R1@0.").replace("R5@", "R5@0."): v for k, v in values.items()})
    return base


@pytest.fixture
def fake_sweep(tmp_path, tiny_world_dir) -> Path:
    sweep = tmp_path / "sweep"
    report = {"dataset": "synthetic", "data_dir": str(tiny_world_dir), "num_clips": 16,
              "files": {"test": str(tiny_world_dir / "val_2.json")}}
    qids = [q.qid for q in _test_queries(tiny_world_dir)][:5]
    for seed, (r15, miou) in enumerate([(10.0, 1.0), (20.0, 2.0), (30.0, 4.0)]):
        write_job(sweep / f"full_s{seed}", seed, test={**metrics(), "R1@0.5": r15, "mIoU": miou},
                  choices={"ablation": "full"}, report=report, predictions=qids)
    write_job(sweep / "no_sap_loss_s0", 0, {"sap_loss": False}, test={**metrics(), "mIoU": 7.5})
    write_job(sweep / "no_sap_loss_s1", 1, {"sap_loss": False}, results=False)            # crashed
    write_job(sweep / "no_cross_attn_s0", 0, {"cross_attn": False}, results=False,
              failed="exit code 1: RuntimeError: out of memory")
    write_job(sweep / "no_inner_attn_s0", 0, {"inner_attn": False}, test=None)          # test=false
    proto = write_job(sweep / "prototype_s0", 0, {"_target_": "fsan_lightning.lit.baselines.PrototypeModule"},
                      test={**metrics(), "mIoU": 21.0}, choices={"model": "prototype"})
    (proto / "wandb").mkdir()  # subfolders of a run directory are not searched
    return sweep


def _test_queries(world: Path):
    from fsan_lightning.data.readers import read_annotations

    return read_annotations("synthetic", world / "val_2.json")[0]


def test_aggregate_fake_sweep_known_means(fake_sweep, tmp_path, tiny_world_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "table"
    result = aggregate([fake_sweep], "table4", "synthetic", out, command="make ablations")
    assert result.wandb_dir is None and not (fake_sweep / "wandb_tables").exists()
    rows = {r.key: r for r in result.rows}
    assert [r.key for r in result.rows] == ["random", "prototype", "no_grounding_module", "no_sap_loss",
                                            "no_cross_attn", "no_inner_attn", "full"]
    full = rows["full"]
    assert full.seeds == [0, 1, 2]
    assert full.mean["R1@0.5"] == 20.0 and full.std["R1@0.5"] == 10.0
    assert full.mean["mIoU"] == pytest.approx(7 / 3) and full.std["mIoU"] == pytest.approx(math.sqrt(7 / 3))
    assert full.mean["R5@0.3"] == 50.0 and full.std["R5@0.3"] == 0.0
    assert rows["no_sap_loss"].status == "partial" and rows["no_sap_loss"].mean["mIoU"] == 7.5
    assert "no results.json" in rows["no_sap_loss"].failed[0].error
    assert rows["no_cross_attn"].status == "failed"
    assert rows["no_cross_attn"].failed[0].error == "exit code 1: RuntimeError: out of memory"
    assert "no test metrics" in rows["no_inner_attn"].failed[0].error
    assert rows["no_grounding_module"].status == "not run"
    assert rows["prototype"].mean["mIoU"] == 21.0 and rows["prototype"].label == "Prototype (no training)"

    # the Random row: the metric function on the 5 queries the jobs tested, with their Nv
    from fsan_lightning.metrics import random_baseline

    queries = _test_queries(tiny_world_dir)[:5]
    expected = random_baseline([q.duration for q in queries], [q.moments[0] for q in queries], num_clips=16,
                               draws=10, seed=0)
    for key in RECALL_COLUMNS:
        assert rows["random"].mean[key] == pytest.approx(expected[key])
    assert "Nv 16, 10 draws" in rows["random"].note and "5 tested of" in rows["random"].note

    md = (out / "table4.md").read_text()
    assert "| full model | 0,1,2 | 50.00 ± 0.00 (78.45) | 50.00 ± 0.00 (55.11) | 20.00 ± 10.00 (29.43) |" in md
    assert "w/o cross-modal attention **(failed)** | failed: 0 | failed (74.51)" in md
    assert "no_cross_attn seed 0" in md and "out of memory" in md
    assert "command: `make ablations`" in md and "commit of the runs: c0ffee" in md and "date: " in md
    table = {r["key"]: r for r in csv.DictReader((out / "table4.csv").open())}
    assert table["full"]["mIoU_mean"] == "2.3333" and table["full"]["mIoU_std"] == "1.5275"
    assert table["full"]["mIoU_paper"] == "36.1000"
    assert table["no_sap_loss"]["seeds"] == "0" and table["no_sap_loss"]["failed_seeds"] == "1"
    assert table["no_cross_attn"]["status"] == "failed" and table["no_grounding_module"]["status"] == "not run"


def test_extra_rows_and_hydra_multirun_layout(tmp_path, monkeypatch):
    """A Hydra multirun (0/, 1/ subfolders) aggregates too; --extra adds a row; a repeated run counts once."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = tmp_path / "multirun"
    write_job(sweep / "0", 0, {"cross_attn": False}, test=metrics(R1_5=8.0))
    write_job(sweep / "1", 0, test=metrics(R1_5=12.0))
    extra = write_job(tmp_path / "elsewhere", 3, {"_target_": "x.MeanModule"}, test=metrics(R1_5=3.0))
    result = aggregate([sweep], "table4", "synthetic", tmp_path / "t", extras=[("mean", extra / "results.json"),
                                                                              ("again", sweep / "1")],
                       with_random=False)
    rows = {r.key: r for r in result.rows}
    assert rows["mean"].kind == "baseline" and rows["mean"].mean["R1@0.5"] == 3.0
    assert rows["no_cross_attn"].mean["R1@0.5"] == 8.0 and rows["full"].mean["R1@0.5"] == 12.0
    assert rows["full"].seeds == [0] and "again" not in rows
    assert result.rows[0].key == "mean"
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        aggregate([sweep], "table4", "synthetic", tmp_path / "t", extras=[("x", tmp_path / "nothing.json")])


def test_aggregate_cli_errors_name_the_problem(tmp_path, capsys):
    assert aggregate_main([str(tmp_path / "missing"), "--table", "table4"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert aggregate_main([str(tmp_path / "empty"), "--table", "table4"]) == 2
    assert "no run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        aggregate_main([str(tmp_path), "--table", "table4", "--extra", "no-equals-sign"])


def test_didemo_columns_and_random_ranking(tmp_path, monkeypatch):
    """DiDeMo-protocol runs get Table 2's columns; the Random row ranks the 21 moments at random."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    ann = [{"annotation_id": i, "description": f"a man does thing {i}", "video": f"v{i}.mp4", "num_segments": 6,
            "times": [[i % 6, i % 6]] * 4, "dl_link": ""} for i in range(12)]
    (tmp_path / "test_data.json").write_text(json.dumps(ann))
    report = {"dataset": "didemo", "data_dir": str(tmp_path), "num_clips": 6,
              "files": {"test": str(tmp_path / "test_data.json")}}
    write_job(tmp_path / "sweep" / "full_s0", 0, test={"Rank@1": 20.0, "Rank@5": 60.0, "mIoU": 30.0},
              report=report)
    result = aggregate([tmp_path / "sweep"], "table2", "synthetic", tmp_path / "t")
    assert result.columns == ("Rank@1", "Rank@5", "mIoU")
    random_row = result.rows[0]
    assert random_row.key == "random" and random_row.paper == {"Rank@1": 3.75, "Rank@5": 22.5, "mIoU": 22.64}
    assert "21 moments, 10 draws" in random_row.note
    # one correct moment among 21, 4 identical annotators: P(rank 1) = 1/21, P(rank <= 5) = 5/21
    split = runs.test_split_of(tmp_path / "sweep" / "full_s0")
    many, _ = random_metrics(split, draws=400, seed=1)
    assert many["Rank@1"] == pytest.approx(100 / 21, abs=1.5) and many["Rank@5"] == pytest.approx(500 / 21, abs=3.0)
    md = (tmp_path / "t" / "table2.md").read_text()
    assert "| FSAN | 0 | 20.00 (19.40) | 60.00 (57.85) | 30.00 (31.92) |" in md


def test_random_row_refuses_a_changed_annotation_file(tmp_path, tiny_world_dir):
    report = {"dataset": "synthetic", "data_dir": str(tiny_world_dir), "num_clips": 16,
              "files": {"test": str(tiny_world_dir / "val_2.json")}}
    run = write_job(tmp_path / "r", 0, test=metrics(), report=report, predictions=["not-a-qid"])
    with pytest.raises(ValueError, match="not in the annotation file"):
        random_metrics(runs.test_split_of(run))


def test_wandb_table_is_logged_offline(fake_sweep, tmp_path, monkeypatch):
    from helpers import read_records

    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    result = aggregate([fake_sweep], "table4", "synthetic", tmp_path / "t", with_random=False)
    (run,) = sorted((result.wandb_dir / "wandb").glob("offline-run-*"))
    (run_file,) = run.glob("*.wandb")
    records = []
    for _ in range(300):  # wandb-core writes the offline file after finish() returns
        records = read_records(run_file) if run_file.stat().st_size > 7 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    keys = set()
    for r in records:
        if r.WhichOneof("record_type") == "history":
            keys.update(i.key or "/".join(i.nested_key) for i in r.history.item)
    assert any(k.startswith("table4/synthetic") for k in keys), keys
    tables = list((run / "files" / "media" / "table").rglob("*.table.json"))
    assert tables, "the wandb.Table was not written"
    content = json.loads(tables[0].read_text())
    assert "full model" in [row[0] for row in content["data"]]


def test_random_rows_on_the_real_test_splits(shared_data):
    """The tables' Random rows on the real files: the numbers docs/metrics.md records (seed 0, 10 draws)."""
    anet = runs.TestSplit("activitynet", shared_data / "activitynet_captions" / "val_2.json", 64, None, None)
    got, note = random_metrics(anet)
    assert (round(got["R1@0.1"], 2), round(got["R1@0.5"], 2), round(got["R5@0.5"], 2), round(got["mIoU"], 2)) == \
        (46.76, 14.08, 43.16, 18.98)
    assert note == "uniform clip segments, Nv 64, 10 draws"
    didemo = runs.TestSplit("didemo", shared_data / "didemo" / "test_data.json", 6, None, None)
    got, _ = random_metrics(didemo)
    assert (round(got["Rank@1"], 2), round(got["Rank@5"], 2), round(got["mIoU"], 2)) == (3.64, 22.49, 22.84)
