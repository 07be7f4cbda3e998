"""Benchmark 5: inference with `fsan_lightning.predictor.FSANPredictor` (model built, features in memory).

Per model (the paper's and the small CPU one) and thread count (1 and torch's default): the latency of grounding one query in one video
(tokenise, pool [T, D] features to Nv clips, forward, SC, top-5 with NMS, format), and the throughput
of a batch of queries against one video (the predictor's batched path). The FLOPs of one query's
forward (FlopCounterMode) over the FLOP/s of a matmul of the size of its FFN give the latency the
machine's matmul speed allows (the compute bound); latency / bound says how far the code is from it.
Weights are random: the cost does not depend on them.
"""
from __future__ import annotations

import numpy as np
import torch

from .common import (
    PAPER_DV,
    PAPER_NS,
    PAPER_NV,
    count_flops,
    load_average,
    matmul_rate,
    median,
    thread_counts,
    time_calls,
    using_threads,
)


def build_predictor(model: dict, vocab: list[str], video_dim: int = PAPER_DV, num_clips: int = PAPER_NV,
                    max_tokens: int = PAPER_NS, batch_size: int = 64, seed: int = 0):
    """An FSANPredictor around a freshly initialised FSANModule (eval mode)."""
    from fsan_lightning.lit.module import FSANModule
    from fsan_lightning.predictor import FSANPredictor

    torch.manual_seed(seed)
    module = FSANModule(vocab=vocab, video_dim=video_dim, word_dim=50, data_num_clips=num_clips,
                        data_max_tokens=max_tokens, **model)
    return FSANPredictor(module, num_clips=num_clips, max_tokens=max_tokens, batch_size=batch_size)


def measure(name: str, model: dict, vocab: list[str], queries: list[str], *, rows: int = 200,
            single_reps: int = 10, batch_queries: int = 64, batch_reps: int = 2, log=print) -> dict:
    """Latency of one query and throughput of ``batch_queries`` queries on one in-memory video."""
    predictor = build_predictor(model, vocab, batch_size=batch_queries)
    feats = np.random.default_rng(0).standard_normal((rows, predictor.video_dim), dtype=np.float32)
    duration = float(rows)
    cycle = iter(range(10**9))

    def one():
        return predictor.predict(queries[next(cycle) % len(queries)], feats, duration)

    latency = median(time_calls(one, single_reps, warmup=2))
    many = [queries[i % len(queries)] for i in range(batch_queries)]
    batch_s = median(time_calls(lambda: predictor.predict(many, feats, duration), batch_reps, warmup=1))
    flops = count_flops(one)
    words = max(len(predictor.encode_query(q).ids) for q in queries[:single_reps + 2])
    mm = matmul_rate(words + PAPER_NV, model["net"]["d_model"], model["net"]["ffn_dim"], reps=5)
    bound = flops / mm
    out = {"model": name, "settings": model, "single_ms": round(latency * 1e3, 2),
           "batch_queries": batch_queries, "batch_s": round(batch_s, 4),
           "queries_per_s": round(batch_queries / batch_s, 1),
           "batch_speedup_per_query": round(latency * batch_queries / batch_s, 2),
           "forward_gflops_per_query": round(flops / 1e9, 3), "matmul_gflops": round(mm / 1e9, 2),
           "compute_bound_ms": round(bound * 1e3, 2), "latency_over_bound": round(latency / bound, 2),
           "loadavg": load_average()}
    log(f"  infer {name:11s}: one query {out['single_ms']:8.1f} ms (compute bound {out['compute_bound_ms']:.1f} ms,"
        f" {flops / 1e9:.2f} GFLOP), {batch_queries} queries {out['queries_per_s']:.1f}/s")
    return out


def run(models: dict[str, dict], vocab: list[str], queries: list[str], threads: list[int] | None = None,
        log=print, **kwargs) -> dict:
    """`measure` for each named model at each thread count: ``{"models": {name: {threads: result}}}``."""
    threads = thread_counts() if threads is None else list(threads)
    out: dict = {"threads": threads, "num_clips": PAPER_NV, "models": {}}
    for name, model in models.items():
        for n_threads in threads:
            with using_threads(n_threads):
                res = measure(f"{name}/{n_threads}thr", model, vocab, queries, log=log, **kwargs.get(name, {}))
            out["models"].setdefault(name, {})[str(n_threads)] = res
    return out
