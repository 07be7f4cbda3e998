"""Word salience: how much each word's map counts when a sentence is grounded (a variant part; docs/model.md).

Some words of a caption leave no trace in the pixels ("camera", "begins", "shown"), others dominate them;
the grounders average the content words' maps with equal weights, so a word that does not show adds its
noise to every moment. :class:`WordSalience` holds one logit per vocabulary word, estimated before
training from the training split alone (`fsan_lightning.baselines.prototype.fit_local_visibility`: which
videos mention a word and how their clips vary along its prototype direction; never timestamps); a
sentence's words are then weighted by ``exp(logit)``. Zero logits (the unfitted state) are the plain mean.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class WordSalience(nn.Module):
    """Per-word weights of the grounders' token means, from the training split's visibility estimate.

    ``logit_w = power * log(max(est_w, floor * m) / m)`` for a word with an estimate, ``m`` the median
    estimate of those words; 0 (the median word's weight) for the others (too rare, or in too many videos
    for a contrast, where an estimate would be mostly noise). The logits are buffers: saved in checkpoints,
    never trained.

    Args:
        vocab_size: V. min_videos: the fit's (`fit_local_visibility`): fewest training videos that mention a
            word, and that do not, for it to get its own weight.
        power: how far the weights follow the estimate (1: proportional to it; 0: the plain mean).
        floor: the smallest ``est / m`` (a word that does not show at all), so weights >= ``floor ** power``.
    """

    def __init__(self, vocab_size: int, min_videos: int = 10, power: float = 0.5, floor: float = 1e-3) -> None:
        super().__init__()
        if min_videos < 1 or power < 0 or not 0 < floor <= 1:
            raise ValueError(f"WordSalience: need min_videos >= 1, power >= 0 and 0 < floor <= 1, got "
                             f"{min_videos}, {power}, {floor}")
        self.min_videos, self.power, self.floor = int(min_videos), float(power), float(floor)
        self.register_buffer("logits", torch.zeros(vocab_size))
        self.register_buffer("fitted", torch.tensor(False))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens int64 [B, Ns] -> weights float [B, Ns] (> 0; 1 for every token before fitting)."""
        return self.logits[tokens].exp()

    def set_estimate(self, estimate: Tensor, estimated: Tensor) -> None:
        """estimate float [V], estimated bool [V] (`fit_local_visibility`) -> the logits; marks the part fitted.

        Raises ValueError when the shapes are not the vocabulary's."""
        V = self.logits.shape[0]
        if tuple(estimate.shape) != (V,) or tuple(estimated.shape) != (V,) or estimated.dtype != torch.bool:
            raise ValueError(f"WordSalience: estimate (float) and estimated (bool) must be [{V}], got "
                             f"{tuple(estimate.shape)}, {tuple(estimated.shape)} {estimated.dtype}")
        est = estimate.detach().to(self.logits.device, torch.float64)
        own = estimated.to(self.logits.device)
        logits = torch.zeros_like(est)
        if own.any():
            m = est[own].median().clamp(min=1e-12)
            logits = torch.where(own, self.power * torch.log(est.clamp(min=self.floor * float(m)) / m), logits)
        self.logits.copy_(logits.to(self.logits.dtype))
        self.fitted.fill_(True)

    def extra_repr(self) -> str:
        return f"vocab={self.logits.shape[0]}, min_videos={self.min_videos}, power={self.power}, floor={self.floor}"
