"""Read run directories (what ``python -m fsan_lightning.train`` writes) into ``JobRecord``s.

A run directory holds ``results.json`` (written last, on success), ``.hydra/config.yaml`` and
``.hydra/hydra.yaml`` (Hydra CLI runs), ``data_report.json`` and ``predictions_test.jsonl``;
``failed.json`` is written by ``fsan_lightning.reproduce.sweep`` when the job's process fails.
Any folder under a sweep directory that holds one of results.json, failed.json or .hydra/config.yaml
is a job; this covers ``sweep``'s ``<row>_s<seed>`` folders and a Hydra multirun's ``0, 1, ...``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fsan_lightning.reproduce.paper import ABLATION_SWITCH, FULL, FULL_MODEL_SWITCHES
from fsan_lightning.reproduce.tables import JobRecord

RESULTS = "results.json"
FAILED = "failed.json"
CONFIG = Path(".hydra") / "config.yaml"
HYDRA = Path(".hydra") / "hydra.yaml"


def is_run_dir(path: Path) -> bool:
    return (path / RESULTS).is_file() or (path / FAILED).is_file() or (path / CONFIG).is_file()


def find_run_dirs(root: str | Path) -> list[Path]:
    """Run directories at or under ``root``, sorted by path; a run directory's own subfolders are not searched."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {root} does not exist")
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if is_run_dir(here):
            found.append(here)
            dirnames[:] = []
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")  # noqa: TRY004 (bad file content)
    return data


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None


def run_config(run_dir: Path) -> dict:
    """The job's composed config (.hydra/config.yaml, unresolved), or {} when there is none."""
    path = Path(run_dir) / CONFIG
    return _load_yaml(path) if path.is_file() else {}


def hydra_choices(run_dir: Path) -> dict:
    """Hydra's config-group choices of the job (``hydra.runtime.choices``), or {}."""
    path = Path(run_dir) / HYDRA
    if not path.is_file():
        return {}
    hydra = _load_yaml(path).get("hydra") or {}
    return dict((hydra.get("runtime") or {}).get("choices") or {})


def setting_of(model: dict, model_choice: str | None = None) -> str:
    """The table row a model config is: "full", one ablation row, "a+b" for several, or a baseline's name.

    For FSAN the four switches decide (what ran, whatever the command line said); another module
    (``model=prototype``) is named by its config group choice or its class name.
    """
    target = str(model.get("_target_", ""))
    if target and not target.endswith(".FSANModule"):
        if model_choice:
            return str(model_choice)
        name = target.rsplit(".", 1)[-1]
        return (name.removesuffix("Module")).lower()
    rows = []
    for row, (key, value) in ABLATION_SWITCH.items():
        got = model.get(key, FULL_MODEL_SWITCHES[key])
        if got == value:
            rows.append(row)
        elif got != FULL_MODEL_SWITCHES[key]:
            rows.append(f"{key}={got}")
    return "+".join(rows) if rows else FULL


def read_job(run_dir: str | Path) -> JobRecord:
    """One run directory -> a JobRecord; a job without test metrics is a failed record (never raises
    for a broken job: the reason is in ``error``)."""
    run_dir = Path(run_dir)
    error = None
    try:
        cfg = run_config(run_dir)
        setting = setting_of(cfg.get("model") or {}, hydra_choices(run_dir).get("model")) if cfg else "unknown"
    except ValueError as err:
        cfg, setting, error = {}, "unknown", str(err)
    seed = cfg.get("seed")
    seed = int(seed) if isinstance(seed, int) else None
    metrics, commit = None, None
    if (run_dir / RESULTS).is_file():
        try:
            results = read_json(run_dir / RESULTS)
            commit = results.get("commit")
            if seed is None and isinstance(results.get("seed"), int):
                seed = results["seed"]
            test = results.get("test")
            if isinstance(test, dict) and test:
                metrics = {k: float(v) for k, v in test.items() if isinstance(v, (int, float))}
            else:
                error = f"{RESULTS} has no test metrics (was the run started with test=false?)"
        except (ValueError, AttributeError) as err:
            error = str(err)
    elif (run_dir / FAILED).is_file():
        try:
            error = str(read_json(run_dir / FAILED).get("error") or "failed")
        except (ValueError, AttributeError) as err:
            error = f"failed ({err})"
    elif error is None:
        error = f"no {RESULTS} (the job crashed, was killed, or is still running)"
    return JobRecord(setting=setting, seed=seed, metrics=metrics, run_dir=str(run_dir),
                     error=None if metrics is not None else error, commit=commit)


def read_jobs(roots) -> list[JobRecord]:
    """All jobs under the given sweep directories (each may also be a single run directory)."""
    jobs = []
    for root in roots:
        dirs = find_run_dirs(root)
        if not dirs:
            raise FileNotFoundError(f"no run directory (results.json, failed.json or .hydra/config.yaml) under {root}")
        jobs.extend(read_job(d) for d in dirs)
    return jobs


def read_extra(name: str, path: str | Path) -> JobRecord:
    """``--extra NAME=RESULTS_JSON``: one more row from a results.json (or the run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"--extra {name}: {path} does not exist")
    results = read_json(path)
    test = results.get("test") if isinstance(results, dict) else None
    if not isinstance(test, dict) or not test:
        raise ValueError(f"--extra {name}: {path} has no 'test' metrics")
    return JobRecord(setting=name, seed=results.get("seed"), run_dir=str(path.parent),
                     metrics={k: float(v) for k, v in test.items() if isinstance(v, (int, float))},
                     commit=results.get("commit"))


@dataclass(frozen=True)
class TestSplit:
    """Where a job's test queries came from: enough to score the Random baseline on the same split."""

    dataset: str
    annotations: Path
    num_clips: int
    durations: tuple[str, ...] | None
    qids: frozenset[str] | None    # the queries the job actually tested (from predictions_test.jsonl)


def test_split_of(run_dir: str | Path) -> TestSplit:
    """Read a finished job's data_report.json (and predictions_test.jsonl) into a TestSplit."""
    run_dir = Path(run_dir)
    report_path = run_dir / "data_report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path} does not exist (it names the run's test annotation file)")
    report = read_json(report_path)
    try:
        dataset, test_file, num_clips = report["dataset"], report["files"]["test"], int(report["num_clips"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{report_path}: missing field {err}") from None
    durations = None
    if dataset == "charades":
        data_cfg = run_config(run_dir).get("data") or {}
        names = data_cfg.get("durations") or ["Charades_v1_train.csv", "Charades_v1_test.csv"]
        base = Path(report.get("data_dir") or ".")
        durations = tuple(str(p if Path(p).is_absolute() else base / p) for p in names)
    qids = None
    preds = run_dir / "predictions_test.jsonl"
    if preds.is_file():
        qids = set()
        for n, line in enumerate(preds.read_text().splitlines(), 1):
            if line.strip():
                try:
                    qids.add(str(json.loads(line)["qid"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(f"{preds}, line {n}: not a prediction record with a 'qid'") from None
        qids = frozenset(qids)
    return TestSplit(dataset=dataset, annotations=Path(test_file), num_clips=num_clips, durations=durations,
                     qids=qids)
