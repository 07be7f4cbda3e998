"""Test helper: a callback that logs a validation score known in advance (best at the first epoch)."""
import pytorch_lightning as pl


class FallingScore(pl.Callback):
    """Logs ``fake/score`` = -epoch after every validation run: the first epoch is the best (mode max)."""

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("fake/score", -float(trainer.current_epoch))
