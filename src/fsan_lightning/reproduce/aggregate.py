"""Aggregate a sweep's runs into one of the paper's tables (Markdown + CSV, and W&B when it is on).

    python -m fsan_lightning.reproduce.aggregate SWEEP_DIR [SWEEP_DIR ...] --table table4 \
        --data synthetic [--out experiments/table4/synthetic] [--extra prototype=RUN/results.json] \
        [--note TEXT] [--no-random] [--draws 10]

Reads every job under the sweep directories (results.json; .hydra/config.yaml says which row and seed
a job is), averages each row over seeds (mean and sample std), puts the paper's numbers beside ours,
adds the Random row (``fsan_lightning.metrics`` random baselines, scored on the test split of the
jobs, with their Nv) and any ``--extra`` row, and lists failed jobs. Writes ``<out>/<table>.md`` and
``<out>/<table>.csv``. With W&B not disabled (``WANDB_MODE`` != disabled) the table is also logged as
a ``wandb.Table`` (offline without ``WANDB_API_KEY``; files under the first sweep directory).
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsan_lightning.reproduce import runs
from fsan_lightning.reproduce.paper import RANDOM, TableSpec, table_spec
from fsan_lightning.reproduce.tables import (
    JobRecord,
    Row,
    baseline_row,
    build_rows,
    choose_columns,
    render_csv,
    render_markdown,
    wandb_table_data,
)
from fsan_lightning.runio import atomic_write_text, git_commit

log = logging.getLogger(__name__)


@dataclass
class Aggregation:
    """What ``aggregate`` produced."""

    rows: list[Row]
    columns: tuple[str, ...]
    markdown: Path
    csv: Path
    jobs: list[JobRecord]
    wandb_dir: Path | None

    @property
    def failed(self) -> list[JobRecord]:
        return [j for r in self.rows for j in r.failed]


def random_metrics(split: runs.TestSplit, draws: int = 10, seed: int = 0) -> tuple[dict[str, float], str]:
    """The Random row on a job's test split: (metrics in percent, a note saying how it was drawn)."""
    import torch

    from fsan_lightning.data.readers import read_annotations
    from fsan_lightning.metrics import didemo_random_baseline, random_baseline, seconds_to_chunks

    queries, _ = read_annotations(split.dataset, split.annotations,
                                  list(split.durations) if split.durations else None)
    extra = ""
    if split.qids is not None:
        kept = [q for q in queries if q.qid in split.qids]
        if len(kept) != len(split.qids):
            raise ValueError(f"{split.annotations}: {len(split.qids) - len(kept)} of the {len(split.qids)} tested "
                             f"queries are not in the annotation file (was it changed after the run?)")
        if len(kept) != len(queries):
            extra = f", the {len(kept)} tested of {len(queries)} queries"
        queries = kept
    if not queries:
        raise ValueError(f"{split.annotations}: no test query to score the Random row on")
    if split.dataset == "didemo":
        chunks = [seconds_to_chunks(torch.tensor(q.moments, dtype=torch.float64)).tolist() for q in queries]
        gt = np.full((len(chunks), max(len(c) for c in chunks), 2), -1, dtype=np.int64)
        for i, c in enumerate(chunks):
            gt[i, : len(c)] = c
        return (didemo_random_baseline(gt, draws=draws, seed=seed),
                f"random ranking of the 21 moments, {draws} draws{extra}")
    metrics = random_baseline([q.duration for q in queries], [q.moments[0] for q in queries],
                              num_clips=split.num_clips, draws=draws, seed=seed)
    return metrics, f"uniform clip segments, Nv {split.num_clips}, {draws} draws{extra}"


