"""Semantic alignment map (paper Sec. 3.3, Eq. 5): raw scores A and the min-max map P."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import ops


class AlignmentMap(nn.Module):
    """``A = scale * f(W_s S'', W_v V'')`` and ``P = Norm(A)`` (min-max over the valid clips).

    Args:
        d_model: input width. align_dim: width ``d_l`` of the projections ``W_s``, ``W_v``.
        align_form: ``"cosine"`` (``f`` = cosine similarity, so ``A / scale`` lies in [-1, 1]) or
            ``"dot"`` (``f`` = dot product / sqrt(d_l)).
        score_scale: the scale of A (a temperature for a sigmoid/tanh matching function; P and the
            ``"cosine"`` matching function do not depend on it).
        learn_score_scale: make the scale a learned parameter (kept positive through its log).
        projection: ``"linear"`` (the paper's ``W_s``, ``W_v``) or ``"identity"`` (none: A compares
            S'' and V'' directly; ``align_dim`` must equal ``d_model``; a documented deviation).
    """

    def __init__(
        self,
        d_model: int,
        align_dim: int,
        align_form: str = "cosine",
        score_scale: float = 10.0,
        learn_score_scale: bool = False,
        projection: str = "linear",
    ) -> None:
        super().__init__()
        if projection not in ("linear", "identity"):
            raise ValueError(f"AlignmentMap: projection must be 'linear' or 'identity', got {projection!r}")
        if projection == "identity" and align_dim != d_model:
            raise ValueError(f"AlignmentMap: projection='identity' needs align_dim == d_model, got {align_dim} != {d_model}")
        if align_form not in ("cosine", "dot"):
            raise ValueError(f"AlignmentMap: align_form must be 'cosine' or 'dot', got {align_form!r}")
        if score_scale <= 0:
            raise ValueError(f"AlignmentMap: score_scale must be > 0, got {score_scale}")
        self.align_form = align_form
        linear = projection == "linear"
        self.text_proj = nn.Linear(d_model, align_dim, bias=False) if linear else nn.Identity()
        self.video_proj = nn.Linear(d_model, align_dim, bias=False) if linear else nn.Identity()
        log_scale = torch.tensor(math.log(score_scale))
        if learn_score_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> Tensor:
        """Current scale of A (0-dim tensor)."""
        return self.log_scale.exp()

    def forward(
        self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """S [B, Ns, d], V [B, Nv, d], masks bool -> (A, P, cosine), each [B, Ns, Nv] (cosine None for "dot").

        A, P and cosine are 0 on padded tokens and clips.
        """
        s = self.text_proj(S)
        v = self.video_proj(V)
        valid = token_mask[:, :, None] & clip_mask[:, None, :]
        cosine = None
        if self.align_form == "cosine":
            cosine = torch.einsum("bid,bjd->bij", F.normalize(s, dim=-1), F.normalize(v, dim=-1))
            cosine = torch.where(valid, cosine, torch.zeros_like(cosine))
            A = self.scale * cosine
        else:
            A = torch.einsum("bid,bjd->bij", s, v) * (self.scale / math.sqrt(s.shape[-1]))
            A = torch.where(valid, A, torch.zeros_like(A))
        P = ops.minmax_normalize(A, token_mask, clip_mask)
        return A, P, cosine
