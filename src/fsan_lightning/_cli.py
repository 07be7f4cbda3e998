"""What the train and eval entry points do around Hydra: quiet logs, clear refusals, errors without traceback.

- `prepare(entry, argv)` runs before Hydra composes: it installs the warning filters (Lightning's
  ``isinstance(treespec, LeafSpec)`` FutureWarning, which says nothing to a user) and refuses
  command-line overrides that cannot apply (``eval`` with ``model=`` / ``model.*``: the model comes
  from the checkpoint; a ``data.<key>`` that the data module does not take), printing one
  ``error: ...`` line and exiting 2, no traceback.
- `quiet_libraries()` runs when the job starts: Lightning's info lines (GPU/TPU available, seed set,
  tips, "fit stopped") go below the default level, unless Hydra's ``hydra.verbose`` asked for more.
- `user_errors()` turns the errors about the user's data and settings (`DataFormatError`, a missing
  file, a checkpoint that cannot be read, `UsageError`) into ``error: <message>`` on stderr and exit status 2
  (in a ``-m`` sweep the job fails as before, so that the sweep's other jobs still run).
- `results_table` formats the end-of-run table.

Imports nothing heavy at module level (the refusals answer before torch is imported).
"""
from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)

#: the warnings the entry points filter (message regex, category)
FILTERED_WARNINGS = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)
#: loggers whose INFO lines are not shown at the default level
QUIET_LOGGERS = ("pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")

_OVERRIDE = re.compile(r"^(?P<prefix>\+\+|\+|~)?(?P<key>[A-Za-z_][\w\-@/]*(?:\.[\w\-@]+)*)(?P<rest>=.*)?$")

EVAL_ALLOWED = ("ckpt_path=PATH (required)", "data=<name>", "data.<key>=...", "trainer=<name>", "trainer.<arg>=...",
                "logger=<name>", "paths.output_dir=DIR", "seed=N", "experiment=<name> (its data and trainer; its "
                "model settings are not used)", "hydra.*")


class UsageError(ValueError):
    """A command line or setting that cannot apply; the message says why and what can."""


def install_warning_filters() -> None:
    """Filter the warnings of `FILTERED_WARNINGS` in this process (and its DataLoader workers)."""
    for message, category in FILTERED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def _overrides(argv: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    """(prefix, key, raw) of each Hydra override on the command line (flags and their values skipped)."""
    skip_next = False
    for raw in argv:
        if skip_next:
            skip_next = False
            continue
        if raw.startswith("-"):
            # hydra flags with a separate value: --config-name X, -cn X, --config-path X, -cp X, ...
            skip_next = raw in ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd",
                                "--info", "-i", "--experimental-rerun")
            continue
        m = _OVERRIDE.match(raw)
        if m:
            yield m.group("prefix") or "", m.group("key"), raw


#: the constructor arguments of `GroundingDataModule` (what ``data.<key>`` can set); kept here so that a
#: refusal answers without importing Lightning; tests/test_cli.py checks it against the signature
DATA_KEYS = (
    "dataset",
    "data_dir",
    "train_file",
    "val_file",
    "test_file",
    "features",
    "feature_key",
    "durations",
    "num_clips",
    "max_tokens",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "glove",
    "min_word_count",
    "missing_features",
    "seed",
    "synthetic",
    "limit_queries",
    "val_fraction",
    "test_fraction",
    "bad_features",
    "duration_tolerance",
    "feature_rate",
    "check_cache_dir",
    "subset",
    "annotations_dir",
    "anet_sim",
    "generate_workers",
    "binding_tolerance",
    "siblings",
    "clip_cache_mb",
)


def data_keys() -> list[str]:
    """The keys ``data.<key>`` can set: the data module's constructor arguments (and ``_target_``)."""
    return sorted([*DATA_KEYS, "_target_"])


