"""Shared fixtures: the real annotation files (FSAN_SHARED_DATA) and composed configs on a tiny world."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A world small enough for a 2-epoch training run in seconds; the real default is in SyntheticConfig.
TINY_WORLD = {
    "train_videos": 24, "val_videos": 8, "test_videos": 8,
    "min_rows": 40, "max_rows": 60, "feature_dim": 32,
}
TINY_MODEL = [
    "model.net.d_model=32", "model.net.interaction.layers=1", "model.net.num_heads=2", "model.net.ffn_dim=64",
    "model.net.head.hidden=32",
]
QUIET = ["callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "logger=csv"]


def shared_data_dir() -> Path | None:
    """The real annotation files: $FSAN_SHARED_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("FSAN_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Skip when the real files are absent, except under CI (FSAN_REQUIRE_SHARED_DATA=1), where it fails."""
    path = shared_data_dir()
    if path is None:
        if os.environ.get("FSAN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail("FSAN_REQUIRE_SHARED_DATA=1 but FSAN_SHARED_DATA does not point at the shared data folder")
        pytest.skip("real annotation files not available (set FSAN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory) -> Path:
    """A tiny synthetic world in the ActivityNet layout, generated once per test session."""
    from fsan_lightning.data.synthetic import ensure_world

    out = tmp_path_factory.mktemp("tiny_world")
    ensure_world(out, TINY_WORLD)
    return out


def world_overrides(world_dir: Path) -> list[str]:
    """Hydra overrides that point data=synthetic at the tiny world."""
    items = ",".join(f"{k}:{v}" for k, v in TINY_WORLD.items())
    return [f"data.data_dir={world_dir}", f"data.synthetic={{{items}}}", "data.num_clips=16",
            "data.batch_size=8", "data.eval_batch_size=16"]


def compose_config(config_name: str, overrides: list[str]):
    """Compose a config of the package's tree in-process (no subprocess, no Hydra run dir)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="fsan_lightning.conf", version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def tiny_train_config(world_dir: Path, run_dir: Path, *extra: str):
    return compose_config("train", world_overrides(world_dir) + TINY_MODEL + QUIET + [
        f"paths.output_dir={run_dir}", "trainer.max_epochs=2", *extra])


@pytest.fixture(scope="session")
def trained_run(tiny_world_dir, tmp_path_factory):
    """One tiny training run (2 epochs) shared by the tests that need a trained checkpoint."""
    from fsan_lightning.train import train

    os.environ["WANDB_MODE"] = "disabled"
    run_dir = tmp_path_factory.mktemp("trained")
    cfg = tiny_train_config(tiny_world_dir, run_dir)
    results = train(cfg)
    return run_dir, results, cfg
