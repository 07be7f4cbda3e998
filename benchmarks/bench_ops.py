"""Benchmark 1: the grounding ops (SC, inner and outer loss maps), forward + backward.

Each vectorised op of `fsan_lightning.ops` is timed at [B, Ns, Nv] against the per-segment loop of
`benchmarks.loop_reference` on the same inputs. The loop is timed on the first ``k`` samples of the
batch and scaled by ``B / k`` (its cost is a sum of independent per-sample loops, so it is linear in
the batch); the table says so. All masks are full (every token and clip valid): the most cells.
"""
from __future__ import annotations

import torch

from fsan_lightning import ops

from .common import PAPER_BATCH, PAPER_NS, load_average, median, thread_counts, time_calls, using_threads
from .loop_reference import LOOP_OPS

OP_NAMES = tuple(LOOP_OPS)
#: samples of the batch the loop baseline runs on, per Nv (its time is scaled to the batch)
DEFAULT_LOOP_SAMPLES = {32: 2, 64: 2, 128: 1}


def op_inputs(batch: int, num_tokens: int, num_clips: int, seed: int = 0):
    """A leaf map P [B, Ns, Nv] in [0, 1) needing grad, and full token / clip masks."""
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(batch, num_tokens, num_clips, generator=g).requires_grad_(True)
    return P, torch.ones(batch, num_tokens, dtype=torch.bool), torch.ones(batch, num_clips, dtype=torch.bool)


def forward_backward(fn, P, token_mask, clip_mask) -> torch.Tensor:
    """One forward of ``fn`` and a backward of the sum of its valid cells; returns P's gradient."""
    P.grad = None
    out = fn(P, token_mask, clip_mask)
    torch.where(ops.segment_mask(clip_mask), out, torch.zeros_like(out)).sum().backward()
    return P.grad


def time_vectorised(name: str, P, token_mask, clip_mask, reps: int) -> float:
    """Median seconds of forward + backward of ``fsan_lightning.ops.<name>``."""
    fn = getattr(ops, name)
    return median(time_calls(lambda: forward_backward(fn, P, token_mask, clip_mask), reps, warmup=1))


def time_loop(name: str, P, token_mask, clip_mask) -> float:
    """Seconds of one forward + backward of the loop baseline (long enough to need no repeats)."""
    return time_calls(lambda: forward_backward(LOOP_OPS[name], P, token_mask, clip_mask), 1, warmup=0)[0]


def grounding_ops_seconds(batch: int, num_tokens: int, num_clips: int, reps: int = 3) -> dict[str, float]:
    """Median forward + backward seconds of each vectorised op at [batch, num_tokens, num_clips]."""
    P, tm, cm = op_inputs(batch, num_tokens, num_clips)
    return {name: time_vectorised(name, P, tm, cm, reps) for name in OP_NAMES}


def run(batch: int = PAPER_BATCH, num_tokens: int = PAPER_NS, clip_counts=(32, 64, 128),
        loop_samples: dict[int, int] | None = None, reps: int | None = None, threads: list[int] | None = None,
        log=print) -> dict:
    """Time every op at every Nv; returns ``{"batch", "num_tokens", "threads", "rows": [...], "loadavg"}``.

    The vectorised ops are timed at each thread count of ``threads`` (default 1 and torch's default),
    the loop once at 1 thread (its tensors are too small for torch to split them over threads).
    A row: ``nv``, ``op`` (or ``"all three"``), ``threads``, ``vectorised_ms``, ``loop_ms`` (scaled to
    the batch), ``loop_samples``, ``speedup`` (loop / vectorised).
    """
    loop_samples = dict(DEFAULT_LOOP_SAMPLES if loop_samples is None else loop_samples)
    threads = thread_counts() if threads is None else list(threads)
    rows = []
    for nv in clip_counts:
        k = min(batch, loop_samples.get(nv, 1))
        P, tm, cm = op_inputs(batch, num_tokens, nv)
        Pk = P.detach()[:k].clone().requires_grad_(True)
        n_reps = reps if reps is not None else (5 if nv <= 64 else 3)
        loops = {}
        with using_threads(1):
            for name in OP_NAMES:
                loops[name] = time_loop(name, Pk, tm[:k], cm[:k]) * batch / k
        for n_threads in threads:
            vec_total = 0.0
            with using_threads(n_threads):
                for name in OP_NAMES:
                    vec = time_vectorised(name, P, tm, cm, n_reps)
                    vec_total += vec
                    rows.append(_row(nv, name, n_threads, vec, loops[name], k))
                    log(f"  ops Nv={nv:<4d}{name:<16s}{n_threads} thr: vectorised {vec * 1e3:9.2f} ms   "
                        f"loop {loops[name]:8.2f} s (x{batch // k} of {k})   {loops[name] / vec:8.0f}x")
            rows.append(_row(nv, "all three", n_threads, vec_total, sum(loops.values()), k))
    return {"batch": batch, "num_tokens": num_tokens, "threads": threads, "rows": rows,
            "loadavg": load_average()}


def _row(nv: int, op: str, n_threads: int, vec_s: float, loop_s: float, k: int) -> dict:
    return {"nv": nv, "op": op, "threads": n_threads, "vectorised_ms": round(vec_s * 1e3, 3),
            "loop_ms": round(loop_s * 1e3, 1), "loop_samples": k, "speedup": round(loop_s / vec_s, 1)}