def _setup_line(jobs: Sequence[JobRecord]) -> str:
    """A short description of what the finished jobs ran (from the first one's config)."""
    for j in jobs:
        if not j.ok:
            continue
        cfg = runs.run_config(Path(j.run_dir))
        if not cfg:
            continue
        choices = runs.hydra_choices(Path(j.run_dir))
        model, data, trainer = cfg.get("model") or {}, cfg.get("data") or {}, cfg.get("trainer") or {}
        # nested settings (model.net / model.optim); runs before the composable model had them flat
        net, optim = model.get("net") or {}, model.get("optim") or {}
        d_model = net.get("d_model", model.get("d_model", "?"))
        layers = (net.get("interaction") or {}).get("layers", model.get("icim_layers", "?"))
        lr = optim.get("lr", model.get("lr", "?"))
        parts = [f"data {data.get('dataset', '?')} (Nv {data.get('num_clips', '?')})",
                 f"model {choices.get('model', '?')} (d_model {d_model}, {layers} ICIM layers, lr {lr})",
                 f"trainer {choices.get('trainer', '?')} (max_epochs {trainer.get('max_epochs', '?')})"]
        if choices.get("experiment"):
            parts.insert(0, f"experiment {choices['experiment']}")
        return ", ".join(parts)
    return "no finished job"


def _test_split(jobs: Sequence[JobRecord]) -> tuple[runs.TestSplit | None, list[str]]:
    """The test split of the finished jobs (the first one's), and notes when they differ."""
    splits = {}
    for j in jobs:
        if j.ok and (Path(j.run_dir) / "data_report.json").is_file():
            s = runs.test_split_of(j.run_dir)
            splits.setdefault((s.dataset, str(s.annotations), s.num_clips), s)
    if not splits:
        return None, ["Random row: no finished job with a data_report.json, so no test split to score it on"]
    notes = []
    if len(splits) > 1:
        notes.append("the jobs used different test splits or Nv: " + "; ".join(
            f"{d} {a} Nv {n}" for d, a, n in splits) + " (the Random row uses the first)")
    return next(iter(splits.values())), notes


