"""A training run with the clip cache off and on: the wall-time ratio, and proof that nothing else changed.

    python -m benchmarks.clip_cache [--experiment synthetic_cpu] [--repeats 1] [--out benchmarks/results/clip_cache.json] [-- overrides]

Each repeat runs ``python -m fsan_lightning.train experiment=E logger=csv`` twice in subprocesses, with
``data.clip_cache_mb=0`` (read and pool every item) and with the default cache, interleaved, and reports each
wall time, their ratio, and whether the two runs' logged metrics (every row of metrics.csv but its time
columns) and test rows are identical: the cache must change the speed only. One training at a time: run it
on an otherwise idle machine (the ratio is what to read; the load average is recorded).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, git_commit, load_average, machine_info

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "clip_cache.json"


def metric_rows(run_dir: Path) -> list[dict]:
    """metrics.csv of a run, without the columns that hold times."""
    files = sorted(run_dir.rglob("metrics.csv"))
    if not files:
        raise RuntimeError(f"no metrics.csv under {run_dir}")
    with files[0].open() as f:
        return [{k: v for k, v in row.items() if "time" not in k} for row in csv.DictReader(f)]


def timed_run(experiment: str, cache_mb: int, overrides: list[str], run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "fsan_lightning.train", f"experiment={experiment}", "logger=csv",
           f"data.clip_cache_mb={cache_mb}", f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"run failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return {"cache_mb": cache_mb, "seconds": round(seconds, 1), "load_after": load_average(),
            "metrics": metric_rows(run_dir)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.clip_cache")
    p.add_argument("--experiment", default="synthetic_cpu")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cache-mb", type=int, default=512)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both runs (after --)")
    args = p.parse_args(argv)
    result = {"command": "python -m benchmarks.clip_cache " + " ".join(argv or sys.argv[1:]),
              "commit": git_commit(), "machine": machine_info(), "load_before": load_average(),
              "experiment": args.experiment, "overrides": args.overrides, "repeats": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            off = timed_run(args.experiment, 0, args.overrides, Path(tmp) / f"off{r}")
            on = timed_run(args.experiment, args.cache_mb, args.overrides, Path(tmp) / f"on{r}")
            same = off.pop("metrics") == on.pop("metrics")
            row = {"off": off, "on": on, "speedup": round(off["seconds"] / on["seconds"], 3),
                   "identical_metrics": same}
            print(f"repeat {r}: off {off['seconds']} s, on {on['seconds']} s, speedup {row['speedup']}x, "
                  f"identical metrics: {same}", flush=True)
            result["repeats"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0 if all(r["identical_metrics"] for r in result["repeats"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
