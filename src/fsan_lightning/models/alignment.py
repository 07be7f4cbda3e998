"""Semantic alignment map (paper Sec. 3.3, Eq. 5): raw scores A and the min-max map P, and variants."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import ops


class AlignmentMap(nn.Module):
    """``A = scale * cos(W_s S'', W_v V'')`` and ``P = Norm(A)`` (min-max over the valid clips).

    The cosine form keeps ``A / scale`` in [-1, 1], so the matching score's ``g`` (Decision 1) is
    bounded; the paper prints an inner product, available as :class:`DotProductAlignment`.

    Args:
        d_model: input width. dim: width ``d_l`` of ``W_s``, ``W_v`` (None = ``d_model``).
        score_scale: the scale of A (a temperature for a sigmoid/tanh matching function; P and the
            cosine matching function do not depend on it).
        learn_score_scale: make the scale a learned parameter (kept positive through its log).
    """

    has_cosine = True

    def __init__(self, d_model: int, dim: int | None = None, score_scale: float = 10.0,
                 learn_score_scale: bool = False) -> None:
        super().__init__()
        if score_scale <= 0:
            raise ValueError(f"{type(self).__name__}: score_scale must be > 0, got {score_scale}")
        self._build_projections(d_model, dim or d_model)
        log_scale = torch.tensor(math.log(score_scale))
        if learn_score_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def _build_projections(self, d_model: int, dim: int) -> None:
        self.text_proj = nn.Linear(d_model, dim, bias=False)
        self.video_proj = nn.Linear(d_model, dim, bias=False)

    @property
    def scale(self) -> Tensor:
        """Current scale of A (0-dim tensor)."""
        return self.log_scale.exp()

    def similarity(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor | None]:
        """Projected s [B, Ns, d_l], v [B, Nv, d_l] -> (A, cosine) [B, Ns, Nv] before masking."""
        cosine = torch.einsum("bid,bjd->bij", F.normalize(s, dim=-1), F.normalize(v, dim=-1))
        return self.scale * cosine, cosine

    def forward(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """S [B, Ns, d], V [B, Nv, d], masks bool -> (A, P, cosine), each [B, Ns, Nv], 0 on padding.

        ``cosine`` is None for forms without one (:class:`DotProductAlignment`).
        """
        valid = token_mask[:, :, None] & clip_mask[:, None, :]
        A, cosine = self.similarity(self.text_proj(S), self.video_proj(V))
        A = torch.where(valid, A, torch.zeros_like(A))
        if cosine is not None:
            cosine = torch.where(valid, cosine, torch.zeros_like(cosine))
        return A, ops.minmax_normalize(A, token_mask, clip_mask), cosine


class DotProductAlignment(AlignmentMap):
    """Variant: ``A = scale * <W_s s, W_v v> / sqrt(d_l)`` (Eq. 5's inner product as printed); no cosine."""

    has_cosine = False

    def similarity(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor | None]:
        return torch.einsum("bid,bjd->bij", s, v) * (self.scale / math.sqrt(s.shape[-1])), None


class FeatureSpaceAlignment(AlignmentMap):
    """Variant: no ``W_s``, ``W_v``; A is the scaled cosine of S'' and V'' themselves.

    With :class:`~fsan_lightning.models.encoders.FeatureSpaceVideoEncoder` and no interaction, words
    are learned as directions in the clip feature space (`make train`'s model; docs/model.md).
    """

    def __init__(self, d_model: int, dim: int | None = None, score_scale: float = 10.0,
                 learn_score_scale: bool = False) -> None:
        if dim not in (None, d_model):
            raise ValueError(f"FeatureSpaceAlignment: dim must equal d_model={d_model} (or null), got {dim}")
        super().__init__(d_model, None, score_scale, learn_score_scale)

    def _build_projections(self, d_model: int, dim: int) -> None:
        self.text_proj = nn.Identity()
        self.video_proj = nn.Identity()
