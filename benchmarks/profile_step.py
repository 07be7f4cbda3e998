"""Where a training step's time goes: torch.profiler's top ops for one paper-configuration step.

    python -m benchmarks.profile_step [--batch 8] [--threads 1] [--rows 15]

Not part of `make bench` (it is evidence for benchmarks/README.md, run on demand). A random batch of
the paper's shapes (Nv 64, Ns 20, 500-d clips), one warm-up step, then one profiled step.
"""
from __future__ import annotations

import argparse
import time

import torch

from .common import PAPER_DV, PAPER_MODEL, build_net_and_loss, random_train_batch, training_loss, using_threads


def profile_step(batch: int = 8, threads: int = 1, rows: int = 15, model: dict | None = None) -> str:
    """The profiler's table (self CPU time, top ``rows`` ops) of one optimiser step, with the step's time.

    ``model``: FSANModule settings (``net``, ``loss``; default `PAPER_MODEL`).
    """
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    net, crit = build_net_and_loss(model or PAPER_MODEL, 1000, 50, PAPER_DV)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    data = random_train_batch(batch)

    def step():
        opt.zero_grad(set_to_none=True)
        training_loss(net, crit, data, sap_weight=1.0).backward()
        opt.step()

    with using_threads(threads):
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            step()
            seconds = time.perf_counter() - t0
    head = f"one step, batch {batch}, {threads} thread(s): {seconds:.2f} s (profiled)\n"
    return head + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Top ops of one paper-configuration training step.")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args(argv)
    print(profile_step(args.batch, args.threads, args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