def refuse_overrides(entry: str, argv: Sequence[str]) -> None:
    """Raise `UsageError` for overrides that cannot apply to ``entry`` ("train" or "eval")."""
    parsed = list(_overrides(argv))
    if entry == "eval":
        model = [raw for _, key, raw in parsed if key == "model" or key.startswith(("model.", "model@"))]
        if model:
            raise UsageError(
                f"eval takes the model from the checkpoint (architecture, settings and vocabulary are stored "
                f"in ckpt_path), so {' '.join(model)} cannot apply. To evaluate other model settings, train "
                f"them (python -m fsan_lightning.train model=...). Overrides eval takes: {', '.join(EVAL_ALLOWED)}")
    if any(key == "data._target_" for _, key, _ in parsed):
        return  # the user's own data module: its keys are its business
    data = [(key.split(".")[1], raw) for prefix, key, raw in parsed
            if key.startswith("data.") and prefix != "~" and key.count(".") >= 1]
    if data:
        valid = data_keys()
        unknown = [raw for name, raw in data if name not in valid]
        if unknown:
            raise UsageError(f"unknown data setting(s) {unknown}; data.<key> takes: {valid} (docs/data.md)")


def check_data_config(data_cfg: dict) -> None:
    """Raise `UsageError` naming the valid keys when a composed ``data`` config has an unknown key."""
    if not data_cfg or str(data_cfg.get("_target_", "")) != "fsan_lightning.lit.datamodule.GroundingDataModule":
        return
    valid = data_keys()
    unknown = sorted(set(data_cfg) - set(valid))
    if unknown:
        raise UsageError(f"unknown data setting(s) {unknown}; data.<key> takes: {valid} (docs/data.md)")


def prepare(entry: str, argv: Sequence[str] | None = None) -> None:
    """Before Hydra: warning filters, then the refusals (``error: ...`` on stderr, exit 2)."""
    install_warning_filters()
    try:
        refuse_overrides(entry, sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def quiet_libraries() -> None:
    """Lightning's INFO lines below the default level (kept when the root logger is at DEBUG)."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    import pytorch_lightning  # noqa: F401  (its import sets its loggers to INFO: import first, then lower)
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Errors about the user's data or settings: ``error: <message>`` on stderr, exit status 2."""
    from fsan_lightning.data.errors import DataFormatError
    from fsan_lightning.lit.checkpoint import CheckpointError

    try:
        yield
    except (DataFormatError, UsageError, FileNotFoundError, CheckpointError) as err:
        _to_log_files(err)
        print(f"error: {err}", file=sys.stderr)
        if _in_multirun():
            raise  # Hydra records the job as failed and runs the sweep's other jobs
        raise SystemExit(2) from None


def _to_log_files(err: BaseException) -> None:
    """The error with its traceback into the run's log file(s) only (the console gets one line)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "stopped: %s", (err,), sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _in_multirun() -> bool:
    """Whether this is a job of a Hydra multirun (``-m``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover - hydra is a dependency
        return False
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def results_table(results: dict, width: int = 100) -> str:
    """The end-of-run table: one column per test metric (percent, diagnostics as they are)."""
    test = {k: v for k, v in (results.get("test") or {}).items() if isinstance(v, (int, float))}
    if not test:
        return ""
    cells = [(k, f"{v:.2f}") for k, v in test.items()]
    rows, line_names, line_values = [], [], []
    for name, value in cells:
        w = max(len(name), len(value))
        if line_names and len("  ".join(line_names)) + w + 2 > width - 6:
            rows.append((line_names, line_values))
            line_names, line_values = [], []
        line_names.append(name.rjust(w))
        line_values.append(value.rjust(w))
    rows.append((line_names, line_values))
    out = []
    for names, values in rows:
        out.append("      " + "  ".join(names))
        out.append("test  " + "  ".join(values))
    return "\n".join(out)


def wandb_offline_hint(run_dir) -> str:
    """How to upload this run's offline W&B run, or "" when there is none."""
    from pathlib import Path

    runs = sorted((Path(run_dir) / "wandb").glob("offline-run-*"))
    return f"W&B offline run: upload it with `wandb sync {runs[-1]}`" if runs else ""
