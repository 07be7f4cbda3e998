"""Train FSAN: fit on train, select the checkpoint on validation, test it on the test split.

    python -m fsan_lightning.train                                  # synthetic world, small CPU model
    python -m fsan_lightning.train experiment=activitynet data.data_dir=DIR
    python -m fsan_lightning.train -m model.cross_attn=false,true   # a sweep, one run dir per job

``train(cfg)`` is the pure entry tests call with a composed config; ``main`` is the thin Hydra wrapper.
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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job described by ``cfg``; return the content of ``results.json``."""
    import pytorch_lightning as pl

    from fsan_lightning import _entry as runtime  # torch and Lightning load here, after the refusals

    started = time.time()
    commit = git_commit()  # the code that runs is the code at the start, whatever changes meanwhile
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime.guard_ddp_under_multirun(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = runtime.build_datamodule(cfg)  # the full feature check of every split, before fit
    datamodule.write_report(out_dir / "data_report.json")
    module = runtime.build_module(cfg, datamodule)
    runtime.log_model_size(module, datamodule)
    loggers = runtime.build_loggers(cfg)
    callbacks = runtime.build_callbacks(cfg) + runtime.provenance_callbacks(datamodule)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    runtime.log_config(trainer, cfg)

    try:
        results: dict[str, Any] = {"seed": int(cfg.seed), "commit": commit}
        if getattr(module, "trains_with_gradients", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=runtime.resolve_resume(cfg, out_dir))
            ckpt_cb = runtime.checkpoint_callback(trainer)
            best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
            results["val_best"] = runtime.best_validation(trainer, ckpt_cb)
        else:
            # training-free baselines (model=prototype, model=random): one pass over the training split
            best, results["val_best"] = runtime.fit_without_gradients(trainer, module, datamodule, out_dir)
        results["checkpoint"] = best or None
        if cfg.get("test", True):
            if not best:
                raise RuntimeError("no checkpoint was selected on validation; cannot test (did validation run?)")
            results["test"] = runtime.test_checkpoint(trainer, datamodule, best, out_dir)
        results["wall_time_s"] = round(time.time() - started, 2)
        results["run_dir"] = str(out_dir)
        if trainer.is_global_zero:
            atomic_write_json(out_dir / "results.json", results)
            log.debug("results: %s", out_dir / "results.json")
        return results
    finally:
        runtime.finish_loggers(loggers)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from fsan_lightning import _entry as runtime

    _cli.quiet_libraries()
    runtime.configure_environment(cfg)
    with _cli.user_errors():
        results = train(cfg)
    test = results.get("test") or {}
    if test:
        print(_cli.results_table(results))
    print(f"run directory: {results['run_dir']}")
    hint = _cli.wandb_offline_hint(results["run_dir"])
    if hint:
        print(hint)
    return float(test.get(cfg.monitor.split("/", 1)[-1], 0.0)) if test else None


def main() -> float | None:
    """``python -m fsan_lightning.train [overrides]``: refusals and warning filters first, then Hydra."""
    _cli.prepare("train", sys.argv[1:])
    return _main()


if __name__ == "__main__":
    main()
