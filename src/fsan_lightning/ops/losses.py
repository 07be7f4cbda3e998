"""Loss building blocks (Eqs. 6, 10, 12; Decisions 3 and 5): pure functions, no state."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_mask
from ._segments import segment_mask

__all__ = [
    "moment_cross_entropy",
    "negative_video_indices",
    "segment_weights",
    "shared_token_masks",
    "triplet_loss",
    "weighted_segment_loss",
]


def triplet_loss(pos: Tensor, neg: Tensor, margin: float) -> Tensor:
    """Eq. 6 per sample: ``max(0, margin - pos + neg)``.

    Args:
        pos, neg: float [B] matching scores. margin: the paper's delta.

    Returns:
        float [B].
    """
    return (margin - pos + neg).clamp(min=0)


def segment_weights(sc: Tensor, clip_mask: Tensor, tau: float = 1.0, form: str = "softmax") -> Tensor:
    """Weights of Eqs. 10 and 12 (Decision 3), not detached (the caller detaches).

    Args:
        sc: float [B, Nv, Nv] segment scores (invalid cells may hold anything, -inf included).
        clip_mask: bool [B, Nv] valid prefix.
        tau: softmax temperature (``"softmax"`` only); smaller = sharper.
        form: ``"softmax"``: softmax of ``SC / tau`` over the valid cells of each sample (sums to 1);
            ``"raw"``: ``SC`` itself as printed (may be negative).

    Returns:
        float [B, Nv, Nv], 0 on invalid cells.
    """
    valid = segment_mask(clip_mask)
    if form == "softmax":
        if tau <= 0:
            raise ValueError(f"segment_weights: tau must be > 0, got {tau}")
        logits = torch.where(valid, sc / tau, torch.full_like(sc, -torch.inf))
        w = torch.softmax(logits.flatten(1), dim=1).view_as(sc)
    elif form == "raw":
        w = sc
    else:
        raise ValueError(f"segment_weights: form must be 'softmax' or 'raw', got {form!r}")
    return torch.where(valid, w, torch.zeros_like(w))


def weighted_segment_loss(weights: Tensor, loss_map: Tensor) -> Tensor:
    """``sum_{s,e} w(s,e) * L(s,e)`` per sample (Eqs. 10, 12).

    Args:
        weights, loss_map: float [B, Nv, Nv], both 0 (and finite) on invalid cells.

    Returns:
        float [B].
    """
    return (weights * loss_map).flatten(1).sum(dim=1)


def moment_cross_entropy(clip_scores: Tensor, target: Tensor, clip_mask: Tensor, temperature: float) -> Tensor:
    """Cross-entropy of a moment given clip by clip: ``-sum_j q_j log softmax_j(c_j / temperature)``.

    ``q`` is uniform over the target clips; the softmax runs over the valid clips. Not one of FSAN's terms:
    it trains a map from moments (ground truth, for a ceiling study, or a teacher's pseudo-moments;
    experiments/localization/moment_training.py).

    Args:
        clip_scores: float [B, Nv] (e.g. the content-word mean of the cosine map).
        target: bool [B, Nv] the moment's clips (only valid clips count).
        clip_mask: bool [B, Nv] valid prefix. temperature: > 0.

    Returns:
        float [B]; 0 for a sample whose target holds no valid clip.
    """
    check_mask("moment_cross_entropy", "clip_mask", clip_mask, tuple(clip_scores.shape))
    check_mask("moment_cross_entropy", "target", target, tuple(clip_scores.shape))
    if temperature <= 0:
        raise ValueError(f"moment_cross_entropy: temperature must be > 0, got {temperature}")
    target = target & clip_mask
    logp = torch.log_softmax(torch.where(clip_mask, clip_scores / temperature, -torch.inf), dim=1)
    q = target.to(clip_scores.dtype) / target.sum(dim=1, keepdim=True).clamp(min=1).to(clip_scores.dtype)
    return -(q * torch.where(target, logp, torch.zeros_like(logp))).sum(dim=1)


def shared_token_masks(
    tokens: Tensor,
    token_mask: Tensor,
    other_tokens: Tensor,
    other_mask: Tensor,
    ignore_ids: Sequence[int] = (1,),
) -> tuple[Tensor, Tensor]:
    """Tokens whose word occurs in both sentences (Decision 5).

    Args:
        tokens: int64 [B, Ns]; token_mask: bool [B, Ns].
        other_tokens: int64 [B, Ns']; other_mask: bool [B, Ns'].
        ignore_ids: ids never counted as shared (default the unknown id 1: two different unknown
            words are not the same word).

    Returns:
        (shared, other_shared): bool [B, Ns] and [B, Ns'], True on valid tokens whose id also occurs
        among the other sentence's valid tokens.
    """
    check_mask("shared_token_masks", "token_mask", token_mask, tuple(tokens.shape))
    check_mask("shared_token_masks", "other_mask", other_mask, tuple(other_tokens.shape))
    same = tokens[:, :, None] == other_tokens[:, None, :]
    same &= token_mask[:, :, None] & other_mask[:, None, :]
    for bad in ignore_ids:
        same &= (tokens != bad)[:, :, None]
    return same.any(dim=2), same.any(dim=1)


def negative_video_indices(vids: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Pair each sample with another sample's video: roll by one, skipping same-video pairs.

    Sample ``i`` takes the first ``i + k (mod B)``, ``k = 1, 2, ...``, whose video id differs.

    Args:
        vids: B video ids.

    Returns:
        (index, valid): int64 [B] and bool [B]; ``valid[i]`` is False when every sample in the
        batch shares ``vids[i]`` (``index[i]`` is then ``i`` and must be ignored).
    """
    B = len(vids)
    index, valid = list(range(B)), [False] * B
    for i in range(B):
        for k in range(1, B):
            j = (i + k) % B
            if vids[j] != vids[i]:
                index[i], valid[i] = j, True
                break
    return torch.tensor(index, dtype=torch.long), torch.tensor(valid, dtype=torch.bool)
