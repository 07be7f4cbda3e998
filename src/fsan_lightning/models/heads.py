"""The "w/o grounding module" head (Table 4 row 1, DESIGN Decision 4)."""

from __future__ import annotations

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


class MLPGroundingHead(nn.Module):
    """Attention pooling of text-aware clip features V'' over each segment, then a 3-layer MLP.

    The MLP's first linear layer is applied to the clips before pooling (it commutes with a convex
    combination), so the [B, Nv, Nv, *] tensors have width ``hidden`` instead of ``d_model``.

    Args:
        d_model: width of V''. hidden: MLP width. dropout: between the MLP layers.
    """

    def __init__(self, d_model: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn_logit = nn.Linear(d_model, 1)
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, V: Tensor, clip_mask: Tensor) -> Tensor:
        """V float [B, Nv, d], clip_mask bool [B, Nv] -> segment logits [B, Nv, Nv], -inf invalid."""
        pooled = window_softmax_pool(self.attn_logit(V).squeeze(-1), self.fc1(V))
        h = self.dropout(torch.relu(pooled))
        h = self.dropout(torch.relu(self.fc2(h)))
        logits = self.fc3(h).squeeze(-1)
        return torch.where(ops.segment_mask(clip_mask), logits, torch.full_like(logits, -torch.inf))
