"""The "w/o grounding module" heads (Table 4 row 1, Decision 4 of docs/decisions.md): an MLP on V'' instead of P.

A head maps text-aware clip features to :class:`HeadOutput`: segment logits for ranking, and the
instance logits (and their mask) that the MIL triplet term pools into a video-level score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import ops


def window_softmax_pool(logits: Tensor, values: Tensor) -> Tensor:
    """Attention pooling inside every window ``[s, e]``.

    ``out[b, s, e] = sum_{j=s..e} softmax(logits[b, s..e])_j * values[b, j]``, computed in ``Nv``
    steps of a numerically stable running softmax (no [Nv, Nv, Nv] tensor).

    Args:
        logits: float [B, Nv]. values: float [B, Nv, H].

    Returns:
        float [B, Nv, Nv, H], 0 where ``s > e``.
    """
    Nv = logits.shape[1]
    m, num, den = logits, values, torch.ones_like(logits)
    per_length = [values]
    for length in range(2, Nv + 1):
        new_logit, new_value = logits[:, length - 1 :], values[:, length - 1 :]
        m_new = torch.maximum(m[:, :-1], new_logit)
        keep, add = torch.exp(m[:, :-1] - m_new), torch.exp(new_logit - m_new)
        num = num[:, :-1] * keep[..., None] + new_value * add[..., None]
        den = den[:, :-1] * keep + add
        m = m_new
        per_length.append(num / den[..., None])
    return ops.assemble_by_length(per_length)


@dataclass
class HeadOutput:
    """segment_logits float [B, Nv, Nv] (-inf invalid); instance_logits float [B, *I] and
    instance_mask bool [B, *I]: the MIL instances (segments [Nv, Nv] or clips [Nv])."""

    segment_logits: Tensor
    instance_logits: Tensor
    instance_mask: Tensor


class MLPSegmentHead(nn.Module):
    """Decision 4 as first built: attention pooling of V'' over each segment, a 3-layer MLP per segment.

    The MLP's first linear layer is applied to the clips before pooling (it commutes with a convex
    combination), so the [B, Nv, Nv, *] tensors have width ``hidden``. MIL instances: the segments.
    Measured: one-clip segments, below Random, ~10x slower per epoch than :class:`MLPClipHead`.

    Args:
        d_model: width of V''. hidden: MLP width. dropout: between the MLP layers.
        condition: ``"none"`` (V'' alone) or ``"product"`` (each clip times the sentence's mean S'').
    """

    def __init__(self, d_model: int, hidden: int = 256, dropout: float = 0.1, condition: str = "none") -> None:
        super().__init__()
        if condition not in ("none", "product"):
            raise ValueError(f"{type(self).__name__}: condition must be 'none' or 'product', got {condition!r}")
        self.condition = condition
        self._build_pooling(d_model)
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(dropout)

    def _build_pooling(self, d_model: int) -> None:
        self.attn_logit = nn.Linear(d_model, 1)

    def _conditioned(self, V: Tensor, S: Tensor, token_mask: Tensor) -> Tensor:
        if self.condition == "none":
            return V
        w = token_mask.to(S.dtype)[..., None]
        s_bar = (S * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)  # [B, d]
        return V * s_bar[:, None, :]

    def _mlp_tail(self, h: Tensor) -> Tensor:
        """relu(fc1 output) [..., hidden] -> logits [...]."""
        h = self.dropout(torch.relu(h))
        h = self.dropout(torch.relu(self.fc2(h)))
        return self.fc3(h).squeeze(-1)

    def forward(self, V: Tensor, clip_mask: Tensor, S: Tensor, token_mask: Tensor) -> HeadOutput:
        """V float [B, Nv, d], clip_mask bool [B, Nv], S [B, Ns, d], token_mask [B, Ns] -> HeadOutput."""
        V = self._conditioned(V, S, token_mask)
        logits = self._mlp_tail(window_softmax_pool(self.attn_logit(V).squeeze(-1), self.fc1(V)))
        valid = ops.segment_mask(clip_mask)
        logits = torch.where(valid, logits, torch.full_like(logits, -torch.inf))
        return HeadOutput(logits, logits, valid)


class MLPClipHead(MLPSegmentHead):
    """Variant (Table 4 row 1 as shipped): the MLP scores every clip; a segment's score comes from the
    clip logits by ``segment_rule`` (:func:`ops.clip_segment_scores`: ``"maxsum"`` centred window sums,
    ``"contrast"`` mean inside minus mean outside). MIL instances: the clips. No [B, Nv, Nv, hidden]
    tensor; the segment form predicted one-clip segments, below Random (docs/model.md).
    """

    def __init__(self, d_model: int, hidden: int = 256, dropout: float = 0.1, condition: str = "none",
                 segment_rule: str = "maxsum") -> None:
        super().__init__(d_model, hidden, dropout, condition)
        if segment_rule not in ("maxsum", "contrast"):
            raise ValueError(f"MLPClipHead: segment_rule must be 'maxsum' or 'contrast', got {segment_rule!r}")
        self.segment_rule = segment_rule

    def _build_pooling(self, d_model: int) -> None:
        self.attn_logit = None

    def forward(self, V: Tensor, clip_mask: Tensor, S: Tensor, token_mask: Tensor) -> HeadOutput:
        logits = self._mlp_tail(self.fc1(self._conditioned(V, S, token_mask)))
        logits = torch.where(clip_mask, logits, torch.zeros_like(logits))
        return HeadOutput(ops.clip_segment_scores(logits, clip_mask, self.segment_rule), logits, clip_mask)
