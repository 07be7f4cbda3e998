"""experiments/localization/context_breakdown.py: the context world's per-group top-1 reading, hand-computed."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers import load_experiment_script


@pytest.fixture(scope="module")
def breakdown():
    return load_experiment_script("localization/context_breakdown.py").breakdown


def test_twin_hits_are_counted_apart_from_own_hits(breakdown):
    queries = {q: SimpleNamespace(moments=[m]) for q, m in
               {"a1": (0.0, 10.0), "a2": (20.0, 30.0), "u1": (0.0, 10.0), "u2": (0.0, 10.0)}.items()}
    twins = {"a1": "a2", "a2": "a1"}
    rows = [{"qid": "a1", "pred_relevant_windows": [[20.0, 30.0, 0.9], [0.0, 10.0, 0.5]]},  # on the twin
            {"qid": "a2", "pred_relevant_windows": [[20.0, 28.0, 0.9]]},                     # IoU 0.8 with its own
            {"qid": "u1", "pred_relevant_windows": [[5.0, 10.0, 0.9]]},                      # IoU 0.5: a hit
            {"qid": "u2", "pred_relevant_windows": [[0.0, 30.0, 0.9]]}]                      # IoU 1/3: a miss
    out = breakdown(rows, queries, twins)
    assert out["repeated"] == pytest.approx({"queries": 2, "R1@0.5": 50.0, "mIoU": 40.0, "twin_R1@0.5": 50.0})
    assert out["unique"] == pytest.approx({"queries": 2, "R1@0.5": 50.0, "mIoU": 100 * (0.5 + 1 / 3) / 2})
    assert out["all"] == pytest.approx({"queries": 4, "R1@0.5": 50.0, "mIoU": 100 * (0.8 + 0.5 + 1 / 3) / 4})
