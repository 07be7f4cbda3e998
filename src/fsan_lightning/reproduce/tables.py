"""Pure table logic: jobs -> rows (mean and std over seeds, the paper's numbers beside) -> Markdown, CSV.

No file access and no Hydra here (``runs`` reads the run directories, ``aggregate`` writes the files).
The standard deviation is the sample one (``ddof=1``, ``statistics.stdev``) over the seeds that
finished; a setting with one finished seed has no std. A failed job (no results.json, a crash, no
test metrics) is listed under its setting and left out of the mean.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from fsan_lightning.reproduce.paper import COLUMN_TITLES, DIDEMO_COLUMNS, EXTRA_LABELS, TableSpec


@dataclass
class JobRecord:
    """One training run of a sweep.

    setting: the table row it belongs to ("full", "no_sap_loss", "prototype", ...);
    metrics: its test metrics (percent), None when the job failed; error: why it failed.
    """

    setting: str
    seed: int | None
    metrics: dict[str, float] | None
    run_dir: str = ""
    error: str | None = None
    commit: str | None = None

    @property
    def ok(self) -> bool:
        return self.metrics is not None


@dataclass
class Row:
    """One line of a table. ``mean``/``std`` map metric keys to values (std None: fewer than 2 runs)."""

    key: str
    label: str
    kind: str                       # "baseline" (Random, Prototype, --extra) or "setting" (trained)
    mean: dict[str, float]
    std: dict[str, float | None]
    paper: dict[str, float]
    seeds: list[int | None] = field(default_factory=list)          # seeds that finished
    failed: list[JobRecord] = field(default_factory=list)          # jobs that did not
    note: str = ""                  # e.g. "10 draws" for the Random row

    @property
    def status(self) -> str:
        if not self.failed:
            return "ok" if self.seeds or self.kind == "baseline" else "not run"
        return "failed" if not self.seeds else "partial"


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value). Raises on no value or a NaN."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std of no values")
    if any(not math.isfinite(v) for v in vals):
        raise ValueError(f"non-finite metric value in {vals}")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def setting_row(key: str, label: str, jobs: Sequence[JobRecord], columns: Sequence[str],
                paper: dict[str, float] | None = None, kind: str = "setting") -> Row:
    """Aggregate the jobs of one setting over seeds; failed jobs are kept aside."""
    ok = [j for j in jobs if j.ok]
    mean: dict[str, float] = {}
    std: dict[str, float | None] = {}
    for col in columns:
        vals = [j.metrics[col] for j in ok if col in j.metrics]
        if vals:
            mean[col], std[col] = mean_std(vals)
    return Row(key=key, label=label, kind=kind, mean=mean, std=std, paper=dict(paper or {}),
               seeds=sorted((j.seed for j in ok), key=lambda s: (s is None, s)),
               failed=[j for j in jobs if not j.ok])


def baseline_row(key: str, label: str, metrics: dict[str, float], columns: Sequence[str],
                 paper: dict[str, float] | None = None, note: str = "") -> Row:
    """A row computed once (the Random baseline, a training-free model): no seeds, no std."""
    mean = {c: float(metrics[c]) for c in columns if c in metrics}
    return Row(key=key, label=label, kind="baseline", mean=mean, std={c: None for c in mean},
               paper=dict(paper or {}), note=note)


def choose_columns(spec: TableSpec, jobs: Sequence[JobRecord]) -> tuple[str, ...]:
    """The table's columns, or DiDeMo's when the runs were scored with the DiDeMo protocol."""
    for j in jobs:
        if j.ok:
            return DIDEMO_COLUMNS if "Rank@1" in j.metrics else spec.columns
    return spec.columns


def build_rows(spec: TableSpec, jobs: Sequence[JobRecord], columns: Sequence[str],
               baselines: Sequence[Row] = (), baseline_keys: Sequence[str] = ()) -> list[Row]:
    """Baselines first (as in the paper's tables: the given rows, then the jobs whose setting is a
    baseline: "prototype" or one of ``baseline_keys``), then the spec's settings in the paper's order, then any other setting found among the jobs
    (in order of appearance). Every spec setting gets a row; one without any job is "not run"."""
    by_setting: dict[str, list[JobRecord]] = {}
    for j in jobs:
        by_setting.setdefault(j.setting, []).append(j)
    rows = list(baselines)
    extra_keys = set(EXTRA_LABELS) | set(baseline_keys)
    for key in [k for k in by_setting if k in extra_keys]:  # e.g. model=prototype runs, --extra rows
        rows.append(setting_row(key, spec.label(key), by_setting.pop(key), columns, spec.paper.get(key),
                                kind="baseline"))
    for key, label in spec.settings:
        rows.append(setting_row(key, label, by_setting.pop(key, []), columns, spec.paper.get(key)))
    for key, group in by_setting.items():
        rows.append(setting_row(key, spec.label(key), group, columns, spec.paper.get(key)))
    return rows


def format_cell(row: Row, col: str, digits: int = 2) -> str:
    """``ours ± std (paper)``; ``failed`` when no run finished; ``–`` when the value does not exist."""
    if col in row.mean:
        text = f"{row.mean[col]:.{digits}f}"
        if row.std.get(col) is not None:
            text += f" ± {row.std[col]:.{digits}f}"
    elif row.failed and not row.seeds:
        text = "failed"
    else:
        text = "–"
    if col in row.paper:
        text += f" ({row.paper[col]:.2f})"
    return text


def _seed_text(s: int | None) -> str:
    return "?" if s is None else str(s)


def runs_cell(row: Row) -> str:
    """What the row averages: the finished seeds, the failed ones, or the baseline's note."""
    parts = []
    if row.seeds:
        parts.append(",".join(_seed_text(s) for s in row.seeds))
    if row.note:
        parts.append(row.note)
    if row.failed:
        parts.append("failed: " + ",".join(_seed_text(j.seed) for j in row.failed))
    if row.status == "not run":
        parts.append("not run")
    return "; ".join(parts) or "–"


