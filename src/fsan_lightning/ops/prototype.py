"""Word prototypes: the mathematics of the training-free, weakly supervised prototype baseline.

Imports only torch. Fitting uses video-level information only (which words a video's sentences
contain), never timestamps. Grounding: per clip, the mean cosine between the standardised clip feature
and the query's word prototypes, centred on the video's mean; the moment is the maximum-sum run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_clip_mask, check_mask
from ._segments import centred, segment_lengths
from .max_sum import window_sums

__all__ = [
    "centred_clip_scores",
    "first_occurrences",
    "prototype_alignment",
    "prototype_segment_scores",
    "word_prototypes",
    "within_video_variance",
]


def first_occurrences(tokens: Tensor, word_mask: Tensor) -> Tensor:
    """Selected tokens that are the first selected occurrence of their id in their sentence.

    Args:
        tokens: int64 [B, Ns]. word_mask: bool [B, Ns] selected tokens.

    Returns:
        bool [B, Ns]: ``word_mask`` without repeats ("the ball hit the ball": one "ball").
    """
    check_mask("first_occurrences", "word_mask", word_mask, tuple(tokens.shape))
    Ns = tokens.shape[1]
    same = (tokens[:, :, None] == tokens[:, None, :]) & word_mask[:, None, :]  # [B, i, k]
    earlier = torch.ones(Ns, Ns, dtype=torch.bool, device=tokens.device).tril(diagonal=-1)  # k < i
    return word_mask & ~(same & earlier).any(dim=2)


def word_prototypes(
    video_means: Tensor, pair_word: Tensor, pair_video: Tensor, vocab_size: int, min_videos: int = 1
) -> tuple[Tensor, Tensor]:
    """Prototype of each word: mean of the videos whose sentences contain it, minus the mean of all.

    ``proto_w = mean_{v in V_w} m_v - mean_v m_v``, then scaled to unit norm (only its direction
    enters the cosine). A word in fewer than ``min_videos`` videos, or whose prototype is zero (a word
    in every video), has no prototype: its row is 0.

    Args:
        video_means: float [N, D] per-video mean feature (standardised clips).
        pair_word, pair_video: int64 [P] the (word id, video index) pairs "a sentence of video v
            contains word w"; repeated pairs count once.
        vocab_size: V. min_videos: fewest distinct videos a word needs.

    Returns:
        prototypes: [V, D] unit rows, 0 for words without a prototype.
        num_videos: int64 [V] distinct videos per word.
    """
    if video_means.dim() != 2 or video_means.shape[0] == 0:
        raise ValueError(f"word_prototypes: video_means must be [N > 0, D], got {tuple(video_means.shape)}")
    if pair_word.shape != pair_video.shape or pair_word.dim() != 1:
        raise ValueError("word_prototypes: pair_word and pair_video must be [P] of the same length")
    if min_videos < 1:
        raise ValueError(f"word_prototypes: min_videos must be >= 1, got {min_videos}")
    N, D = video_means.shape
    if pair_word.numel() and (int(pair_word.min()) < 0 or int(pair_word.max()) >= vocab_size):
        raise ValueError(f"word_prototypes: a word id lies outside [0, {vocab_size})")
    if pair_video.numel() and (int(pair_video.min()) < 0 or int(pair_video.max()) >= N):
        raise ValueError(f"word_prototypes: a video index lies outside [0, {N})")
    pairs = torch.unique(pair_word.long() * N + pair_video.long())
    words, videos = pairs // N, pairs % N
    num_videos = torch.bincount(words, minlength=vocab_size)
    sums = torch.zeros(vocab_size, D, dtype=video_means.dtype, device=video_means.device)
    sums.index_add_(0, words, video_means[videos])
    protos = sums / num_videos.clamp(min=1)[:, None].to(sums.dtype) - video_means.mean(dim=0)
    norm = protos.norm(dim=1, keepdim=True)
    keep = (num_videos[:, None] >= min_videos) & (norm > 1e-12)
    protos = torch.where(keep, protos / norm.clamp(min=1e-12), torch.zeros_like(protos))
    return protos, num_videos


def within_video_variance(video: Tensor, clip_mask: Tensor, directions: Tensor) -> Tensor:
    """Variance over each video's valid clips of the clips' projections on each direction.

    ``var[b, k] = mean_j (x_bj . u_k - mean_j' x_bj' . u_k)^2`` over the valid clips ``j`` (population
    variance). A word whose direction ``u_k`` varies inside the videos that mention it shows at moments; one
    that is constant over them (a scene, an actor) shows everywhere or nowhere.

    Args:
        video: float [B, Nv, D]. clip_mask: bool [B, Nv] valid prefix. directions: float [K, D].

    Returns:
        float [B, K].
    """
    if video.dim() != 3 or directions.dim() != 2 or directions.shape[1] != video.shape[2]:
        raise ValueError(f"within_video_variance: need video [B, Nv, D] and directions [K, D], got "
                         f"{tuple(video.shape)}, {tuple(directions.shape)}")
    B, Nv, _ = video.shape
    check_clip_mask("within_video_variance", clip_mask, (B, Nv))
    proj = torch.einsum("bnd,kd->bnk", video, directions.to(video.dtype))
    valid = clip_mask[:, :, None].to(proj.dtype)
    n = valid.sum(dim=1).clamp(min=1)  # [B, 1]
    mean = (proj * valid).sum(dim=1) / n
    return ((proj - mean[:, None, :]) ** 2 * valid).sum(dim=1) / n


def prototype_alignment(
    video: Tensor,
    clip_mask: Tensor,
    tokens: Tensor,
    word_mask: Tensor,
    mean: Tensor,
    std: Tensor,
    prototypes: Tensor,
    has_prototype: Tensor,
) -> tuple[Tensor, Tensor]:
    """Cosine between each standardised clip and each known query word's prototype.

    Args:
        video: float [B, Nv, D] clip features. clip_mask: bool [B, Nv] valid prefix.
        tokens: int64 [B, Ns]. word_mask: bool [B, Ns] tokens that may count as words.
        mean, std: float [D] the training clips' per-dimension statistics.
        prototypes: float [V, D] unit rows. has_prototype: bool [V].

    Returns:
        P: float [B, Ns, Nv] cosines, 0 on unknown/unselected/repeated tokens and padded clips.
        known: bool [B, Ns] the tokens that entered (selected, with a prototype, first occurrence).
    """
    if video.dim() != 3:
        raise ValueError(f"prototype_alignment: video must be [B, Nv, D], got {tuple(video.shape)}")
    B, Nv, D = video.shape
    check_clip_mask("prototype_alignment", clip_mask, (B, Nv))
    if prototypes.dim() != 2 or prototypes.shape[1] != D or mean.shape != (D,) or std.shape != (D,):
        raise ValueError(
            f"prototype_alignment: features are {D}-d but prototypes are {tuple(prototypes.shape)}, "
            f"mean {tuple(mean.shape)}, std {tuple(std.shape)}"
        )
    if tokens.dim() != 2 or tokens.shape[0] != B:
        raise ValueError(f"prototype_alignment: tokens must be [B={B}, Ns], got {tuple(tokens.shape)}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= prototypes.shape[0]):
        raise ValueError(f"prototype_alignment: a token id lies outside the vocabulary [0, {prototypes.shape[0]})")
    x = (video.to(prototypes.dtype) - mean) / std
    x = x / x.norm(dim=2, keepdim=True).clamp(min=1e-12)
    known = first_occurrences(tokens, word_mask & has_prototype[tokens])
    P = torch.einsum("bsd,bnd->bsn", prototypes[tokens], x)
    P = torch.where(known[:, :, None] & clip_mask[:, None, :], P, torch.zeros_like(P))
    return P, known


def centred_clip_scores(P: Tensor, known: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per clip, the mean over the known words of ``P``, minus its mean over the video's valid clips.

    Args:
        P: float [B, Ns, Nv]. known: bool [B, Ns]. clip_mask: bool [B, Nv] valid prefix.

    Returns:
        c: float [B, Nv], 0 on padded clips and for samples without a known word.
        has_word: bool [B] samples with at least one known word.
    """
    n = known.sum(dim=1)
    has_word = n > 0
    pbar = torch.where(known[:, :, None], P, torch.zeros_like(P)).sum(dim=1) / n.clamp(min=1)[:, None].to(P.dtype)
    c = centred(pbar, clip_mask)
    return torch.where(has_word[:, None], c, torch.zeros_like(c)), has_word


def prototype_segment_scores(c: Tensor, has_word: Tensor, clip_mask: Tensor) -> Tensor:
    """Segment scores whose arg-max is the maximum-sum run of ``c``.

    A sample without a known word carries no evidence: its scores are the segment lengths, so the
    whole video ranks first (the prediction without information).

    Args:
        c: float [B, Nv] centred clip scores. has_word: bool [B]. clip_mask: bool [B, Nv].

    Returns:
        float [B, Nv, Nv], ``-inf`` on invalid cells.
    """
    sums = window_sums(c, clip_mask)
    lengths = segment_lengths(c.shape[1], c.device, c.dtype)[None].expand_as(sums)
    uninformed = torch.where(torch.isfinite(sums), lengths, sums)  # keeps -inf on invalid cells
    return torch.where(has_word[:, None, None], sums, uninformed)
