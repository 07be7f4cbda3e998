"""How right a checkpoint's self-training teachers are: a DIAGNOSTIC of issue 19 (it reads training timestamps).

    python experiments/localization/teacher_accuracy.py CKPT EXPERIMENT [the run's overrides...]

Every teacher of ``models.self_training.TEACHERS`` that the network can serve grounds every training sentence
(as ``FSANModule.refresh_pseudo_moments`` does before an epoch); each pseudo-moment is then compared with the
sentence's ground-truth moment, which training never reads: R1@0.5 and mean IoU over the training queries and,
on a world with ``repeated_events.json`` (the context world), over the repeated events' queries apart, with
the share whose pseudo-moment lies on the twin instead. Records: experiments/localization/README.md, session 15.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import load_checkpoint  # noqa: E402

from fsan_lightning import ops  # noqa: E402
from fsan_lightning.models.self_training import TEACHERS  # noqa: E402


def clip_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of bool clip masks [N, Nv] -> float [N]."""
    return (a & b).sum(1) / (a | b).sum(1).clamp(min=1)


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    ckpt, experiment, *overrides = sys.argv[1:]
    cfg, dm, module = load_checkpoint(ckpt, experiment, overrides)
    module.eval()
    joint = float(cfg.model.loss.get("self_training", {}).get("joint", 1.0))
    ds = dm._datasets["train"]
    queries = [ds.queries[i] for i in range(len(ds))]
    world = Path(cfg.data.data_dir)
    twins_file = world / "repeated_events.json"
    twins = json.loads(twins_file.read_text()).get("train.json", {}) if twins_file.exists() else {}
    qid_row = {q.qid: i for i, q in enumerate(queries)}
    # the ground-truth moment (and the twin's) of every training item as clip masks, read for this record only
    gt_of, twin_of = {}, {}
    ds.train = False
    try:
        for b in dm._loader(ds, 256):
            valid, nv = b["video_mask"].sum(1), b["video_mask"].shape[1]
            gts = ops.seconds_to_clip_mask(b["gt"], b["duration"], valid, nv)
            twin_gt = torch.tensor([queries[qid_row[twins[q]]].moments[0] if q in twins else (0.0, 0.0)
                                    for q in b["qid"]], dtype=b["gt"].dtype)
            twin_masks = ops.seconds_to_clip_mask(twin_gt, b["duration"], valid, nv)
            for k, q in enumerate(b["qidx"].tolist()):
                gt_of[q] = gts[k]
                twin_of[q] = twin_masks[k] if b["qid"][k] in twins else torch.zeros_like(gts[k])
    finally:
        ds.train = True
    for name, cls in TEACHERS.items():
        if name.startswith("base_") and not hasattr(module.net, "interaction_bypassed"):
            continue
        qidx, moments = cls(joint)(module.net, dm.fit_dataloader())
        gt = torch.stack([gt_of[q] for q in qidx.tolist()])
        tw = torch.stack([twin_of[q] for q in qidx.tolist()])
        own, on_twin = clip_iou(moments, gt), clip_iou(moments, tw)
        repeated = torch.tensor([queries[q].qid in twins for q in qidx.tolist()])
        line = f"{name:22s} all {len(own)}: R1@0.5 {100 * (own >= 0.5).float().mean():.1f} mIoU {100 * own.mean():.1f}"
        for tag, keep in (("repeated", repeated), ("unique", ~repeated)):
            if twins and keep.any():
                line += (f" | {tag} {int(keep.sum())}: R1@0.5 {100 * (own[keep] >= 0.5).float().mean():.1f}"
                         + (f" twin {100 * (on_twin[keep] >= 0.5).float().mean():.1f}" if tag == "repeated" else ""))
        print(line, flush=True)


if __name__ == "__main__":
    main()
