"""Helpers shared by the benchmarks: timing, machine facts, matmul rate, FLOP counting, memory, batches.

Imports only torch, numpy and the standard library (no Lightning), so the helpers load fast.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

#: FSAN as in the paper (section 4.2; conf/model/fsan.yaml): FSANModule's ``net`` / ``loss`` / ``optim``
#: settings (``net`` = build_fsan's arguments, conf/model/net/fsan.yaml; ``loss`` = build_criterion's,
#: conf/model/loss/fsan.yaml; ``optim``: conf/model/optim/adam.yaml). The Table 4 switches keep their
#: defaults (the full model).
PAPER_NET = {
    "d_model": 512, "num_heads": 8, "ffn_dim": 2048, "dropout": 0.1,
    "text_encoder": {"kind": "transformer", "layers": 1}, "video_encoder": {"kind": "linear"},
    "interaction": {"kind": "icim", "layers": 6, "max_tokens": 64, "max_clips": 256},
    "alignment": {"kind": "cosine"}, "grounder": {"kind": "sc"}, "head": {"kind": "segment", "hidden": 256},
    "salience": None,
}
PAPER_LOSS = {
    "weights": {"triplet": 1 / 3, "inner": 1 / 3, "outer": 1 / 3}, "margin": 0.2,
    "matching": {"kind": "raw", "fn": "cosine", "temperature": None}, "mask_shared": "both", "sap": {"tau": 0.05},
    "self_training": {"temperature": 0.05, "joint": 1.0, "start_epoch": 5, "teacher": "sibling"},  # the SAP variant's settings (weight 0: off)
}
PAPER_MODEL = {"net": PAPER_NET, "loss": PAPER_LOSS,
               "optim": {"lr": 1e-4, "weight_decay": 0.0, "scheduler": None, "sap_warmup_epochs": 0,
                         "sap_ramp_epochs": 0}}
#: the CPU-sized paper form (conf/model/fsan_small.yaml): smaller widths, 2 ICIM layers, lr 1e-3.
SMALL_MODEL = {
    "net": {**PAPER_NET, "d_model": 128, "num_heads": 4, "ffn_dim": 256,
            "interaction": {**PAPER_NET["interaction"], "layers": 2}},
    "loss": PAPER_LOSS, "optim": {**PAPER_MODEL["optim"], "lr": 1e-3},
}
#: the paper's data shapes: clips, tokens per sentence, feature width, batch.
PAPER_NV, PAPER_NS, PAPER_DV, PAPER_BATCH = 64, 20, 500, 128
#: ActivityNet Captions training pairs (docs/data.md) for the projected epoch time.
ACTIVITYNET_TRAIN_PAIRS = 37421


# ---------------------------------------------------------------- threads
def thread_counts() -> list[int]:
    """The intra-op thread counts the benchmarks compare: 1 and torch's default (the CPU count).

    On a machine shared with other jobs the default can be far slower than 1 thread: an op split over
    two threads waits at its end for whichever thread the OS has descheduled (benchmarks/README.md).
    """
    return sorted({1, torch.get_num_threads()})


@contextmanager
def using_threads(n: int):
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- timing
def time_calls(fn: Callable[[], object], reps: int, warmup: int = 1) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``reps`` times; wall seconds of each timed call."""
    if reps < 1 or warmup < 0:
        raise ValueError(f"need reps >= 1 and warmup >= 0, got {reps}, {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (processes wanting a CPU): how busy the machine was."""
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """``git rev-parse --short HEAD`` of the checkout (plus ``+dirty`` when files differ), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict:
    """nproc, CPU model, torch version and threads, Python version, the load average now."""
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "loadavg": load_average()}


# ---------------------------------------------------------------- FLOP/s
def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of one [m, k] x [k, n] matmul (a multiply and an add per term)."""
    return 2 * m * k * n


def matmul_rate(m: int, k: int, n: int, *, reps: int = 3, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> float:
    """Best measured FLOP/s of an [m, k] x [k, n] matmul in this process (its dtype, device, threads).

    The best of ``reps`` is the rate the machine gives when it is least disturbed.
    """
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def run():
        torch.matmul(a, b)
        sync()

    return matmul_flops(m, k, n) / min(time_calls(run, reps, warmup=1))


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul-class FLOPs (mm, addmm, bmm, attention, conv) that ``fn`` runs, by FlopCounterMode.

    Elementwise work is not counted, as in the usual model-FLOPs utilisation.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# ---------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss; kilobytes on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident set size of this process now (from /proc/self/statm) in MiB; the peak elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


# ---------------------------------------------------------------- batches
def model_settings(d_model: int | None = 512, *, text_layers: int = 1, interaction_layers: int = 6,
                   num_heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.1) -> dict:
    """The paper's FSANModule settings (`PAPER_MODEL`) with other widths and depths (e.g. tiny ones for tests)."""
    net = {**PAPER_NET, "d_model": d_model, "num_heads": num_heads, "ffn_dim": ffn_dim, "dropout": dropout,
           "text_encoder": {**PAPER_NET["text_encoder"], "layers": text_layers},
           "interaction": {**PAPER_NET["interaction"], "layers": interaction_layers}}
    return {**PAPER_MODEL, "net": net}


def build_net_and_loss(model: dict, vocab_size: int, word_dim: int, video_dim: int):
    """(FSAN, FSANCriterion) of FSANModule settings ``model`` (``net`` and ``loss``), without the module."""
    from fsan_lightning.models import build_criterion, build_fsan

    net = build_fsan(vocab_size, word_dim, video_dim, **model["net"])
    return net, build_criterion(**model["loss"], net=net)


def training_loss(net, criterion, batch: dict, sap_weight: float = 1.0):
    """The scalar training loss of ``batch``: the training passes (run_training_pass), then the criterion."""
    from fsan_lightning.models import run_training_pass

    passes = run_training_pass(net, batch, negative_video=criterion.needs_negative_video)
    return criterion(passes, sap_weight=sap_weight)["loss"]


def random_train_batch(batch: int, num_clips: int = PAPER_NV, num_tokens: int = PAPER_NS,
                       video_dim: int = PAPER_DV, vocab_size: int = 1000, seed: int = 0,
                       device: str | torch.device = "cpu") -> dict:
    """A training batch of docs/architecture.md with every clip and token valid (the worst case).

    Positive and negative sentences have disjoint ids (no shared-word masking), so every sample
    counts in the triplet loss.
    """
    g = torch.Generator().manual_seed(seed)
    half = vocab_size // 2
    full_tokens = torch.ones(batch, num_tokens, dtype=torch.bool)
    out = {
        "video": torch.randn(batch, num_clips, video_dim, generator=g),
        "video_mask": torch.ones(batch, num_clips, dtype=torch.bool),
        "tokens": torch.randint(2, half, (batch, num_tokens), generator=g),
        "token_mask": full_tokens, "content_mask": full_tokens.clone(),
        "neg_tokens": torch.randint(half, vocab_size, (batch, num_tokens), generator=g),
        "neg_token_mask": full_tokens.clone(), "neg_content_mask": full_tokens.clone(),
        "vid": [f"v{i}" for i in range(batch)],
    }
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def slice_batch(batch: dict, n: int) -> dict:
    """The first ``n`` samples of a batch dict (tensors and lists along their first dim)."""
    return {k: v[:n] for k, v in batch.items()}


def projected_epoch_seconds(step_seconds: float, pairs: int = ACTIVITYNET_TRAIN_PAIRS,
                            batch: int = PAPER_BATCH) -> tuple[int, float]:
    """(steps, seconds) of one epoch over ``pairs`` training pairs: ceil(pairs / batch) steps."""
    if step_seconds < 0 or pairs < 1 or batch < 1:
        raise ValueError(f"need step_seconds >= 0, pairs >= 1, batch >= 1; got {step_seconds}, {pairs}, {batch}")
    steps = -(-pairs // batch)
    return steps, steps * step_seconds
