"""Refine a converged network with an added interaction, training the interaction's layers only.

    python experiments/localization/refine.py CHECKPOINT EPOCHS LR [--experiment E] [--loss all|self_training]
        [--teacher fixed|self] [hydra overrides ...]

CHECKPOINT: `make train`'s checkpoint (or any whose weights the new network shares); the overrides add
the interaction, e.g. ``model.net.interaction.kind=local_icim model.net.interaction.layers=2``. A gated
interaction starts as the identity, so epoch "start" reproduces the checkpoint. Only the interaction's
parameters that the checkpoint lacks train (its layers, and a bottleneck's projections); the rest is frozen.
Prints val R1@0.5, mIoU, the held-out triplet and the localization diagnostics per epoch (select on
validation only), then the max-sum threshold re-read on the last maps.

``--loss self_training`` trains the interaction by the self-training term only (docs/model.md, "SAP as
self-training"; give it ``model.sap_loss=true model.loss.weights.self_training=W
model.loss.self_training.start_epoch=0``): the matching loss then never reaches the interaction. Its
pseudo-moments come from the network before the term's first epoch (``--teacher fixed``: the frozen
checkpoint's, when the term trains from epoch 0, as the gated interaction starts as the identity) or are found again before every epoch by the network being refined
(``--teacher self``). ``--experiment`` (default ``synthetic_cpu``) picks the world, e.g. ``anet_sim_cpu``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from fsan_lightning import _entry as runtime
from fsan_lightning import ops
from fsan_lightning.models import MaxSumGrounder

sys.path.insert(0, str(Path(__file__).parent))
from sweep import evaluate  # noqa: E402

THRESHOLDS = (0.25, 0.5, 0.75, 1.0, 1.25)


def threshold_scan(module, loader) -> str:
    """R1@0.5 / mIoU of the content-word max-sum rule at each threshold, on the same forward passes."""
    module.eval()
    ious: dict[float, list[torch.Tensor]] = {a: [] for a in THRESHOLDS}
    with torch.no_grad():
        for batch in loader:
            out, _, _ = module.rank(batch)
            for a in THRESHOLDS:
                sc = MaxSumGrounder("content", a)(out.P, batch["token_mask"], batch["video_mask"], batch["content_mask"])
                w = ops.rank_moments(sc, batch["video_mask"], batch["duration"], 1, None)
                ious[a].append(ops.temporal_iou(w[:, 0, :2], batch["gt"]))
    return " ".join(f"{a}: {100 * (torch.cat(v) >= 0.5).float().mean():.1f}/{100 * torch.cat(v).mean():.1f}"
                    for a, v in ious.items())


def self_training_loss(module, batch) -> torch.Tensor:
    """The self-training term of ``batch`` (carrying ``pseudo_moment``) from the positive pass alone: the
    term reads only (V, S), so the negative passes that ``module.losses`` also runs are skipped (3x fewer rows)."""
    out = module.net(batch["video"], batch["video_mask"], batch["tokens"], batch["token_mask"])
    return module.criterion.self_training.loss(out, batch["token_mask"], batch.get("content_mask"),
                                               batch["pseudo_moment"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("epochs", type=int)
    parser.add_argument("lr", type=float)
    parser.add_argument("--experiment", default="synthetic_cpu")
    parser.add_argument("--loss", choices=("all", "self_training"), default="all")
    parser.add_argument("--teacher", choices=("fixed", "self"), default="fixed")
    args, overrides = parser.parse_known_args()
    ckpt, epochs, lr = args.checkpoint, args.epochs, args.lr
    with initialize_config_module("fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}", "logger=none", *overrides])
    torch.manual_seed(int(cfg.seed))
    dm = runtime.build_datamodule(cfg)
    module = runtime.build_module(cfg, dm)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = module.load_state_dict(state, strict=False)
    module.fit_word_salience(dm)  # when the configured net has a salience the checkpoint lacks
    if unexpected or any(not k.startswith(("net.interaction.", "net.salience.")) for k in missing):
        raise SystemExit(f"the checkpoint does not fit: missing {missing}, unexpected {unexpected}")
    new_parts = {k for k in missing if k.startswith("net.interaction.")}  # the interaction's layers (+ projections)
    trained = []
    for name, p in module.named_parameters():
        p.requires_grad_(name in new_parts)
        if p.requires_grad:
            trained.append(p)
    print(f"training {sum(p.numel() for p in trained):,} parameters of the interaction", flush=True)
    opt = torch.optim.Adam(trained, lr=lr)
    val = dm.val_dataloader()
    r = evaluate(module, val)
    print(f"start R1@0.5={r['R1@0.5']:.1f} mIoU={r['mIoU']:.1f} heldout={r['heldout_triplet']:.3f}", flush=True)
    t0 = time.time()
    if args.loss == "self_training" and not module.criterion.trains_self_training_at(0):
        raise SystemExit("--loss self_training needs model.sap_loss=true model.loss.weights.self_training=W "
                         "model.loss.self_training.start_epoch=0")
    taught = False
    for epoch in range(epochs):
        dm.set_epoch(epoch)
        if args.teacher == "self" or not taught:  # a no-op before the term's start_epoch
            taught = module.refresh_pseudo_moments(dm, epoch)
        loader = dm.train_dataloader()
        shown_mean = 0.0  # of the training triplet (--loss all) or the self-training term (--loss self_training)
        for batch in loader:
            batch = module.with_pseudo_moments(batch, epoch)
            if args.loss == "self_training":
                loss = self_training_loss(module, batch)
                shown = loss
            else:
                losses = module.losses(batch)
                loss, shown = losses["loss"], losses["terms"]["triplet"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            shown_mean += float(shown.detach()) / len(loader)
        r = evaluate(module, val)
        gate = max((float(p.detach().abs()) for n, p in module.named_parameters() if "gate" in n), default=0.0)
        name = "self_training" if args.loss == "self_training" else "triplet"
        print(f"ep{epoch} t={time.time() - t0:.0f}s {name}={shown_mean:.3f} R1@0.5={r['R1@0.5']:.1f} "
              f"mIoU={r['mIoU']:.1f} heldout={r['heldout_triplet']:.3f} c_am_in={r['c_argmax_inside']:.3f} "
              f"len={r['pred_length']:.2f} max|gate|={gate:.3f}", flush=True)
    print("threshold (R1@0.5/mIoU):", threshold_scan(module, val))


if __name__ == "__main__":
    main()
