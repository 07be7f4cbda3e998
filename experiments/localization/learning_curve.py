"""Learning curve: val R1@0.5 / mIoU against the number of training videos, for several models (issue 19, lever 1).

    python experiments/localization/learning_curve.py run OUT [--sizes 500,2000] [--models full=fsan_cpu,strip=fsan_synthetic]
        [--seeds 0,1,2] [--experiment synthetic_cpu] [--worlds DIR] [-- overrides...]
    python experiments/localization/learning_curve.py table OUT

``run`` trains every (model, size, seed) with ``python -m fsan_lightning.train``, one process at a time, into
``OUT/<label>_N<size>_s<seed>`` (a finished run, one with ``results.json``, is skipped, so a stopped curve
resumes). The world is the experiment's synthetic world drawn with independent split streams
(``data.synthetic={split_streams:independent,train_videos:N}``, docs/data.md): validation and test are the
same videos for every size, and a smaller training set is a prefix of a larger one, so the rows compare
like with like. Each size's world is generated once into ``--worlds``/ind_<N>. The runs never read test
(``test=false``).

``table`` reads each run's ``csv/metrics.csv`` (the run's CSV logger) and prints, per model and size, the
mean and sample sd over the seeds of: the best epoch by val mIoU (its val R1@0.5, mIoU and held-out
triplet), the last epoch's val R1@0.5 / mIoU and, for a two-stage network, the last epoch's base map
(``val/base_*``: the same weights with the interaction bypassed), the unbiased paired reading of what the
interaction adds.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from fsan_lightning.reproduce.tables import mean_std

RUN_NAME = re.compile(r"^(?P<label>.+)_N(?P<size>\d+)_s(?P<seed>\d+)$")


def epoch_summary(rows: Iterable[Mapping[str, str]]) -> dict[str, float]:
    """One run's metrics.csv rows -> its best epoch by val mIoU and its last validated epoch.

    Rows without ``val/mIoU`` (training steps) are ignored; a missing metric reads NaN.

    Returns:
        ``best_epoch``, ``R1@0.5``, ``mIoU``, ``heldout_triplet`` (at the best epoch), ``last_epoch``,
        ``last_R1@0.5``, ``last_mIoU``, ``last_base_R1@0.5``, ``last_base_mIoU``.

    Raises:
        ValueError: no row has a validation mIoU.
    """
    val = {}
    for row in rows:
        if row.get("val/mIoU"):
            val[int(float(row["epoch"]))] = row
    if not val:
        raise ValueError("no validation epoch (no row with val/mIoU)")

    def get(row: Mapping[str, str], key: str) -> float:
        return float(row[key]) if row.get(key) else math.nan

    best = max(sorted(val), key=lambda e: get(val[e], "val/mIoU"))  # the first epoch among ties
    last = max(val)
    return {"best_epoch": best, "R1@0.5": get(val[best], "val/R1@0.5"), "mIoU": get(val[best], "val/mIoU"),
            "heldout_triplet": get(val[best], "val/heldout_triplet"), "last_epoch": last,
            "last_R1@0.5": get(val[last], "val/R1@0.5"), "last_mIoU": get(val[last], "val/mIoU"),
            "last_base_R1@0.5": get(val[last], "val/base_R1@0.5"), "last_base_mIoU": get(val[last], "val/base_mIoU")}


def mean_sd(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± sample sd`` (no sd for one value; ``-`` when every value is NaN, NaNs otherwise left out)."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "-"
    mean, sd = mean_std(vals)
    return f"{mean:.{digits}f}" if sd is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def curve_table(summaries: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of run summaries keyed by run name ``<label>_N<size>_s<seed>``, one row per (label, size)."""
    groups: dict[tuple[str, int], list[tuple[int, Mapping[str, float]]]] = {}
    for name, summary in summaries.items():
        m = RUN_NAME.match(name)
        if m is None:
            raise ValueError(f"run name {name!r} is not <label>_N<size>_s<seed>")
        groups.setdefault((m["label"], int(m["size"])), []).append((int(m["seed"]), summary))
    lines = ["| model | training videos | seeds | best by val mIoU: R1@0.5 | mIoU | held-out triplet | best epochs "
             "| last epoch: R1@0.5 / mIoU | last epoch, base map | interacted minus base, last |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (label, size), runs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        runs.sort(key=lambda seed_summary: seed_summary[0])
        col = {key: [s[key] for _, s in runs] for key in runs[0][1]}
        diff_r = [a - b for a, b in zip(col["last_R1@0.5"], col["last_base_R1@0.5"])]
        diff_m = [a - b for a, b in zip(col["last_mIoU"], col["last_base_mIoU"])]
        has_base = not all(math.isnan(v) for v in col["last_base_mIoU"])
        base = f"{mean_sd(col['last_base_R1@0.5'])} / {mean_sd(col['last_base_mIoU'])}" if has_base else "-"
        gain = f"{mean_sd(diff_r)} / {mean_sd(diff_m)}" if has_base else "-"
        lines.append(f"| {label} | {size:,} | {','.join(str(seed) for seed, _ in runs)} | {mean_sd(col['R1@0.5'])} "
                     f"| {mean_sd(col['mIoU'])} | {mean_sd(col['heldout_triplet'], 3)} "
                     f"| {', '.join(str(int(e)) for e in col['best_epoch'])} "
                     f"| {mean_sd(col['last_R1@0.5'])} / {mean_sd(col['last_mIoU'])} | {base} | {gain} |")
    return "\n".join(lines)


def read_runs(out: Path) -> dict[str, dict[str, float]]:
    """The summaries of the finished runs under ``out`` (those with ``results.json``)."""
    summaries = {}
    for run in sorted(p for p in out.iterdir() if p.is_dir() and RUN_NAME.match(p.name)):
        if not (run / "results.json").is_file():
            print(f"{run.name}: not finished, left out", file=sys.stderr)
            continue
        metrics = run / "csv" / "metrics.csv"
        if not metrics.is_file():
            raise FileNotFoundError(f"{metrics}: no CSV log (train with logger=csv)")
        with metrics.open() as f:
            try:
                summaries[run.name] = epoch_summary(csv.DictReader(f))
            except ValueError as err:
                raise ValueError(f"{metrics}: {err}") from None
    return summaries


def run_grid(out: Path, sizes: Sequence[int], models: Mapping[str, str], seeds: Sequence[int], experiment: str,
             worlds: Path, overrides: Sequence[str]) -> None:
    """Train every (size, seed, model) not yet finished, one process at a time."""
    out.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        for seed in seeds:
            for label, model in models.items():
                run = out / f"{label}_N{size}_s{seed}"
                if (run / "results.json").is_file():
                    continue
                cmd = [sys.executable, "-m", "fsan_lightning.train", f"experiment={experiment}", f"model={model}",
                       f"seed={seed}", "logger=csv", "test=false",
                       f"data.synthetic={{split_streams:independent,train_videos:{size}}}",
                       f"data.data_dir={worlds / f'ind_{size}'}", f"hydra.run.dir={run}", *overrides]
                print(" ".join(cmd), flush=True)
                with (out / f"{run.name}.log").open("w") as log:
                    rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
                if rc != 0:
                    raise SystemExit(f"{run.name}: exit {rc}, see {out / (run.name + '.log')}")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    argv, overrides = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "table"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--models", default="full=fsan_cpu,strip=fsan_synthetic", help="label=model config, ...")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--experiment", default="synthetic_cpu")
    parser.add_argument("--worlds", type=Path, default=Path(".data_cache") / "curve_worlds")
    args = parser.parse_args(argv)
    if args.action == "run":
        models = dict(item.split("=", 1) for item in args.models.split(","))
        run_grid(args.out, [int(s) for s in args.sizes.split(",")], models, [int(s) for s in args.seeds.split(",")],
                 args.experiment, args.worlds, overrides)
    print(curve_table(read_runs(args.out)))


if __name__ == "__main__":
    main()
