"""The held-out matching loss: the loss terms on validation sentences and videos, logged each epoch."""
from __future__ import annotations

import csv
import math



def test_heldout_triplet_is_logged_each_validation_epoch(trained_run):
    run_dir, _, cfg = trained_run
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    held = [float(r["val/heldout_triplet"]) for r in rows if r.get("val/heldout_triplet")]
    assert len(held) == cfg.trainer.max_epochs and all(math.isfinite(v) and v >= 0 for v in held)
    assert any(r.get("train/loss_triplet") for r in rows)  # the training one beside it
