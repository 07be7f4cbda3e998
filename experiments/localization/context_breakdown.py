"""Top-1 grounding on the context world, split into the repeated events' queries and the others.

    python experiments/localization/context_breakdown.py PREDICTIONS_JSONL WORLD_DIR [ANNOTATION_FILE]
    python experiments/localization/context_breakdown.py --ckpt CKPT [the run's overrides...]

The second form reads a checkpoint of an ``experiment=context_cpu`` run on the **validation** split directly
(the overrides must rebuild the run's network; ``experiment=context_cpu`` is added first) and prints the
breakdown of its top-1 moments, and for an ``attached_two_stage`` network also of its base map (the same
weights with the interaction bypassed).

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

import contextlib
import json
import sys
from pathlib import Path

import torch

from fsan_lightning.data.readers import read_annotations

sys.path.insert(0, str(Path(__file__).resolve().parent))


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


def predicted_rows(module, loader) -> list[dict]:
    """``{"qid", "pred_relevant_windows"}`` per query of ``loader``, ranked by ``module`` as evaluation does."""
    rows = []
    module.eval()
    with torch.no_grad():
        for batch in loader:
            _, _, windows = module.rank(batch)
            rows += [{"qid": q, "pred_relevant_windows": w.tolist()} for q, w in zip(batch["qid"], windows)]
    return rows


def from_checkpoint(ckpt: str, overrides: list[str]) -> None:
    from sweep import load_checkpoint  # beside this script; imported here so that the test imports breakdown alone

    cfg, dm, module = load_checkpoint(ckpt, "context_cpu", overrides)
    world, split = Path(cfg.data.data_dir), "val_1.json"
    twins = json.loads((world / "repeated_events.json").read_text()).get(split, {})
    queries = {q.qid: q for q in read_annotations("synthetic", world / split)[0]}
    readings = [("interacted" if hasattr(module.net, "interaction_bypassed") else "map", contextlib.nullcontext())]
    if hasattr(module.net, "interaction_bypassed"):
        readings.append(("bypassed", module.net.interaction_bypassed()))
    for reading, ctx in readings:
        with ctx:
            rows = predicted_rows(module, dm.val_dataloader())
        for name, values in breakdown(rows, queries, twins).items():
            print(reading, name, " ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in values.items()), flush=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--ckpt":
        return from_checkpoint(sys.argv[2], sys.argv[3:])
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
