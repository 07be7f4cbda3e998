"""`make bench-gpu`: the paper-configuration training step on one CUDA GPU in bf16-mixed precision.

    python -m benchmarks.gpu_step [--batch 128] [--steps 20] [--warmup 5] [--out FILE]

`FSANModule` at the paper's settings (d 512, 6 ICIM layers, Nv 64, Ns 20, batch 128; Adam from
``configure_optimizers``) takes optimiser steps on a random batch resident on the GPU, the forward and
the loss under ``torch.autocast("cuda", dtype=torch.bfloat16)`` (what Lightning's ``bf16-mixed``
does). Reported, all measured in this process: the step time, its achieved FLOP/s (FlopCounterMode
FLOPs of one step) over the measured bf16 matmul FLOP/s (the better of a large square matmul and a
matmul shaped like the FFN's), peak GPU memory, and the projected ActivityNet epoch
(ceil(37,421 / batch) steps; data loading assumed hidden by workers, see `make bench`'s figure 3).
Takes well under a minute of GPU time after start-up. Without CUDA it exits with status 2 and says so.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .common import (
    ACTIVITYNET_TRAIN_PAIRS,
    PAPER_BATCH,
    PAPER_DV,
    PAPER_MODEL,
    PAPER_NS,
    PAPER_NV,
    count_flops,
    git_commit,
    machine_info,
    matmul_rate,
    projected_epoch_seconds,
    random_train_batch,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_latest.json"
VOCAB_SIZE = 1000


class NoCudaError(SystemExit):
    """Raised (exit status 2) when the GPU benchmark runs on a machine without a usable CUDA device."""

    def __init__(self, detail: str):
        super().__init__(2)
        self.message = (f"make bench-gpu needs a CUDA GPU, and {detail} (torch {torch.__version__}, "
                        f"CUDA build {torch.version.cuda}). Run it on a GPU machine; `make bench` covers the CPU.")

    def __str__(self) -> str:
        return self.message


def require_cuda() -> torch.device:
    """The CUDA device, or `NoCudaError` explaining why there is none."""
    if torch.version.cuda is None:
        raise NoCudaError("this torch is a CPU-only build")
    if not torch.cuda.is_available():
        raise NoCudaError("torch.cuda.is_available() is False (no driver or no visible device)")
    return torch.device("cuda")


def epoch_projection(step_s: float, batch: int, pairs: int = ACTIVITYNET_TRAIN_PAIRS) -> dict:
    """Steps and minutes of one ActivityNet training epoch at ``step_s`` seconds per step of ``batch``."""
    steps, seconds = projected_epoch_seconds(step_s, pairs, batch)
    return {"pairs": pairs, "batch": batch, "steps": steps, "seconds": round(seconds, 2),
            "minutes": round(seconds / 60, 3)}


def run(batch: int = PAPER_BATCH, steps: int = 20, warmup: int = 5, log=print) -> dict:
    device = require_cuda()
    from fsan_lightning.lit.module import FSANModule

    torch.manual_seed(0)
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(VOCAB_SIZE - 2)]
    module = FSANModule(vocab=vocab, video_dim=PAPER_DV, word_dim=50, data_num_clips=PAPER_NV,
                        data_max_tokens=PAPER_NS, **PAPER_MODEL).to(device).train()
    optimizer = module.configure_optimizers()
    data = random_train_batch(batch, vocab_size=VOCAB_SIZE, device=device)

    def loss_and_grad():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = module.losses(data, sap_weight=1.0)["loss"]
        loss.backward()
        return loss

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_and_grad()
        optimizer.step()

    flops = count_flops(loss_and_grad)
    optimizer.zero_grad(set_to_none=True)
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / steps
    ffn = (2 * batch * (PAPER_NS + PAPER_NV), PAPER_MODEL["net"]["d_model"], PAPER_MODEL["net"]["ffn_dim"])
    mm_square = matmul_rate(8192, 8192, 8192, reps=5, dtype=torch.bfloat16, device=device)
    mm_ffn = matmul_rate(*ffn, reps=5, dtype=torch.bfloat16, device=device)
    peak = max(mm_square, mm_ffn)
    achieved = flops / step_s
    out = {
        "device": torch.cuda.get_device_name(device), "batch": batch, "num_clips": PAPER_NV,
        "num_tokens": PAPER_NS, "precision": "bf16-mixed (autocast)", "steps_timed": steps, "warmup": warmup,
        "step_ms": round(step_s * 1e3, 2), "flops_per_step": flops, "achieved_tflops": round(achieved / 1e12, 2),
        "matmul_tflops": {"square_8192": round(mm_square / 1e12, 2), "ffn_shape": round(mm_ffn / 1e12, 2),
                          "ffn_shape_mkn": list(ffn)},
        "achieved_over_peak": round(achieved / peak, 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        "epoch": epoch_projection(step_s, batch),
    }
    log(f"{out['device']}: step {out['step_ms']} ms at batch {batch} (bf16-mixed), "
        f"{out['achieved_tflops']} TFLOP/s = {out['achieved_over_peak']:.1%} of the measured bf16 matmul "
        f"{peak / 1e12:.1f} TFLOP/s; peak memory {out['peak_memory_gib']} GiB; ActivityNet epoch "
        f"{out['epoch']['steps']} steps = {out['epoch']['minutes']:.1f} min")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Paper-configuration training step on a CUDA GPU, bf16-mixed.")
    ap.add_argument("--batch", type=int, default=PAPER_BATCH)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the results")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("--batch and --steps must be >= 1, --warmup >= 0")
    try:
        result = run(args.batch, args.steps, args.warmup)
    except NoCudaError as err:
        print(f"error: {err}", file=sys.stderr)
        raise
    result.update(commit=git_commit(), machine=machine_info(), command="make bench-gpu",
                  date=time.strftime("%Y-%m-%d %H:%M %Z"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    print(json.dumps({k: result[k] for k in ("device", "step_ms", "achieved_over_peak", "epoch")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
