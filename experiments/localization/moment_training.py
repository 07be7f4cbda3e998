"""Train a network from moments given clip by clip: a DIAGNOSTIC of issue 19, not a training recipe.

    python experiments/localization/moment_training.py NAME EPOCHS [options] [hydra overrides ...]

The network is the one the overrides compose (on ``--experiment``, `synthetic_cpu` by default, as `sweep.py`); its loss is
`ops.moment_cross_entropy` of the content-word mean of its cosine map against a moment per training query:

- ``--targets gt``: the **ground-truth moments of the training split**. Weak supervision never has them; the
  run measures what a parameterisation can reach on the world at this data size when the localization signal
  is perfect (its ceiling), so that a weakly supervised target can be compared with it.
- ``--targets teacher --teacher CKPT``: the top-1 segment of a trained network (a `sweep.py` / `SWEEP_SAVE`
  or Lightning checkpoint of `make train`'s recipe, whose grounder is `FeedbackGrounder`) read with its own grounder's feedback step and max-sum rule, on each
  training query (self-training on pseudo-moments); ``--joint LAM`` subtracts LAM x the maximum over the other
  sentences of the same training video of their content-word mean maps first (a sentence competes with its
  siblings for the clips). The ground truth is read only to print the pseudo-moments' accuracy.

Options: ``--temperature`` (of the clip softmax, 0.05), ``--init CKPT`` (start from a state dict), ``--freeze-base`` (train only the interaction's parameters, its
positional tables excepted: a refinement of a converged base), ``--lr`` (with ``--freeze-base``),
``--save PATH`` (state dict of the best epoch by val mIoU), ``--experiment``. Every number printed is on validation; test is
never read. Records: experiments/localization/README.md, "Session 6".
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from hydra import compose, initialize_config_module

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep  # noqa: E402

from fsan_lightning import _entry as runtime  # noqa: E402
from fsan_lightning import ops  # noqa: E402


def pseudo_moments(dm, teacher, joint: float) -> dict[int, torch.Tensor]:
    """qidx -> bool [Nv] the teacher's top-1 moment of every training query (see the module docstring)."""
    ds, net = dm._datasets["train"], teacher.net
    rows = {}
    ds.train = False  # the items carry their ground truth: read below for the accuracy line only
    try:
        with torch.no_grad():
            for b in dm._loader(ds, 128):
                tm, vm, cm = b["token_mask"], b["video_mask"], b["content_mask"]
                out = net(b["video"], vm, b["tokens"], tm)
                pbar = ops.token_mean(net.grounder.refined_map(net.alignment, out, tm, cm), tm, cm)
                for k, q in enumerate(b["qidx"].tolist()):
                    rows[q] = (b["vid"][k], pbar[k], vm[k], float(b["duration"][k]), b["gt"][k])
    finally:
        ds.train = True
    order, moments, hits = sorted(rows), {}, []
    codes = {v: i for i, v in enumerate(dict.fromkeys(rows[q][0] for q in order))}
    competed = ops.sibling_competition(torch.stack([rows[q][1] for q in order]),
                                       torch.tensor([codes[rows[q][0]] for q in order], dtype=torch.int64),
                                       torch.stack([rows[q][2] for q in order]), joint)
    for s in range(0, len(order), 128):
        chunk = order[s:s + 128]
        vm = torch.stack([rows[q][2] for q in chunk])
        dur = torch.tensor([rows[q][3] for q in chunk])
        one = torch.ones(len(chunk), 1, dtype=torch.bool)
        top = ops.rank_moments(net.grounder.inner(competed[s:s + 128, None, :], one, vm, one), vm, dur, 1, None)[:, 0, :2]
        hits.append(ops.temporal_iou(top, torch.stack([rows[q][4] for q in chunk])) >= 0.5)
        for q, mask in zip(chunk, ops.seconds_to_clip_mask(top, dur, vm.sum(1), vm.shape[1]) & vm):
            moments[q] = mask
    print(f"pseudo-moments of {len(moments)} training queries: R1@0.5 against their ground truth "
          f"{100 * torch.cat(hits).float().mean():.1f}", flush=True)
    return moments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("epochs", type=int)
    parser.add_argument("--targets", choices=("gt", "teacher"), default="gt")
    parser.add_argument("--teacher")
    parser.add_argument("--teacher-overrides", default="", help="space-separated overrides of the teacher's config")
    parser.add_argument("--joint", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--init")
    parser.add_argument("--freeze-base", action="store_true")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--save")
    parser.add_argument("--experiment", default="synthetic_cpu", help="the experiment config (e.g. anet_sim_cpu)")
    args, overrides = parser.parse_known_args()
    if args.targets == "teacher" and not args.teacher:
        parser.error("--targets teacher needs --teacher CKPT")
    with initialize_config_module("fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}", "logger=none", *overrides])
        tcfg = compose("train", overrides=[f"experiment={args.experiment}", "logger=none", *args.teacher_overrides.split()])
    torch.manual_seed(int(cfg.seed))
    dm = runtime.build_datamodule(cfg)
    dm.setup("fit")
    targets = None
    if args.targets == "teacher":
        teacher = runtime.build_module(tcfg, dm)
        teacher.load_state_dict(torch.load(args.teacher, weights_only=False)["state_dict"], strict=False)
        teacher.fit_word_salience(dm)  # a no-op without net.salience, or when the checkpoint holds it
        teacher.eval()
        targets = pseudo_moments(dm, teacher, args.joint)
    else:
        dm._datasets["train"].train = False  # the training items carry their ground truth
    module = runtime.build_module(cfg, dm)
    if args.init:
        got = module.load_state_dict(torch.load(args.init, weights_only=False)["state_dict"], strict=False)
        print(f"init from {args.init}: {len(got.missing_keys)} parameters left at their initialisation", flush=True)
    train_items = dm._datasets["train"]
    was, train_items.train = train_items.train, True  # with --targets gt the items carry it, and the fit refuses them
    try:
        module.fit_word_salience(dm)
    finally:
        train_items.train = was
    if args.freeze_base:
        for n, p in module.named_parameters():
            p.requires_grad_(".interaction." in n and not n.endswith("_pos"))
        trainable = [p for p in module.parameters() if p.requires_grad]
        print(f"trainable: {sum(p.numel() for p in trainable)} interaction parameters", flush=True)
        opt = torch.optim.Adam(trainable, lr=args.lr)
    else:
        opt = module.configure_optimizers()
        opt = opt["optimizer"] if isinstance(opt, dict) else opt
    t0, best = time.time(), None
    for epoch in range(args.epochs):
        dm.set_epoch(epoch)
        loader = dm.train_dataloader()
        total = 0.0
        for b in loader:
            tm, vm, cm = b["token_mask"], b["video_mask"], b["content_mask"]
            out = module.net(b["video"], vm, b["tokens"], tm)
            scores = ops.token_mean(out.cosine if out.cosine is not None else out.A, tm, cm)
            if targets is None:
                moment = ops.seconds_to_clip_mask(b["gt"], b["duration"], vm.sum(1), vm.shape[1])
            else:
                moment = torch.stack([targets[q] for q in b["qidx"].tolist()])[:, : vm.shape[1]]
            loss = ops.moment_cross_entropy(scores, moment, vm, args.temperature).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) / len(loader)
        r = sweep.evaluate(module, dm.val_dataloader())
        if best is None or r["mIoU"] > best[1]["mIoU"]:
            best = (epoch, r)
            if args.save:
                torch.save({"state_dict": module.state_dict(), "epoch": epoch}, args.save)
        print(f"{args.name} ep{epoch} t={time.time() - t0:.0f}s loss={total:.3f} | R1@0.5={r['R1@0.5']:.1f} "
              f"mIoU={r['mIoU']:.1f} c_am_in={r['c_argmax_inside']:.3f} len={r['pred_length']:.2f}/{r['gt_length']:.2f}"
              + " heldout " + " ".join(f"{k[8:]}={v:.3f}" for k, v in r.items() if k.startswith("heldout_")), flush=True)
    e, r = best
    print(f"{args.name} BEST(val mIoU) ep{e} R1@0.5={r['R1@0.5']:.1f} mIoU={r['mIoU']:.1f} wall={time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
