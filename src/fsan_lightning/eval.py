"""Test a checkpoint: ``python -m fsan_lightning.eval ckpt_path=PATH [data=...]``.

The model, vocabulary and settings come from the checkpoint (loaded weights-only); the data side
comes from the config and is tokenised with the checkpoint's vocabulary. Writes results.json and
predictions_test.jsonl in the run directory.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from fsan_lightning import _cli
from fsan_lightning.runio import atomic_write_json, git_commit

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test ``cfg.ckpt_path`` on the test split; return the content of ``results.json``."""
    import pytorch_lightning as pl

    from fsan_lightning import _entry as runtime
    from fsan_lightning.lit.checkpoint import read_checkpoint

    started = time.time()
    commit = git_commit()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    hparams = read_checkpoint(cfg.ckpt_path)["hyper_parameters"]
    if cfg.get("model") is not None:
        log.debug("the config's model group is not used: the model comes from the checkpoint")
    vocab = list(hparams["vocab"])
    width = hparams.get("video_dim")
    # eval reads the test split only: its features are checked, at the checkpoint's width
    datamodule = runtime.build_datamodule(cfg, vocabulary=vocab, check_splits=("test",),
                                          width=None if width is None else int(width))
    datamodule.write_report(out_dir / "data_report.json")
    loggers = runtime.build_loggers(cfg)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    try:
        test = runtime.test_checkpoint(trainer, datamodule, cfg.ckpt_path, out_dir)
        results = {
            "test": test,
            "checkpoint": str(cfg.ckpt_path),
            "seed": int(cfg.seed),
            "commit": commit,
            "wall_time_s": round(time.time() - started, 2),
            "run_dir": str(out_dir),
        }
        if trainer.is_global_zero:
            atomic_write_json(out_dir / "results.json", results)
        return results
    finally:
        runtime.finish_loggers(loggers)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def _main(cfg: DictConfig) -> None:
    from fsan_lightning import _entry as runtime  # torch and Lightning load here, after the refusals

    _cli.quiet_libraries()
    runtime.configure_environment(cfg)
    with _cli.user_errors():
        results = evaluate(cfg)
    print(_cli.results_table(results))
    print(f"run directory: {results['run_dir']}")


def main() -> None:
    """``python -m fsan_lightning.eval ckpt_path=...``: refusals (``model=``...) and filters, then Hydra."""
    _cli.prepare("eval", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
