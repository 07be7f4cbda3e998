"""Where the top-1 moment goes wrong, on validation: a hit, another event of the same video, a boundary
error (too long, too short, shifted), or background.

    python experiments/localization/errors.py CHECKPOINT [hydra overrides ...]

CHECKPOINT: a Lightning checkpoint of `python -m fsan_lightning.train`, or a state dict saved by
``SWEEP_SAVE=PATH python experiments/localization/sweep.py ...`` (then pass the sweep's overrides).
Categories (IoU with the query's moment g, and with the video's other annotated moments):
hit (IoU(g) >= 0.5); other_event (IoU(g) < 0.3 and IoU >= 0.3 with another moment of the video);
boundary_long / boundary_short / boundary_shift (IoU(g) in (0.05, 0.5): predicted length > 1.5x, < 1/1.5x,
else); background (the rest). Needs the validation file's timestamps (ActivityNet layout).
"""
from __future__ import annotations

import json
import sys

import torch
from hydra import compose, initialize_config_module

from fsan_lightning import _entry as runtime


def interval_iou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def category(pred, gt, others) -> str:
    g = interval_iou(pred, gt)
    if g >= 0.5:
        return "hit"
    if g < 0.3 and others and max(interval_iou(pred, t) for t in others) >= 0.3:
        return "other_event"
    if g > 0.05:
        pl, gl = pred[1] - pred[0], gt[1] - gt[0]
        return "boundary_long" if pl > 1.5 * gl else "boundary_short" if pl < gl / 1.5 else "boundary_shift"
    return "background"


def main() -> None:
    ckpt, overrides = sys.argv[1], sys.argv[2:]
    with initialize_config_module("fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=synthetic_cpu", "logger=none", *overrides])
    dm = runtime.build_datamodule(cfg)
    dm.setup("fit")
    module = runtime.build_module(cfg, dm)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    module.load_state_dict(state["state_dict"])
    module.eval()
    annotations = json.loads(dm.files["val"].read_text())
    counts: dict[str, int] = {}
    with torch.no_grad():
        for batch in dm.val_dataloader():
            _, _, windows = module.rank(batch)
            for b, (vid, qid) in enumerate(zip(batch["vid"], batch["qid"])):
                stamps = annotations[vid]["timestamps"]
                k = int(qid.split("#")[1])
                name = category(windows[b, 0, :2].tolist(), stamps[k], [t for i, t in enumerate(stamps) if i != k])
                counts[name] = counts.get(name, 0) + 1
    n = sum(counts.values())
    order = ("hit", "other_event", "boundary_long", "boundary_short", "boundary_shift", "background")
    print(" ".join(f"{k}={100 * counts.get(k, 0) / n:.1f}" for k in order), f"(n={n})")


if __name__ == "__main__":
    main()