def render_markdown(title: str, columns: Sequence[str], rows: Sequence[Row], notes: Sequence[str] = (),
                    provenance: dict[str, str] | None = None) -> str:
    """A Markdown document: title, the table, notes, the failed jobs with their reasons, provenance."""
    head = ["setting", "seeds"] + [COLUMN_TITLES.get(c, c) for c in columns]
    lines = [f"# {title}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        label = r.label + (" **(failed)**" if r.status == "failed" else "")
        lines.append("| " + " | ".join([label, runs_cell(r)] + [format_cell(r, c) for c in columns]) + " |")
    lines.append("")
    lines.append("Cells: ours, mean ± sample std over the seeds that finished (no std for one seed); "
                 "the paper's number in parentheses where the paper reports one.")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    failed = [j for r in rows for j in r.failed]
    if failed:
        lines += ["", "Failed jobs (left out of the means):", ""]
        for j in failed:
            where = f" `{j.run_dir}`" if j.run_dir else ""
            lines.append(f"- {j.setting} seed {_seed_text(j.seed)}{where}: {j.error or 'failed'}")
    if provenance:
        lines += [""] + [f"- {k}: {v}" for k, v in provenance.items()]
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def render_csv(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """One line per row: key, label, kind, status, seeds, failed seeds, note, then per metric
    ``<m>_mean``, ``<m>_std``, ``<m>_paper`` (empty when absent)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "label", "kind", "status", "seeds", "failed_seeds", "note"]
               + [f"{c}_{part}" for c in columns for part in ("mean", "std", "paper")])
    for r in rows:
        w.writerow([r.key, r.label, r.kind, r.status,
                    " ".join(_seed_text(s) for s in r.seeds),
                    " ".join(_seed_text(j.seed) for j in r.failed), r.note]
                   + [x for c in columns for x in (_num(r.mean.get(c)), _num(r.std.get(c)), _num(r.paper.get(c)))])
    return buf.getvalue()


def wandb_table_data(columns: Sequence[str], rows: Sequence[Row]) -> tuple[list[str], list[list]]:
    """(column names, data) for a ``wandb.Table``: per metric ours (mean), std and paper."""
    names = ["setting", "status", "seeds"] + [f"{c}{suffix}" for c in columns for suffix in ("", " std", " paper")]
    data = [[r.label, r.status, runs_cell(r)] + [r_val for c in columns for r_val in
                                                 (r.mean.get(c), r.std.get(c), r.paper.get(c))] for r in rows]
    return names, data
