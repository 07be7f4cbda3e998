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


MLP_MODES = ("segment", "clip")
MLP_SEGMENT_RULES = ("maxsum", "contrast")
MLP_CONDITIONS = ("none", "product")


class MLPGroundingHead(nn.Module):
    """The "w/o grounding module" head: a 3-layer MLP on text-aware clip features V''.

    ``mode="segment"`` (DESIGN Decision 4 as first built): attention pooling of V'' over each
    segment, then the MLP scores every segment. The MLP's first linear layer is applied to the clips
    before pooling (it commutes with a convex combination), so the [B, Nv, Nv, *] tensors have width
    ``hidden`` instead of ``d_model``.

    ``mode="clip"`` (a documented deviation, docs/model.md): the MLP scores every clip
    (:meth:`clip_logits`), and a segment's score comes from the clip logits by ``segment_rule``
    (:func:`ops.clip_segment_scores`: ``"maxsum"`` centred window sums, ``"contrast"`` mean inside
    minus mean outside). The criterion's MIL then pools the clip logits. No [B, Nv, Nv, hidden] tensor.

    ``condition="product"`` multiplies each clip feature by the mean of the sentence's valid S''
    (no parameters) before the MLP, so the scores depend on the sentence directly and not only
    through the cross-modal attention; ``"none"`` reads V'' alone.

    Args:
        d_model: width of V''. hidden: MLP width. dropout: between the MLP layers.
        mode, segment_rule, condition: see above.
    """

    def __init__(
        self,
        d_model: int,
        hidden: int = 256,
        dropout: float = 0.1,
        mode: str = "segment",
        segment_rule: str = "maxsum",
        condition: str = "none",
    ) -> None:
        super().__init__()
        for name, value, choices in (
            ("mode", mode, MLP_MODES),
            ("segment_rule", segment_rule, MLP_SEGMENT_RULES),
            ("condition", condition, MLP_CONDITIONS),
        ):
            if value not in choices:
                raise ValueError(f"MLPGroundingHead: {name} must be one of {choices}, got {value!r}")
        self.mode, self.segment_rule, self.condition = mode, segment_rule, condition
        self.attn_logit = nn.Linear(d_model, 1) if mode == "segment" else None
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(dropout)

    def _condition(self, V: Tensor, S: Tensor | None, token_mask: Tensor | None) -> Tensor:
        if self.condition == "none":
            return V
        if S is None or token_mask is None:
            raise ValueError("MLPGroundingHead: condition='product' needs the text features and token_mask")
        w = token_mask.to(S.dtype)[..., None]
        s_bar = (S * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)  # [B, d]
        return V * s_bar[:, None, :]

    def clip_logits(
        self, V: Tensor, clip_mask: Tensor, S: Tensor | None = None, token_mask: Tensor | None = None
    ) -> Tensor:
        """Per-clip logits (``mode="clip"``): float [B, Nv], 0 on padded clips."""
        h = self.dropout(torch.relu(self.fc1(self._condition(V, S, token_mask))))
        h = self.dropout(torch.relu(self.fc2(h)))
        logits = self.fc3(h).squeeze(-1)
        return torch.where(clip_mask, logits, torch.zeros_like(logits))

    def forward(
        self, V: Tensor, clip_mask: Tensor, S: Tensor | None = None, token_mask: Tensor | None = None
    ) -> Tensor:
        """V float [B, Nv, d], clip_mask bool [B, Nv] (S [B, Ns, d], token_mask [B, Ns] for
        ``condition="product"``) -> segment logits [B, Nv, Nv], -inf invalid."""
        if self.mode == "clip":
            return ops.clip_segment_scores(
                self.clip_logits(V, clip_mask, S, token_mask), clip_mask, self.segment_rule
            )
        V = self._condition(V, S, token_mask)
        pooled = window_softmax_pool(self.attn_logit(V).squeeze(-1), self.fc1(V))
        h = self.dropout(torch.relu(pooled))
        h = self.dropout(torch.relu(self.fc2(h)))
        logits = self.fc3(h).squeeze(-1)
        return torch.where(ops.segment_mask(clip_mask), logits, torch.full_like(logits, -torch.inf))
