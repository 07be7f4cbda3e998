"""Run a table's jobs, one process per job, then aggregate them (``make ablations/table2/table3``).

    python -m fsan_lightning.reproduce.sweep --table table4 [--data synthetic] [--seeds 0,1,2]
        [--rows full,no_sap_loss] [--data-dir DIR] [--sweep-dir DIR] [--out DIR]
        [--prototype | --no-prototype] [--job-timeout S] [--dry-run] [-- HYDRA_OVERRIDES ...]

Why not one ``python -m fsan_lightning.train -m ablation=...,... seed=...`` multirun: Hydra's basic
launcher stops the whole sweep at the first job that raises, and a crash (out of memory, a killed
process) would lose the rest too. Here every job is its own normal run
(``python -m fsan_lightning.train ... hydra.run.dir=SWEEP_DIR/<row>_s<seed>``); a job that fails gets a
``failed.json`` (exit code, the error line, the log's tail) and the others go on. A job whose run
directory already holds results.json is skipped, so rerunning the same command with the same
``--sweep-dir`` resumes a sweep. The jobs of a table are the rows of the paper's table (Table 4: the
``conf/ablation/`` configs) times ``--seeds``, plus ``model=prototype`` once when that config exists
(Table 4 and ``--data anet_sim`` by default; ``--prototype`` elsewhere). ``--data anet_sim`` runs
Tables 3 and 4 on the ActivityNet-scale world (``experiment=anet_sim_cpu`` / ``anet_sim_table4``). Then ``aggregate`` writes the table.

Exit status: 0 all jobs finished, 3 some failed (the table is written and lists them), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from fsan_lightning.reproduce.paper import FULL, PROTOTYPE, TABLE4
from fsan_lightning.runio import atomic_write_json

ABLATION_ROWS: tuple[str, ...] = tuple(key for key, _ in TABLE4.settings)
PAPER_DATA = {"table2": "didemo", "table3": "activitynet"}
#: the small CPU run of Table 2 without real features: the synthetic world in DiDeMo's format
SYNTHETIC_DIDEMO = ("experiment=synthetic_cpu", "data=didemo", "data.features=didemo_features.hdf5",
                    "data.feature_key='{vid}/c3d_features'", "data.num_workers=0", "data.pin_memory=false", "data.persistent_workers=false",
                    "data.batch_size=64", "data.eval_batch_size=128")
SMALL_CPU_NOTE = "small CPU settings of experiment=synthetic_cpu (model fsan_cpu), not the paper's data"
#: the ActivityNet-scale world (real annotations, simulated features): data=anet_sim, no --data-dir
ANET_SIM = "anet_sim"
ANET_SIM_NOTE = ("the ActivityNet-scale world (real ActivityNet Captions annotations, simulated features; "
                 "CPU subset data.subset=1000 unless overridden), small CPU settings of experiment={exp}")
TABLE4_CPU_NOTE = ("make train's recipe, experiment=synthetic_table4 (model fsan_cpu: ICIM trained by the SAP losses in "
                   "their self-training form), small CPU settings, not the paper's data")


@dataclass(frozen=True)
class Job:
    """One training run: its run-directory name (``<row>_s<seed>``), table row, seed and overrides."""

    name: str
    setting: str
    seed: int
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    """What a table runs: the overrides every job shares, the data label and the title note."""

    base: tuple[str, ...]
    data: str
    note: str


def has_model_config(name: str) -> bool:
    """Whether ``model=<name>`` exists in the package's config tree."""
    return resources.files("fsan_lightning.conf").joinpath("model", f"{name}.yaml").is_file()


def synthetic_didemo_dir() -> Path:
    """Where Table 2's synthetic DiDeMo-format world is generated (beside the default synthetic world)."""
    return Path(os.environ.get("FSAN_DATA_DIR") or ".data_cache") / "synthetic_didemo"


