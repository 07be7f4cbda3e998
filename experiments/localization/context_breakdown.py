"""Top-1 grounding on the context world, split into the repeated events' queries and the others.

    python experiments/localization/context_breakdown.py PREDICTIONS_JSONL WORLD_DIR [ANNOTATION_FILE]

PREDICTIONS_JSONL: a run's ``predictions_test.jsonl`` (or any file of rows with ``qid`` and
``pred_relevant_windows``, best first). WORLD_DIR: the world generated with ``repeat_fraction`` > 0
(``experiment=context_cpu``: ``.data_cache/synthetic_context``), holding ``repeated_events.json``.
ANNOTATION_FILE: the split the predictions are of (default ``val_2.json``, the test split). For
validation (what research compares), predict the val split with the eval entry point:
``python -m fsan_lightning.eval ckpt_path=CKPT experiment=context_cpu +data.test_file=val_1.json``, then pass
its ``predictions_test.jsonl`` and ``val_1.json``.

For the repeated events' queries it also counts the top-1 windows that land on the *twin* (IoU >= 0.5 with
the other occurrence's moment): a model that reads only the sentence's own words hits the right occurrence
and its twin about equally often; one that reads the order of the video's events hits the twin less.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fsan_lightning.data.readers import read_annotations


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def breakdown(predictions: list[dict], queries: dict, twins: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per group (``repeated``, ``unique``, ``all``): queries, R1@0.5, mIoU (percent) and, for ``repeated``,
    ``twin_R1@0.5`` (top-1 on the other occurrence). Every prediction's qid must be in ``queries``."""
    groups: dict[str, list[tuple[float, float]]] = {"repeated": [], "unique": []}
    for row in predictions:
        q = queries[row["qid"]]
        top = tuple(row["pred_relevant_windows"][0][:2])
        own = iou(top, q.moments[0])
        twin = iou(top, queries[twins[row["qid"]]].moments[0]) if row["qid"] in twins else 0.0
        groups["repeated" if row["qid"] in twins else "unique"].append((own, twin))
    groups["all"] = groups["repeated"] + groups["unique"]
    out = {}
    for name, rows in groups.items():
        n = max(1, len(rows))
        out[name] = {"queries": len(rows), "R1@0.5": 100 * sum(o >= 0.5 for o, _ in rows) / n,
                     "mIoU": 100 * sum(o for o, _ in rows) / n}
        if name == "repeated":
            out[name]["twin_R1@0.5"] = 100 * sum(t >= 0.5 for _, t in rows) / n
    return out


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    predictions_path, world = Path(sys.argv[1]), Path(sys.argv[2])
    split = sys.argv[3] if len(sys.argv) > 3 else "val_2.json"
    twins = json.loads((world / "repeated_events.json").read_text()).get(split, {})
    queries = {q.qid: q for q in read_annotations("synthetic", world / split)[0]}
    rows = [json.loads(line) for line in predictions_path.read_text().splitlines() if line.strip()]
    for name, values in breakdown(rows, queries, twins).items():
        print(name, " ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))


if __name__ == "__main__":
    main()
