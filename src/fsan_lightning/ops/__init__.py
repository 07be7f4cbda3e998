"""Pure tensor functions of FSAN: grounding maps, per-segment losses, IoU, NMS, diagnostics.

Imports only torch. Conventions: maps ``P``/``A`` are float [B, Ns, Nv]; masks are bool with
True = valid; valid clips are a prefix; segment maps are [B, Nv, Nv] indexed ``[b, s, e]``.
"""

from ._segments import centred
from .diagnostics import clip_range_mask, localization_stats, seconds_to_clip_mask
from .grounding import (
    assemble_by_length,
    inner_loss_map,
    joint_matching_score,
    matching_score,
    maxsum_segment_scores,
    minmax_normalize,
    outer_loss_map,
    segment_mask,
    segment_scores,
    sentence_contrast_score,
    gated_sibling_competition,
    masked_sibling_competition,
    sibling_competition,
    token_mean,
)
from .losses import (
    moment_cross_entropy,
    negative_video_indices,
    segment_weights,
    shared_token_masks,
    triplet_loss,
    weighted_segment_loss,
)
from .mil import clip_segment_scores as clip_segment_scores, mil_pool as mil_pool
from .temporal import best_segment, rank_moments, temporal_iou, temporal_nms

__all__ = [
    "assemble_by_length",
    "best_segment",
    "centred",
    "clip_range_mask",
    "inner_loss_map",
    "joint_matching_score",
    "localization_stats",
    "matching_score",
    "maxsum_segment_scores",
    "minmax_normalize",
    "moment_cross_entropy",
    "negative_video_indices",
    "outer_loss_map",
    "rank_moments",
    "seconds_to_clip_mask",
    "segment_mask",
    "segment_scores",
    "segment_weights",
    "sentence_contrast_score",
    "shared_token_masks",
    "gated_sibling_competition",
    "masked_sibling_competition",
    "sibling_competition",
    "temporal_iou",
    "token_mean",
    "temporal_nms",
    "triplet_loss",
    "weighted_segment_loss",
]