def recipe(table: str, data: str | None, data_dir: str | None, overrides: Sequence[str] = (),
           synthetic_dir: str | Path | None = None) -> Recipe:
    """The shared overrides of a table's jobs.

    Table 4: ``data=synthetic`` -> ``experiment=synthetic_cpu``; activitynet, didemo, charades ->
    ``experiment=<data>`` (the paper's settings); any other data config -> ``data=<data>``.
    Table 3 / Table 2: with ``data_dir`` the paper's data (``experiment=activitynet`` / ``didemo``);
    without, the synthetic world (Table 2: in DiDeMo's format, generated into ``synthetic_dir``) with
    the small CPU settings.
    """
    given_dir = data_dir or any(o.startswith("data.data_dir=") for o in overrides)
    dir_override = (f"data.data_dir={data_dir}",) if data_dir else ()
    if data == ANET_SIM and table in ("table3", "table4"):
        exp = "anet_sim_table4" if table == "table4" else "anet_sim_cpu"
        return Recipe((f"experiment={exp}",) + dir_override, ANET_SIM, ANET_SIM_NOTE.format(exp=exp))
    if table == "table4":
        data = data or "synthetic"
        if data == "synthetic":
            return Recipe(("experiment=synthetic_table4",) + dir_override, data,
                          "the embedded synthetic world, " + TABLE4_CPU_NOTE)
        if not given_dir:
            raise ValueError(f"data {data!r} needs its files: give --data-dir DIR (make: DATA_DIR=DIR)")
        if data in ("activitynet", "didemo", "charades"):
            note = "" if data == "activitynet" else "not the paper's data set"
            return Recipe((f"experiment={data}",) + dir_override, data, note)
        return Recipe((f"data={data}",) + dir_override, data, "not the paper's data set")
    if table not in PAPER_DATA:
        raise ValueError(f"unknown table {table!r}; expected table2, table3 or table4")
    real = PAPER_DATA[table]
    if data not in (None, "synthetic", real):
        raise ValueError(f"--data for {table} is {real!r} (with --data-dir) or 'synthetic', got {data!r}")
    if given_dir and data != "synthetic":
        return Recipe((f"experiment={real}",) + dir_override, real, "")
    if data == real:
        raise ValueError(f"{table} on {real} needs its files: give --data-dir DIR (make: DATA_DIR=DIR)")
    if table == "table3":
        return Recipe(("experiment=synthetic_cpu",), "synthetic", "the embedded synthetic world, " + SMALL_CPU_NOTE)
    world = Path(synthetic_dir) if synthetic_dir else synthetic_didemo_dir()
    return Recipe(SYNTHETIC_DIDEMO + (f"data.data_dir={world}",), "synthetic",
                  "the synthetic world in DiDeMo's format, " + SMALL_CPU_NOTE)


def plan(table: str, base: Sequence[str], seeds: Sequence[int], overrides: Sequence[str] = (),
         rows: Sequence[str] | None = None, prototype: bool = False) -> list[Job]:
    """The jobs, seed by seed in the paper's row order, then the prototype run (first seed) if asked.

    User overrides come last so that they win; the prototype job drops the ``model.*`` ones (they
    are FSAN's settings, which the prototype does not take).
    """
    if not seeds:
        raise ValueError("no seed given")
    if table == "table4":
        unknown = sorted(set(rows or ()) - set(ABLATION_ROWS))
        if unknown:
            raise ValueError(f"unknown Table 4 rows {unknown}; known: {list(ABLATION_ROWS)}")
        rows = [r for r in ABLATION_ROWS if not rows or r in rows]  # the paper's order
    else:
        if rows and list(rows) != [FULL]:
            raise ValueError(f"{table} has one trained row, 'full' (FSAN); got {list(rows)}")
        rows = [FULL]
    jobs = [Job(f"{row}_s{seed}", row, int(seed), (*base, f"ablation={row}", f"seed={seed}", *overrides))
            for seed in seeds for row in rows]
    if prototype:
        kept = tuple(o for o in overrides if not re.match(r"^[+~]*model[.=]", o) and not o.startswith("ablation="))
        jobs.append(Job(f"{PROTOTYPE}_s{seeds[0]}", PROTOTYPE, int(seeds[0]),
                        (*base, f"model={PROTOTYPE}", f"seed={seeds[0]}", *kept)))
    return jobs


def job_command(job: Job, run_dir: Path, python: str = sys.executable) -> list[str]:
    return [python, "-m", "fsan_lightning.train", *job.overrides, f"hydra.run.dir={run_dir}"]


_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)|Killed)\b.*")


