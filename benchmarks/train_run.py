"""Benchmarks 2 and 4: a training run at the paper's configuration, in its own process.

    python -m benchmarks.train_run --data WORLD_DIR --plan 8,16,16 --out run.json [--model paper|small]

The run is what `make train` does per step, without the Trainer's bookkeeping: `GroundingDataModule`
(ActivityNet layout: annotations, feature checks, vocabulary, GloVe) serves shuffled training batches
from HDF5; `FSANModule` (network + criterion, Adam from ``configure_optimizers``) takes one optimiser
step per batch. ``--plan`` lists the batch size of each step; the first is a warm-up. After the steps
the rest of the epoch is read (data only, ``--drain``) so every feature row of the data set passes
through the process: memory that grew with the data set would show in the peak.

Measured in this one process, so the ratios share its threads and the machine's load:
- each timed step's achieved FLOP/s (FlopCounterMode FLOPs of a one-sample forward + backward, times
  the batch: the model is per-sample, so its FLOPs are linear in the batch) over the FLOP/s of a
  matmul shaped like the FFN's ([2 B (Ns + Nv), d] x [d, ffn]) measured just before and after it;
- the share of the step taken by the grounding ops (SC, inner, outer map, forward + backward at the
  step's batch, Ns = 20, Nv = 64);
- every timed step runs once per thread count (1 and torch's default), each with its own matmul rate;
- peak RSS (ru_maxrss) after the warm-up step, after the timed steps and after the drain; Adam's state
  is created before the first step (a zero-gradient step: the weights do not move) so that every step
  holds the same fixed memory and the peaks at two batch sizes give the memory per sample.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import torch

from .common import (
    PAPER_MODEL,
    PAPER_NS,
    PAPER_NV,
    SMALL_MODEL,
    count_flops,
    current_rss_mb,
    load_average,
    matmul_rate,
    peak_rss_mb,
    slice_batch,
    thread_counts,
    using_threads,
)

MODELS = {"paper": PAPER_MODEL, "small": SMALL_MODEL}


def build(data_dir: str | Path, batch: int, model: dict, num_clips: int = PAPER_NV, max_tokens: int = PAPER_NS):
    """(datamodule after setup, FSANModule with the data's word vectors, Adam with its state created)."""
    from fsan_lightning.lit.datamodule import GroundingDataModule
    from fsan_lightning.lit.module import FSANModule

    dm = GroundingDataModule(dataset="activitynet", data_dir=str(data_dir), num_clips=num_clips,
                             max_tokens=max_tokens, batch_size=batch, num_workers=0, seed=0)
    dm.setup("fit")
    module = FSANModule(vocab=dm.vocab.words, video_dim=dm.video_dim, word_dim=int(dm.embeddings.shape[1]),
                        function_word_ids=dm.vocab.function_word_ids, data_num_clips=num_clips,
                        data_max_tokens=max_tokens, **model)
    module.load_word_vectors(dm.embeddings)
    module.train()
    optimizer = module.configure_optimizers()
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()  # zero gradients: Adam creates its state, the weights stay where they are
    optimizer.zero_grad(set_to_none=True)
    return dm, module, optimizer


def train_step(module, optimizer, batch: dict) -> float:
    """One optimiser step on ``batch``; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = module.losses(batch, sap_weight=1.0)["loss"]
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def forward_backward(module, batch: dict) -> None:
    """Loss and gradients, no optimiser step (what the FLOP count measures)."""
    module.losses(batch, sap_weight=1.0)["loss"].backward()
    module.zero_grad(set_to_none=True)


def ffn_matmul_shape(batch: int, num_tokens: int, num_clips: int, model: dict) -> tuple[int, int, int]:
    """The FFN's first matmul in a training step: [2 B (Ns + Nv), d] x [d, ffn] (positive + negative rows)."""
    return 2 * batch * (num_tokens + num_clips), model["net"]["d_model"], model["net"]["ffn_dim"]


def run(data_dir: str | Path, plan: list[int], model_name: str = "paper", drain: bool = True,
        threads: list[int] | None = None, mm_reps: int = 3, log=print) -> dict:
    """The training run; every timed step of ``plan`` (all but the first) runs once per thread count."""
    if len(plan) < 2 or min(plan) < 1:
        raise ValueError(f"--plan needs a warm-up step and at least one timed step, got {plan}")
    threads = thread_counts() if threads is None else list(threads)
    t_start = time.perf_counter()
    model = MODELS[model_name]
    rss_start = current_rss_mb()
    dm, module, optimizer = build(data_dir, max(plan), model)
    rss_built = current_rss_mb()
    setup_s = time.perf_counter() - t_start
    log(f"  train run ({model_name}, {len(dm.queries('train'))} queries): set up in {setup_s:.1f} s, "
        f"RSS {rss_built:.0f} MiB")

    loader = dm.train_dataloader()
    batches = iter(loader)
    served = 0
    steps = []
    flops_per_sample: dict[int, int] = {}  # by the padded sentence length of the step
    for i, b in enumerate(plan):
        t0 = time.perf_counter()
        full = next(batches)
        served += full["video"].shape[0]
        data_s = time.perf_counter() - t0
        batch = slice_batch(full, b)
        ns, nv = max(batch["tokens"].shape[1], batch["neg_tokens"].shape[1]), batch["video"].shape[1]
        if ns not in flops_per_sample:
            flops_per_sample[ns] = count_flops(partial(forward_backward, module, slice_batch(batch, 1)))
        shape = ffn_matmul_shape(b, ns, nv, model)
        for n_threads in threads if i > 0 else threads[-1:]:
            with using_threads(n_threads):
                rec = _timed_step(module, optimizer, batch, shape, mm_reps if i > 0 else 0)
            rec.update(step=i, batch=b, threads=n_threads, num_tokens=ns, num_clips=nv,
                       flops=flops_per_sample[ns] * b, data_s=round(data_s, 4))
            if rec["timed"]:
                achieved = rec["flops"] / rec["step_s"]
                rec.update(achieved_gflops=round(achieved / 1e9, 2),
                           flops_ratio=round(achieved / (rec["matmul_gflops"] * 1e9), 4))
            steps.append(rec)
            log(f"  step {i} batch {b:3d}, {n_threads} thr: {rec['step_s']:7.2f} s" + (
                f", {rec['achieved_gflops']:.1f} GFLOP/s = {rec['flops_ratio']:.0%} of matmul "
                f"{rec['matmul_gflops']:.1f}" if rec["timed"] else " (warm-up)")
                + f", peak RSS {rec['peak_rss_mb']:.0f} MiB")
    peak_steps = peak_rss_mb()

    from .bench_ops import grounding_ops_seconds

    b_last = plan[-1]
    ops = {}
    for n_threads in threads:
        with using_threads(n_threads):
            ops_s = grounding_ops_seconds(b_last, PAPER_NS, PAPER_NV)
        step_s = min(s["step_s"] for s in steps if s["timed"] and s["threads"] == n_threads and s["batch"] == b_last)
        ops[str(n_threads)] = {"ms": {k: round(v * 1e3, 3) for k, v in ops_s.items()},
                               "step_s": step_s, "share": round(sum(ops_s.values()) / step_s, 4)}
        log(f"  grounding ops at batch {b_last}, {n_threads} thr: {sum(ops_s.values()) * 1e3:.1f} ms = "
            f"{ops[str(n_threads)]['share']:.1%} of the step")

    drain_samples, drain_s = 0, 0.0
    if drain:
        t0 = time.perf_counter()
        for full in batches:
            drain_samples += full["video"].shape[0]
        drain_s = time.perf_counter() - t0
        served += drain_samples
        log(f"  drained {drain_samples} more samples in {drain_s:.1f} s; peak RSS {peak_rss_mb():.0f} MiB")
    return {
        "model": model_name, "model_settings": model, "plan": plan, "threads": threads,
        "queries": len(dm.queries("train")), "served_samples": served,
        "parameters": sum(p.numel() for p in module.parameters()),
        "setup_s": round(setup_s, 2), "flops_per_sample": {str(k): v for k, v in flops_per_sample.items()},
        "steps": steps, "ops_batch": b_last, "ops": ops,
        "drain_samples": drain_samples, "drain_s": round(drain_s, 3),
        "rss_mb": {"start": round(rss_start, 1), "after_setup": round(rss_built, 1),
                   "peak_after_warmup": steps[0]["peak_rss_mb"], "peak_after_steps": round(peak_steps, 1),
                   "peak_final": round(peak_rss_mb(), 1)},
        "loadavg": load_average(), "wall_s": round(time.perf_counter() - t_start, 2),
    }


def _timed_step(module, optimizer, batch: dict, shape: tuple[int, int, int], mm_reps: int) -> dict:
    """One step; with ``mm_reps`` > 0 the matmul rate is measured just before and just after it."""
    mm_before = matmul_rate(*shape, reps=mm_reps) if mm_reps else None
    t0 = time.perf_counter()
    loss = train_step(module, optimizer, batch)
    step_s = time.perf_counter() - t0
    rec = {"timed": bool(mm_reps), "step_s": round(step_s, 3), "loss": round(loss, 5),
           "peak_rss_mb": round(peak_rss_mb(), 1), "loadavg": load_average()}
    if mm_reps:
        mm_after = matmul_rate(*shape, reps=mm_reps)
        rec.update(matmul_shape=list(shape), matmul_gflops=round((mm_before + mm_after) / 2e9, 2))
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="world folder in the ActivityNet layout (benchmarks.world)")
    ap.add_argument("--plan", default="8,16,16", help="batch size of each step; the first is a warm-up")
    ap.add_argument("--model", choices=sorted(MODELS), default="paper")
    ap.add_argument("--no-drain", action="store_true", help="skip reading the rest of the epoch")
    ap.add_argument("--threads", default=None, help="intra-op thread counts of the timed steps "
                    "(default: 1 and torch's default)")
    ap.add_argument("--out", required=True, help="JSON file for the results")
    args = ap.parse_args(argv)
    plan = [int(x) for x in args.plan.split(",") if x.strip()]
    threads = [int(x) for x in args.threads.split(",")] if args.threads else None
    result = run(args.data, plan, args.model, drain=not args.no_drain, threads=threads,
                 log=lambda msg: print(msg, file=sys.stderr, flush=True))
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
