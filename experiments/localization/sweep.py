"""Lean tuning loop for the localization study (no Trainer): the same DataModule, FSANModule,
criterion, ranking and diagnostics as `python -m fsan_lightning.train`, without Lightning's loop.

    python experiments/localization/sweep.py NAME EPOCHS [hydra overrides ...]

Prints per epoch: train losses, val R1@0.3/0.5, mIoU and the localization diagnostics. Test is
never evaluated here (select on validation only); confirm a choice with `make train`.
"""
from __future__ import annotations

import sys
import time

import torch
from hydra import compose, initialize_config_module

from fsan_lightning import _entry as runtime
from fsan_lightning import ops


RULES = {"sc": ("sc", "all", "all"), "sc_cmin": ("sc", "all", "content"), "sc_c": ("sc", "content", "content"),
         "ms": ("maxsum", "all", "all"), "ms_c": ("maxsum", "content", "all")}


def rule_scores(module, out, batch):
    """Top-1 R@0.5 of the alternative grounding rules on the same forward (extra columns)."""
    net, res = module.net, {}
    saved = (net.grounding_rule, net.grounding_tokens, net.sc_min_tokens)
    for name, (rule, tokens, mins) in RULES.items():
        net.grounding_rule, net.grounding_tokens, net.sc_min_tokens = rule, tokens, mins
        sc = net.segment_scores(out, batch)
        w = ops.rank_moments(sc, batch["video_mask"], batch["duration"], 1, None)
        res[name] = ops.temporal_iou(w[:, 0, :2], batch["gt"]) >= 0.5
    net.grounding_rule, net.grounding_tokens, net.sc_min_tokens = saved
    return res


def evaluate(module, loader):
    module.eval()
    module.val_metric.reset()
    diag = {}
    with torch.no_grad():
        for batch in loader:
            out, scores, windows = module.rank(batch)
            module.val_metric.update(batch["qidx"], windows[..., :2], batch["gt"])
            for k, v in rule_scores(module, out, batch).items():
                diag.setdefault("rule_" + k, []).append(v.float() * 100)
            nv, valid = batch["video_mask"].shape[1], batch["video_mask"].sum(1)
            gt = ops.seconds_to_clip_mask(batch["gt"], batch["duration"], valid, nv)
            pred = ops.seconds_to_clip_mask(windows[:, 0, :2], batch["duration"], valid, nv)
            for tag, tm in (("", batch["token_mask"]), ("c_", batch["content_mask"] & batch["token_mask"])):
                keep = tm.any(1)
                st = ops.localization_stats(out.P[keep], tm[keep], batch["video_mask"][keep], gt[keep], pred[keep])
                for k, v in st.items():
                    if tag and k in ("gt_length", "pred_length", "clip_iou"):
                        continue
                    diag.setdefault(tag + k, []).append(v.float())
    res = {k: float(v) for k, v in module.val_metric.compute().items()}
    for k, vs in diag.items():
        v = torch.cat(vs)
        res[k] = float(v[torch.isfinite(v)].mean())
    module.train()
    return res


def main() -> None:
    name, epochs, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with initialize_config_module("fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=synthetic_cpu", "logger=none", *overrides])
    torch.manual_seed(int(cfg.seed))
    dm = runtime.build_datamodule(cfg)
    module = runtime.build_module(cfg, dm)
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    sched = None
    if cfg.model.get("scheduler") == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    val_loader = dm.val_dataloader()
    hp = module.hparams
    t0 = time.time()
    best = None
    for epoch in range(epochs):
        dm.set_epoch(epoch)
        loader = dm.train_dataloader()
        sums, nb = {}, len(loader)
        for bi, batch in enumerate(loader):
            w = runtime_sap_weight(epoch + bi / nb, hp.sap_warmup_epochs, hp.sap_ramp_epochs)
            losses = module.criterion(module.net, batch, sap_weight=w)
            opt.zero_grad()
            losses["loss"].backward()
            opt.step()
            for k in ("loss", "loss_triplet", "loss_inner", "loss_outer", "triplet_video"):
                sums[k] = sums.get(k, 0.0) + float(losses[k].detach()) / nb
        if sched is not None:
            sched.step()
        r = evaluate(module, val_loader)
        if best is None or r["mIoU"] > best[1]["mIoU"]:
            best = (epoch, r)
        print(
            f"{name} ep{epoch} t={time.time() - t0:.0f}s "
            + " ".join(f"{k}={v:.3f}" for k, v in sums.items())
            + f" | R1@0.3={r['R1@0.3']:.1f} R1@0.5={r['R1@0.5']:.1f} mIoU={r['mIoU']:.1f}"
            + f" pin={r['p_inside']:.3f} pout={r['p_outside']:.3f} am_in={r['argmax_inside']:.3f}"
            + f" c_pin={r['c_p_inside']:.3f} c_pout={r['c_p_outside']:.3f} c_am_in={r['c_argmax_inside']:.3f}"
            + f" len={r['pred_length']:.2f}/{r['gt_length']:.2f}"
            + " rules(R1@.5) " + " ".join(f"{k}={r['rule_' + k]:.1f}" for k in RULES),
            flush=True,
        )
    e, r = best
    print(f"{name} BEST(val mIoU) ep{e} R1@0.5={r['R1@0.5']:.1f} mIoU={r['mIoU']:.1f} wall={time.time() - t0:.0f}s")


def runtime_sap_weight(progress, warmup, ramp):
    from fsan_lightning.lit.module import sap_weight_at

    return sap_weight_at(progress, warmup, ramp)


if __name__ == "__main__":
    main()
