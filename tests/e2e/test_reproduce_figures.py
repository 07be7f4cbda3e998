"""Figures 3 and 4 from a trained run: PNG size, non-blank, and Figure 4's numbers against the metric."""
from __future__ import annotations

import csv
import itertools
import json
import math
import shutil

import numpy as np
import pytest

from fsan_lightning.reproduce import figures
from fsan_lightning.reproduce.figures import QueryResult


def _png(path):
    import matplotlib.image as mpimg

    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3]


def test_default_bins_are_never_empty():
    durations = [10.0, 10.0, 20.0, 30.0, 30.0, 30.0, 40.0, 55.5]
    edges = figures.default_bins(durations, n=4)
    assert edges[0] == 0.0 and edges[-1] == math.inf
    assert all(b > a for a, b in itertools.pairwise(edges))
    from fsan_lightning.metrics import length_breakdown

    rows = length_breakdown(durations, [0.5] * len(durations), edges)
    assert all(r["count"] > 0 for r in rows) and sum(r["count"] for r in rows) == len(durations)
    # distinct lengths 10, 20, 30, 40, 55.5 in 4 bins: cuts after the round(k * 5/4) = 1st, 2nd, 4th
    # of them, at the midpoints 15, 25 and 47.75 (rounded to 0.1 s)
    assert edges == [0.0, 15.0, 25.0, 47.8, math.inf]
    assert figures.default_bins([7.0]) == [0.0, math.inf]
    with pytest.raises(ValueError, match="no duration"):
        figures.default_bins([])


def test_choose_queries_spreads_over_the_ranking():
    results = [QueryResult(f"q{i}", "v", 10.0, iou) for i, iou in enumerate([0.1, 0.9, 0.5, 0.3, 0.7])]
    assert figures.choose_queries(results, 3) == ["q1", "q2", "q0"]  # best, middle, worst
    assert figures.choose_queries(results, 10) == ["q1", "q4", "q2", "q3", "q0"]
    with pytest.raises(ValueError):
        figures.choose_queries(results, 0)


def test_figure4_matches_the_test_metric(trained_run, tmp_path):
    run_dir, results, _ = trained_run
    png, table, per_query = figures.figure4(run_dir, tmp_path)
    image = _png(png)
    assert image.shape[:2] == (420, 700) and float(image.var()) > 1e-3
    # the mean of the per-query IoUs is the run's test mIoU (predictions are rounded to 1e-4 s)
    assert 100 * np.mean([r.iou for r in per_query]) == pytest.approx(results["test"]["mIoU"], abs=0.05)
    assert sum(r["count"] for r in table) == len(per_query)
    rows = list(csv.DictReader((tmp_path / "figure4_length.csv").open()))
    assert [int(r["count"]) for r in rows] == [r["count"] for r in table]
    _, table2, _ = figures.figure4(run_dir, tmp_path / "b", bins=[0, 50, math.inf])
    assert [r["count"] for r in table2] == [sum(1 for q in per_query if q.duration < 50),
                                            sum(1 for q in per_query if q.duration >= 50)]


def test_figure3_draws_the_chosen_queries(trained_run, tmp_path):
    run_dir, _, cfg = trained_run
    paths = figures.figure3(run_dir, tmp_path, cfg=cfg, queries=2)
    assert len(paths) == 2
    for path in paths:
        image = _png(path)
        assert image.shape[0] >= 250 and image.shape[1] >= 400
        assert float(image.var()) > 1e-3  # not blank
    preds = {json.loads(line)["qid"]: json.loads(line) for line in (run_dir / "predictions_test.jsonl").open()}
    qid = min(preds)
    (one,) = figures.figure3(run_dir, tmp_path / "one", cfg=cfg, qids=[qid])
    assert one.name.startswith("figure3_00_")
    with pytest.raises(ValueError, match="not in the run's test split"):
        figures.figure3(run_dir, tmp_path, cfg=cfg, qids=["no-such-query"])


def test_cli_on_a_copied_run_directory(trained_run, tmp_path, capsys):
    """The CLI recomposes the config from .hydra/config.yaml and finds the checkpoint of a moved run."""
    from omegaconf import OmegaConf

    run_dir, _, cfg = trained_run
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved, ignore=shutil.ignore_patterns("figures"))
    (moved / ".hydra").mkdir()
    OmegaConf.save(cfg, moved / ".hydra" / "config.yaml")
    ckpt = json.loads((moved / "results.json").read_text())["checkpoint"]
    assert figures.selected_checkpoint(moved).parent == moved / "checkpoints"
    assert figures.selected_checkpoint(moved).name == ckpt.rsplit("/", 1)[-1]
    assert figures.main([str(moved), "--queries", "1", "--out", str(tmp_path / "figs")]) == 0
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written[0].startswith("figure3_00_") and "figure4_length.png" in written
    assert "mIoU" in capsys.readouterr().out
    assert figures.main([str(tmp_path / "nothing")]) == 2
