"""Test a checkpoint: ``python -m fsan_lightning.eval ckpt_path=PATH [data=...]``.

The model, vocabulary and settings come from the checkpoint (loaded weights-only); the data side
comes from the config and is tokenised with the checkpoint's vocabulary. Writes results.json and
predictions_test.jsonl in the run directory.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from fsan_lightning import _entry as runtime
from fsan_lightning.runio import atomic_write_json, git_commit

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test ``cfg.ckpt_path`` on the test split; return the content of ``results.json``."""
    import pytorch_lightning as pl

    from fsan_lightning.lit.checkpoint import read_checkpoint

    started = time.time()
    commit = git_commit()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    vocab = list(read_checkpoint(cfg.ckpt_path)["hyper_parameters"]["vocab"])
    datamodule = runtime.build_datamodule(cfg, vocabulary=vocab)
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
def main(cfg: DictConfig) -> None:
    runtime.configure_environment(cfg)
    results = evaluate(cfg)
    print(f"run directory: {results['run_dir']}")
    print("test: " + "  ".join(f"{k} {v:.2f}" for k, v in results["test"].items()))


if __name__ == "__main__":
    main()
