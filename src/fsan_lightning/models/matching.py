"""Video-sentence matching scores (Eq. 7, Decision 1): ``S(V, S) = mean_i max_j g(A[i, j])``.

A matching score is a small parameter-free object: ``score(out, token_mask)`` -> float [B], from an
:class:`~.fsan.FSANOutput` (its own ``video_mask`` gives the valid clips).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ops
from .fsan import FSANOutput

MATCH_FNS = ("cosine", "sigmoid", "tanh", "identity")


class MatchingScore:
    """Eq. 7 on ``g(A)`` (Decision 1: the raw scores, never P).

    Args:
        fn: ``g``: ``"cosine"`` (the unscaled cosine in [-1, 1]; needs a cosine alignment),
            ``"sigmoid"`` / ``"tanh"`` of A, or ``"identity"``.
        temperature: None for Eq. 7's hard max over clips; t > 0 for the smooth maximum
            ``t * log(mean_j exp(g / t))`` (a documented deviation: val R1@0.5 22.4 -> 27.5 with 0.1 on
            session 1's model, experiments/localization/README.md).
    """

    def __init__(self, fn: str = "cosine", temperature: float | None = None) -> None:
        if fn not in MATCH_FNS:
            raise ValueError(f"{type(self).__name__}: fn must be one of {MATCH_FNS}, got {fn!r}")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"{type(self).__name__}: temperature must be > 0 or None, got {temperature}")
        self.fn, self.temperature = fn, temperature

    reads_interacted = True  # g reads the map after the interaction (criterion.FSANCriterion.interacted_passes)

    @property
    def needs_cosine(self) -> bool:
        return self.fn == "cosine"

    def g(self, out: FSANOutput) -> Tensor:
        """The bounded map of the raw scores, float [B, Ns, Nv]."""
        return self._bounded(out.A, out.cosine)

    def _bounded(self, A: Tensor, cosine: Tensor | None) -> Tensor:
        """``g`` of raw scores A [B, Ns, Nv] (the unscaled ``cosine`` for ``fn="cosine"``)."""
        if self.fn == "cosine":
            if cosine is None:
                raise ValueError(f"{type(self).__name__}: fn='cosine' needs a cosine alignment (the output has no cosine)")
            return cosine
        if self.fn == "sigmoid":
            return torch.sigmoid(A)
        if self.fn == "tanh":
            return torch.tanh(A)
        return A

    def __call__(self, out: FSANOutput, token_mask: Tensor) -> Tensor:
        """token_mask bool [B, Ns] (may be empty for a sample: it scores 0) -> float [B]."""
        return ops.matching_score(self.g(out), token_mask, out.video_mask, temperature=self.temperature)


class CentredMatchingScore(MatchingScore):
    """Variant: g(A) minus its mean over the token's valid clips, then Eq. 7.

    A word wins the margin only where it stands out inside the video, not by whole-video similarity,
    which the cross-modal attention otherwise offers as a shortcut (measured worse with ICIM).
    """

    def g(self, out: FSANOutput) -> Tensor:
        g = super().g(out)
        valid = out.video_mask[:, None, :].to(g.dtype)
        return g - (g * valid).sum(dim=2, keepdim=True) / valid.sum(dim=2, keepdim=True).clamp(min=1)


class PrintedMatchingScore(MatchingScore):
    """Variant: Eq. 7 as printed, on P. With min-max P every token's max is 1, so the score is the
    constant 1 and the triplet loss trains nothing (Decision 1); kept to show it."""

    @property
    def needs_cosine(self) -> bool:
        return False

    def g(self, out: FSANOutput) -> Tensor:
        return out.P


class BaseMapMatchingScore(MatchingScore):
    """Variant: Eq. 7 on the map *before* the interaction (:class:`~.fsan.TwoStageFSAN`), so the matching
    loss cannot train the interaction to write a whole-video signature into every clip (issue 19)."""

    reads_interacted = False

    def g(self, out: FSANOutput) -> Tensor:
        if out.base_A is None:
            raise ValueError("BaseMapMatchingScore needs a network with a base map (net kind two_stage)")
        return self._bounded(out.base_A, out.base_cosine)


class JointMatchingScore(MatchingScore):
    """Variant: the words must match at the same clips: ``S(V, S) = max_j mean_i g(A[i, j])``
    (:func:`ops.joint_matching_score`; the smooth maximum with ``temperature``).

    Eq. 7 takes each word's maximum on its own, so a sentence whose words all occur in the video, at
    different moments, scores as high as one that the video shows at one moment. This score is the
    binding negatives' (:class:`~.criterion.BindingTerms`).
    """

    def __call__(self, out: FSANOutput, token_mask: Tensor) -> Tensor:
        return ops.joint_matching_score(self.g(out), token_mask, out.video_mask, temperature=self.temperature)