def error_line(log_text: str) -> str:
    """The last line of a log that looks like an exception (``ValueError: ...``), else its last line."""
    lines = [ln.rstrip() for ln in log_text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if _ERROR_LINE.match(ln):
            return ln.strip()
    return lines[-1].strip() if lines else "(no output)"


def run_job(job: Job, sweep_dir: Path, python: str = sys.executable, timeout: float | None = None) -> dict:
    """Run one job in its own process; returns its outcome. Writes failed.json when it fails."""
    run_dir = Path(sweep_dir) / job.name
    if (run_dir / "results.json").is_file():
        return {"name": job.name, "status": "skipped (done before)", "seconds": 0.0}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "failed.json").unlink(missing_ok=True)
    cmd = job_command(job, run_dir, python)
    started = time.time()
    log_path = run_dir / "stdout.log"
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        try:
            code: int | str = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                               check=False).returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout} s"
    seconds = round(time.time() - started, 1)
    if code == 0 and (run_dir / "results.json").is_file():
        return {"name": job.name, "status": "done", "seconds": seconds}
    text = log_path.read_text(errors="replace")
    reason = f"exit code {code}" if isinstance(code, int) else code
    if code == 0:
        reason = "exit code 0 but no results.json"
    failure = {"error": f"{reason}: {error_line(text)}", "returncode": code if isinstance(code, int) else None,
               "command": shlex.join(cmd), "log": str(log_path), "log_tail": text.splitlines()[-40:],
               "seconds": seconds}
    atomic_write_json(run_dir / "failed.json", failure)
    return {"name": job.name, "status": "failed", "seconds": seconds, "error": failure["error"]}


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in re.split(r"[,\s]+", text.strip()) if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds expects integers like 0,1,2, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds expects distinct integers like 0,1,2, got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.reproduce.sweep",
                                description="Run a paper table's jobs one process each, then aggregate them.")
    p.add_argument("--table", required=True, choices=["table2", "table3", "table4"])
    p.add_argument("--data", default=None, help="Table 4: a data config (default synthetic); Tables 2/3: "
                                               "synthetic (default without --data-dir) or the paper's data set")
    p.add_argument("--data-dir", default=None, help="the data set's folder (real features)")
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="comma-separated seeds (default 0)")
    p.add_argument("--rows", default=None, help="Table 4 rows, comma-separated (default: all five)")
    p.add_argument("--sweep-dir", default=None, help="where the run directories go "
                                                    "(default multirun/<table>/<data>/<date_time>)")
    p.add_argument("--out", default=None, help="table folder (default experiments/<table>/<data>)")
    proto = p.add_mutually_exclusive_group()
    proto.add_argument("--prototype", dest="prototype", action="store_true", default=None,
                       help="also run model=prototype once (default: Table 4 only, when the config exists)")
    proto.add_argument("--no-prototype", dest="prototype", action="store_false")
    p.add_argument("--synthetic-dir", default=None, help="Table 2 without --data-dir: where the DiDeMo-format "
                                                        "synthetic world is generated")
    p.add_argument("--synthetic-set", action="append", default=[], metavar="KEY=VALUE",
                   help="generator parameter of that world (fsan_lightning.data.synthetic.SyntheticConfig)")
    p.add_argument("--job-timeout", type=float, default=None, help="seconds before a job is killed (failed)")
    p.add_argument("--dry-run", action="store_true", help="print the job commands and stop")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every job (after --)")
    return p


def _synthetic_params(items: Sequence[str]) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--synthetic-set expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        rcp = recipe(args.table, args.data, args.data_dir, args.overrides, args.synthetic_dir)
        prototype = args.prototype if args.prototype is not None else (args.table == "table4" or rcp.data == ANET_SIM)
        if prototype and not has_model_config(PROTOTYPE):
            print(f"note: conf/model/{PROTOTYPE}.yaml does not exist; no prototype row", file=sys.stderr)
            prototype = False
        rows = args.rows.split(",") if args.rows else None
        jobs = plan(args.table, rcp.base, args.seeds, args.overrides, rows, prototype)
        params = _synthetic_params(args.synthetic_set)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = Path(args.sweep_dir or Path("multirun") / args.table / rcp.data / stamp)
    if args.dry_run:
        for job in jobs:
            print(shlex.join(job_command(job, sweep_dir / job.name)))
        return 0
    if args.table == "table2" and rcp.data == "synthetic":
        from fsan_lightning.data.synthetic import ensure_world

        world = Path(args.synthetic_dir) if args.synthetic_dir else synthetic_didemo_dir()
        if ensure_world(world, params, fmt="didemo"):
            print(f"generated the synthetic DiDeMo-format world in {world}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "fsan_lightning.reproduce.sweep", *argv])
    outcomes = []
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.name}: {shlex.join(job.overrides)}", flush=True)
        outcome = run_job(job, sweep_dir, timeout=args.job_timeout)
        outcomes.append(outcome)
        print(f"[{i}/{len(jobs)}] {job.name}: {outcome['status']} ({outcome['seconds']} s)"
              + (f"  {outcome['error']}" if "error" in outcome else ""), flush=True)
        atomic_write_json(sweep_dir / "sweep.json", {"command": command, "table": args.table, "data": rcp.data,
                                                     "jobs": [asdict(j) for j in jobs], "outcomes": outcomes})
    from fsan_lightning.reproduce.aggregate import aggregate

    try:
        result = aggregate([sweep_dir], args.table, rcp.data, args.out, command=command, note=rcp.note)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: aggregation failed: {err}", file=sys.stderr)
        return 2
    print(result.markdown.read_text())
    print(f"wrote {result.markdown} and {result.csv}; runs in {sweep_dir}")
    failed = [o for o in outcomes if o["status"] == "failed"]
    if failed:
        print(f"warning: {len(failed)} of {len(jobs)} jobs failed: " + ", ".join(o["name"] for o in failed),
              file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
