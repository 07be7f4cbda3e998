"""Checkpoints name their LightningModule by import path, checked against an allow-list."""
from __future__ import annotations

import pytest
import torch

from fsan_lightning.lit.checkpoint import ALLOWED_MODULES, CheckpointError, load_module, module_class


def test_allowed_paths_and_old_bare_names_resolve():
    for path in ALLOWED_MODULES:
        cls = module_class(path)
        assert f"{cls.__module__}.{cls.__qualname__}" == path
        assert module_class(path.rsplit(".", 1)[1]) is cls  # checkpoints before the import paths


def test_a_checkpoint_naming_other_code_is_refused(tmp_path, trained_run):
    _, results, _ = trained_run
    ckpt = torch.load(results["checkpoint"], weights_only=True)
    assert ckpt["fsan_lightning_module"] == "fsan_lightning.lit.module.FSANModule"
    ckpt["fsan_lightning_module"] = "os.system"
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="unknown module class 'os.system'"):
        load_module(tmp_path / "bad.ckpt")
