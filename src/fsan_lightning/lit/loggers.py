"""Loggers the framework configures: Lightning's W&B logger without its deprecated ``anonymous`` argument.

Lightning's `WandbLogger` always passes ``anonymous=None`` to ``wandb.init``; wandb >= 0.19 warns
("The anonymous setting has no effect and will be removed") whenever the argument is present, even
as None, once per run. This subclass drops the argument unless it was asked for. Everything else is
Lightning's logger (``type(logger).__name__`` stays ``WandbLogger``).
"""
from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    """`pytorch_lightning.loggers.WandbLogger` that passes ``anonymous`` to wandb only when set."""

    def __init__(self, *args: Any, anonymous: bool | None = None, **kwargs: Any):
        super().__init__(*args, anonymous=anonymous, **kwargs)
        if not anonymous:
            self._wandb_init.pop("anonymous", None)
