"""Lean tuning loop for the localization study (no Trainer): the same DataModule, FSANModule,
criterion, ranking and diagnostics as `python -m fsan_lightning.train`, without Lightning's loop.

    python experiments/localization/sweep.py NAME EPOCHS [hydra overrides ...]

Prints per epoch: train losses, val R1@0.3/0.5, mIoU and the localization diagnostics. Test is
never evaluated here (select on validation only); confirm a choice with `make train`. With
``SWEEP_SAVE=PATH`` the state dict of the best epoch (val mIoU) is saved there, for `errors.py`
(with ``SWEEP_SAVE_LAST=1``, the last epoch's instead).
"""
from __future__ import annotations

import os
import sys
import time

import torch
from hydra import compose, initialize_config_module

from fsan_lightning import _entry as runtime
from fsan_lightning import ops
from fsan_lightning.models import MaxSumGrounder, SCGrounder

# grounding rules compared on the same forward pass (top-1 R1@0.5), on P and, for a two-stage
# network, on the map before the interaction (prefix b_)
RULES = {"sc": SCGrounder(), "sc_cmin": SCGrounder(min_tokens="content"), "sc_c": SCGrounder("content", "content"),
         "ms": MaxSumGrounder(), "ms_c": MaxSumGrounder("content"), "ms_c25": MaxSumGrounder("content", 0.25)}


def load_checkpoint(ckpt: str, experiment: str, overrides: list[str]):
    """-> (cfg, datamodule, module) of ``experiment`` + ``overrides`` with the state dict of ``ckpt`` (a Lightning
    checkpoint or a ``{"state_dict": ...}`` file) loaded strictly: the overrides must rebuild the run's network."""
    with initialize_config_module("fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "logger=none", *overrides])
    dm = runtime.build_datamodule(cfg)
    module = runtime.build_module(cfg, dm)
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"], strict=True)
    return cfg, dm, module


def rule_scores(module, out, batch):
    """Top-1 R@0.5 of the alternative grounding rules on the same forward (extra columns)."""
    res = {}
    maps = {"": out.P, "b_": out.base_P}
    for prefix, P in maps.items():
        if P is None:
            continue
        for name, rule in RULES.items():
            sc = rule(P, batch["token_mask"], batch["video_mask"], batch["content_mask"])
            w = ops.rank_moments(sc, batch["video_mask"], batch["duration"], 1, None)
            res[prefix + name] = ops.temporal_iou(w[:, 0, :2], batch["gt"]) >= 0.5
    return res


def heldout_triplet(module, batch):
    """The held-out matching loss on a validation batch (fixed negatives; 0 when the batch has none)."""
    if "neg_tokens" not in batch:
        return {}
    return {k: float(v) for k, v in module.losses(batch)["terms"].items() if k.startswith(("triplet", "sibling"))}


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
            for k, v in heldout_triplet(module, batch).items():
                diag.setdefault("heldout_" + k, []).append(torch.tensor([v]))
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
    module.fit_word_salience(dm)  # as FSANModule.on_fit_start does (a no-op without net.salience)
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    sched = None
    optim = cfg.model.get("optim", {})
    if optim.get("scheduler") == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    val_loader = dm.val_dataloader()
    warmup, ramp = module.optim["sap_warmup_epochs"], module.optim["sap_ramp_epochs"]
    t0 = time.time()
    best = None
    for epoch in range(epochs):
        module.refresh_pseudo_moments(dm, epoch)  # as FSANModule.on_train_epoch_start (self-training term)
        dm.set_epoch(epoch)
        loader = dm.train_dataloader()
        sums, nb = {}, len(loader)
        for bi, batch in enumerate(loader):
            w = runtime_sap_weight(epoch + bi / nb, warmup, ramp)
            losses = module.losses(module.with_pseudo_moments(batch, epoch), sap_weight=w)
            opt.zero_grad()
            losses["loss"].backward()
            opt.step()
            for k, v in {"loss": losses["loss"], **losses["terms"]}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / nb
        if sched is not None:
            sched.step()
        r = evaluate(module, val_loader)
        improved = best is None or r["mIoU"] > best[1]["mIoU"]
        if improved:
            best = (epoch, r)
        if improved or os.environ.get("SWEEP_SAVE_LAST"):
            if os.environ.get("SWEEP_SAVE"):
                torch.save({"state_dict": module.state_dict(), "overrides": overrides, "epoch": epoch},
                           os.environ["SWEEP_SAVE"])
        print(
            f"{name} ep{epoch} t={time.time() - t0:.0f}s "
            + " ".join(f"{k}={v:.3f}" for k, v in sums.items())
            + f" | R1@0.3={r['R1@0.3']:.1f} R1@0.5={r['R1@0.5']:.1f} mIoU={r['mIoU']:.1f}"
            + f" pin={r['p_inside']:.3f} pout={r['p_outside']:.3f} am_in={r['argmax_inside']:.3f}"
            + f" c_pin={r['c_p_inside']:.3f} c_pout={r['c_p_outside']:.3f} c_am_in={r['c_argmax_inside']:.3f}"
            + f" len={r['pred_length']:.2f}/{r['gt_length']:.2f}"
            + " heldout " + " ".join(f"{k[8:]}={v:.3f}" for k, v in r.items() if k.startswith("heldout_"))
            + " rules(R1@.5) " + " ".join(f"{k[5:]}={v:.1f}" for k, v in r.items() if k.startswith("rule_")),
            flush=True,
        )
    e, r = best
    print(f"{name} BEST(val mIoU) ep{e} R1@0.5={r['R1@0.5']:.1f} mIoU={r['mIoU']:.1f} wall={time.time() - t0:.0f}s")


def runtime_sap_weight(progress, warmup, ramp):
    from fsan_lightning.lit.module import sap_weight_at

    return sap_weight_at(progress, warmup, ramp)


if __name__ == "__main__":
    main()