def log_wandb(spec: TableSpec, data: str, columns: Sequence[str], rows: Sequence[Row], wandb_dir: Path,
              provenance: dict[str, str]) -> Path | None:
    """Log the table as a wandb.Table; skipped (None) when WANDB_MODE=disabled. Offline without a key."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode == "disabled":
        return None
    import wandb

    wandb_dir = Path(wandb_dir)
    wandb_dir.mkdir(parents=True, exist_ok=True)
    for var, sub in (("WANDB_CACHE_DIR", "wandb_cache"), ("WANDB_CONFIG_DIR", "wandb_config"),
                     ("WANDB_DATA_DIR", "wandb_data")):  # nothing in the home folder
        os.environ.setdefault(var, str(wandb_dir / sub))
    os.environ.setdefault("WANDB_SILENT", "true")
    online = bool(os.environ.get("WANDB_API_KEY")) or mode == "online"
    names, table_data = wandb_table_data(columns, rows)
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "fsan-lightning"), name=f"{spec.name}-{data}",
                     job_type="aggregate", dir=str(wandb_dir), mode="online" if online else "offline",
                     config={"table": spec.name, "data": data, **provenance}, reinit="create_new")
    try:
        run.log({f"{spec.name}/{data}": wandb.Table(columns=names, data=table_data)})
    finally:
        run.finish()
    return wandb_dir


def _command(sweep_dirs, table, data, out, extras, note, with_random, draws) -> str:
    """The CLI command that makes the same table."""
    cmd = ["python", "-m", "fsan_lightning.reproduce.aggregate", *map(str, sweep_dirs), "--table", table,
           "--data", data, "--out", str(out)]
    for name, path in extras:
        cmd += ["--extra", f"{name}={path}"]
    if note:
        cmd += ["--note", note]
    if not with_random:
        cmd.append("--no-random")
    elif draws != 10:
        cmd += ["--draws", str(draws)]
    return shlex.join(cmd)


def aggregate(sweep_dirs: Sequence[str | Path], table: str, data: str, out: str | Path | None = None,
              extras: Sequence[tuple[str, str | Path]] = (), command: str | None = None, note: str = "",
              with_random: bool = True, draws: int = 10, use_wandb: bool = True) -> Aggregation:
    """Build the table from the jobs under ``sweep_dirs`` and write ``<out>/<table>.md`` and ``.csv``.

    Raises FileNotFoundError when a sweep directory does not exist or holds no run; failed jobs do not
    raise: they are reported in the table.
    """
    spec = table_spec(table)
    out = Path(out) if out is not None else Path("experiments") / spec.name / data
    jobs = runs.read_jobs(sweep_dirs)
    seen = {str(Path(j.run_dir).resolve()) for j in jobs}
    for name, path in extras:  # an --extra run that the sweep already holds is not counted twice
        job = runs.read_extra(name, path)
        if str(Path(job.run_dir).resolve()) not in seen:
            seen.add(str(Path(job.run_dir).resolve()))
            jobs.append(job)
    columns = choose_columns(spec, jobs)
    notes: list[str] = []
    baselines: list[Row] = []
    if with_random:
        split, split_notes = _test_split(jobs)
        notes += split_notes
        if split is not None:
            metrics, how = random_metrics(split, draws=draws)
            baselines.append(baseline_row(RANDOM, spec.label(RANDOM), metrics, columns, spec.paper.get(RANDOM),
                                          note=how))
    rows = build_rows(spec, jobs, columns, baselines, baseline_keys=[name for name, _ in extras])
    title = f"{spec.title}: ours on {data}" + (f" ({note})" if note else "") + f"; paper: {spec.paper_data}"
    commits = sorted({j.commit for j in jobs if j.commit})
    provenance = {
        "command": f"`{command or _command(sweep_dirs, spec.name, data, out, extras, note, with_random, draws)}`",
        "setup": _setup_line(jobs),
        "runs": ", ".join(f"`{d}`" for d in sweep_dirs),
        "commit of the runs": ", ".join(commits) or "unknown",
        "commit of this table": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    md = atomic_write_text(out / f"{spec.name}.md", render_markdown(title, columns, rows, notes, provenance))
    csv_path = atomic_write_text(out / f"{spec.name}.csv", render_csv(columns, rows))
    wandb_dir = None
    if use_wandb:
        wandb_dir = log_wandb(spec, data, columns, rows, Path(sweep_dirs[0]) / "wandb_tables", provenance)
    return Aggregation(rows=rows, columns=tuple(columns), markdown=md, csv=csv_path, jobs=jobs, wandb_dir=wandb_dir)


def parse_extra(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--extra expects NAME=RESULTS_JSON, got {text!r}")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.reproduce.aggregate",
                                description="Aggregate a sweep's runs into one of the paper's tables.")
    p.add_argument("sweep_dirs", nargs="+", help="sweep directories (or single run directories)")
    p.add_argument("--table", required=True, choices=["table2", "table3", "table4"])
    p.add_argument("--data", default="synthetic", help="data label used in the title and the output folder")
    p.add_argument("--out", default=None, help="output folder (default experiments/<table>/<data>)")
    p.add_argument("--extra", action="append", default=[], type=parse_extra, metavar="NAME=RESULTS_JSON",
                   help="one more row from a results.json, e.g. prototype=outputs/train/X/results.json")
    p.add_argument("--note", default="", help="added to the title (e.g. how the runs differ from the paper's)")
    p.add_argument("--no-random", action="store_true", help="leave out the Random row")
    p.add_argument("--draws", type=int, default=10, help="draws of the Random row (default 10)")
    p.add_argument("--command", default=None, help="the command to record (default: this one)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = aggregate(args.sweep_dirs, args.table, args.data, args.out, args.extra, command=args.command,
                           note=args.note, with_random=not args.no_random, draws=args.draws)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.markdown.read_text())
    print(f"wrote {result.markdown} and {result.csv}")
    if result.failed:
        print(f"warning: {len(result.failed)} job(s) failed; see the table's 'Failed jobs'", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
