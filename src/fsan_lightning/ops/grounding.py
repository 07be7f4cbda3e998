"""Grounding maps on the semantic alignment map (docs/model.md, "The paper's FSAN in one screen"; docs/decisions.md).

Shapes: ``P`` and ``A`` are float [B, Ns, Nv] (token i, clip j); ``token_mask`` [B, Ns] and
``clip_mask`` [B, Nv] are bool with True = valid; valid clips are a prefix of length ``L``.
Segment maps are [B, Nv, Nv] indexed ``[b, s, e]``; a cell is valid when ``s <= e < L``.

No op loops over the batch, over ``s`` or over ``e``: window sums come from cumulative sums,
window minima from one pass over the segment length (``Nv`` steps of [B, Ns, Nv] work).
Values at padded tokens or clips are never read (they may be anything, NaN included).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_clip_mask, check_map, check_mask, check_weights
from ._segments import centred, masked_window_sums, outside_means, segment_lengths, segment_mask, window_sums

__all__ = [
    "assemble_by_length",
    "inner_loss_map",
    "matching_score",
    "maxsum_segment_scores",
    "minmax_normalize",
    "outer_loss_map",
    "segment_mask",
    "segment_scores",
    "sentence_contrast_score",
    "token_mean",
]


def minmax_normalize(A: Tensor, token_mask: Tensor, clip_mask: Tensor, eps: float = 1e-12) -> Tensor:
    """Eq. 5's ``Norm``: min-max of each token's row over the valid clips.

    ``P[b, i, j] = (A - min_j A) / (max_j A - min_j A)`` over valid clips ``j < L``. A row whose range
    is ``<= eps`` (e.g. ``L == 1``) is set to 1 on its valid clips: every clip is the row's maximum.
    Padded tokens and clips are 0.

    Args:
        A: float [B, Ns, Nv] raw alignment scores.
        token_mask: bool [B, Ns]. clip_mask: bool [B, Nv].
        eps: smallest range treated as non-degenerate.

    Returns:
        float [B, Ns, Nv] in [0, 1].
    """
    B, Ns, Nv = A.shape
    check_mask("minmax_normalize", "token_mask", token_mask, (B, Ns))
    check_mask("minmax_normalize", "clip_mask", clip_mask, (B, Nv))
    valid = token_mask[:, :, None] & clip_mask[:, None, :]
    clips = clip_mask[:, None, :].expand_as(A)
    lo = torch.where(clips, A, torch.inf).amin(dim=2, keepdim=True)
    hi = torch.where(clips, A, -torch.inf).amax(dim=2, keepdim=True)
    rng = hi - lo
    ok = rng > eps
    # Safe denominators keep NaN out of the gradient of the branch torch.where does not take.
    P = (A - torch.where(ok, lo, torch.zeros_like(lo))) / torch.where(ok, rng, torch.ones_like(rng))
    P = torch.where(ok, P, torch.ones_like(P))
    return torch.where(valid, P, torch.zeros_like(P))


def matching_score(A: Tensor, token_mask: Tensor, clip_mask: Tensor, *, temperature: float | None = None) -> Tensor:
    """Eq. 7: mean over valid tokens of the max over valid clips.

    The caller applies the bounded map ``g`` to the raw scores first (Decision 1).

    Args:
        A: float [B, Ns, Nv] (``g(A)``, or ``P`` for the printed form).
        token_mask: bool [B, Ns]; a sample with no valid token scores 0 (shared-word masking can
            empty a sentence; the criterion drops such samples).
        clip_mask: bool [B, Nv], non-empty valid prefix.
        temperature: None for Eq. 7's hard max; t > 0 for the smooth maximum
            ``t * log(mean_j exp(A_ij / t))`` over the L valid clips (a documented deviation). It lies
            between the mean (t -> inf) and the max (t -> 0) and spreads the gradient over the clips
            near the maximum instead of the single arg-max clip.

    Returns:
        float [B].
    """
    B, Ns, Nv = A.shape
    check_mask("matching_score", "token_mask", token_mask, (B, Ns))
    check_clip_mask("matching_score", clip_mask, (B, Nv))
    best = _clip_max("matching_score", A, clip_mask[:, None, :], temperature)
    return _token_mean(best[..., None], token_mask)[:, 0]


def joint_matching_score(A: Tensor, token_mask: Tensor, clip_mask: Tensor, *,
                         temperature: float | None = None) -> Tensor:
    """The max over valid clips of the mean over valid tokens: ``max_j mean_i A[i, j]``.

    Unlike Eq. 7 (:func:`matching_score`, each token's own max), the tokens must score high at the
    same clip: a sentence whose words all occur in the video, but at different moments, scores lower.

    Args:
        A: float [B, Ns, Nv] (``g(A)``). token_mask: bool [B, Ns]; a sample with no valid token scores
            0 at every clip. clip_mask: bool [B, Nv], non-empty valid prefix.
        temperature: None for the hard max; t > 0 for the smooth maximum ``t * log(mean_j exp(m_j / t))``.

    Returns:
        float [B].
    """
    B, Ns, Nv = A.shape
    check_mask("joint_matching_score", "token_mask", token_mask, (B, Ns))
    check_clip_mask("joint_matching_score", clip_mask, (B, Nv))
    return _clip_max("joint_matching_score", _token_mean(A, token_mask), clip_mask, temperature)


def sentence_contrast_score(A: Tensor, token_mask: Tensor, other_A: Tensor, other_mask: Tensor,
                            clip_mask: Tensor, *, temperature: float | None = None, window: int = 1) -> Tensor:
    """Where a sentence beats another on the same clips: ``max_j (mean_i A[i, j] - mean_k other_A[k, j])``,
    or, with ``window`` w > 1, the max over the runs of w consecutive valid clips of that difference's mean.

    Both maps are of one video (the same clips), so whatever every clip of it shares adds to both means
    alike and cancels; only words that score high at different clips make the difference.

    Args:
        A: float [B, Ns, Nv] (``g(A)`` of the sentence). token_mask: bool [B, Ns].
        other_A: float [B, Ns', Nv] (``g(A)`` of the other sentence on the same video). other_mask: bool [B, Ns'].
            A side without a valid token has mean 0 at every clip.
        clip_mask: bool [B, Nv], non-empty valid prefix.
        temperature: None for the hard max; t > 0 for the smooth maximum ``t * log(mean_j exp(d_j / t))``
            (over the windows).
        window: clips per window (>= 1). The maximum of a difference rewards two maps for being noisy
            (both ``max(d)`` and ``max(-d)`` grow with the variance of ``d``); a mean over w clips damps
            clip-to-clip noise and keeps a contrast that lasts. A video shorter than w is one window.

    Returns:
        float [B].
    """
    if window < 1:
        raise ValueError(f"sentence_contrast_score: window must be >= 1, got {window}")
    B, Ns, Nv = A.shape
    check_mask("sentence_contrast_score", "token_mask", token_mask, (B, Ns))
    check_mask("sentence_contrast_score", "other_mask", other_mask, (B, other_A.shape[1]))
    check_clip_mask("sentence_contrast_score", clip_mask, (B, Nv))
    if other_A.shape[0] != B or other_A.shape[2] != Nv:
        raise ValueError(f"sentence_contrast_score: other_A {tuple(other_A.shape)} must be [B={B}, Ns', Nv={Nv}]")
    diff = _token_mean(A, token_mask) - _token_mean(other_A, other_mask)
    if window > 1:
        diff, clip_mask = _window_means(diff, clip_mask, window)
    return _clip_max("sentence_contrast_score", diff, clip_mask, temperature)


def _window_means(x: Tensor, clip_mask: Tensor, w: int) -> tuple[Tensor, Tensor]:
    """Means of x [B, Nv] over runs of ``min(w, L)`` valid clips starting at each clip -> (means [B, Nv],
    valid starts bool [B, Nv]); a sample with ``L <= w`` has one window, its whole valid prefix."""
    L = clip_mask.sum(dim=1, keepdim=True)
    k = L.clamp(max=w)  # [B, 1]
    c = torch.nn.functional.pad(torch.where(clip_mask, x, torch.zeros_like(x)).cumsum(dim=1), (1, 0))
    start = torch.arange(x.shape[1], device=x.device)[None, :].expand_as(x)
    end = (start + k).clamp(max=x.shape[1])
    means = (c.gather(1, end) - c.gather(1, start)) / k.to(x.dtype)
    return means, start + k <= L


def _clip_max(name: str, x: Tensor, clip_mask: Tensor, temperature: float | None) -> Tensor:
    """(Smooth) max over the last dim of x [..., Nv] on the valid clips (clip_mask broadcastable)."""
    if temperature is None:
        return torch.where(clip_mask, x, -torch.inf).amax(dim=-1)
    if temperature <= 0:
        raise ValueError(f"{name}: temperature must be > 0 or None, got {temperature}")
    scaled = torch.where(clip_mask, x / temperature, -torch.inf)
    count = clip_mask.sum(dim=-1).to(x.dtype)
    return temperature * (torch.logsumexp(scaled, dim=-1) - torch.log(count))


def _clip_minima(P: Tensor, token_mask: Tensor, min_token_mask: Tensor | None) -> Tensor:
    """``m_j = min over the chosen valid tokens of P[i, j]`` -> float [B, Nv].

    Tokens are ``min_token_mask & token_mask``; a sample where that set is empty falls back to all
    valid tokens (e.g. a sentence made only of function words under the content-word option).
    """
    chosen = token_mask
    if min_token_mask is not None:
        check_mask("segment_scores", "min_token_mask", min_token_mask, tuple(token_mask.shape))
        narrowed = min_token_mask & token_mask
        chosen = torch.where(narrowed.any(dim=1, keepdim=True), narrowed, token_mask)
    return torch.where(chosen[:, :, None], P, torch.inf).amin(dim=1)


def _chosen_tokens(name: str, token_mask: Tensor, chosen_mask: Tensor | None) -> Tensor:
    """``chosen_mask & token_mask``, falling back to ``token_mask`` for a sample with none chosen."""
    if chosen_mask is None:
        return token_mask
    check_mask(name, "token subset mask", chosen_mask, tuple(token_mask.shape))
    narrowed = chosen_mask & token_mask
    return torch.where(narrowed.any(dim=1, keepdim=True), narrowed, token_mask)


def token_mean(M: Tensor, token_mask: Tensor, chosen_mask: Tensor | None = None, *,
               token_weights: Tensor | None = None) -> Tensor:
    """Per clip, the mean of a map over a sentence's chosen tokens (the grounders' sentence map).

    Args:
        M: float [B, Ns, Nv] (values on padded tokens are never read). token_mask: bool [B, Ns] valid tokens.
        chosen_mask: bool [B, Ns] or None: the tokens to average (e.g. content words); a sample with none of
            them uses all its valid tokens. None: all valid tokens.
        token_weights: float [B, Ns] (> 0 on valid tokens) or None: the weighted mean
            ``sum_i w_i M_i / sum_i w_i`` over the chosen tokens (word salience); None: equal weights.

    Returns:
        float [B, Nv].
    """
    check_mask("token_mean", "token_mask", token_mask, tuple(M.shape[:2]))
    if token_weights is not None:
        check_weights("token_mean", token_weights, token_mask)
    return _token_mean(M, _chosen_tokens("token_mean", token_mask, chosen_mask), token_weights)


def sibling_competition(maps: Tensor, groups: Tensor, clip_mask: Tensor, weight: float) -> Tensor:
    """Each sentence's clip map minus ``weight`` times the clip-wise maximum of its siblings' maps.

    ``out[n, j] = maps[n, j] - weight * max_{m != n, groups[m] = groups[n]} maps[m, j]`` (nothing is taken
    from a sentence that is alone in its group). With one row per training sentence and ``groups`` its video,
    a sentence competes with the other sentences of its video for the clips: where a sibling's evidence is as
    strong as its own, it is another event's moment (the self-training teacher of
    :class:`~fsan_lightning.models.criterion.SelfTrainingTerms`).

    Args:
        maps: float [N, Nv] (e.g. the content-word mean of each sentence's map on its video).
        groups: int64 [N] group id per row (rows of one group share a video, hence a clip grid).
        clip_mask: bool [N, Nv] valid clips (padded clips: 0 in the output).
        weight: >= 0 (0: ``maps`` unchanged).

    Returns:
        float [N, Nv].
    """
    check_mask("sibling_competition", "clip_mask", clip_mask, tuple(maps.shape))
    _check_groups("sibling_competition", groups, maps.shape[0])
    if weight < 0:
        raise ValueError(f"sibling_competition: weight must be >= 0, got {weight}")
    groups = groups.to(maps.device)  # the teacher builds them on the CPU; its maps may be on the GPU
    x = torch.where(clip_mask, maps, torch.full_like(maps, -torch.inf))
    ids, inverse = torch.unique(groups, return_inverse=True)
    shape = (len(ids), maps.shape[1])
    idx = inverse[:, None].expand_as(x)
    first = torch.full(shape, -torch.inf, dtype=x.dtype, device=x.device).scatter_reduce(0, idx, x, "amax")
    at_max = x == first[inverse]
    count = torch.zeros(shape, dtype=torch.int64, device=x.device).scatter_add(0, idx, at_max.long())
    second = torch.full(shape, -torch.inf, dtype=x.dtype, device=x.device).scatter_reduce(
        0, idx, torch.where(at_max, torch.full_like(x, -torch.inf), x), "amax")
    # the others' maximum: the group's maximum unless this row holds it alone, then the runner-up
    others = torch.where(at_max & (count[inverse] == 1), second[inverse], first[inverse])
    return _minus_rivals(maps, others, clip_mask, weight)


def _minus_rivals(own: Tensor, rivals: Tensor, clip_mask: Tensor, weight: float) -> Tensor:
    """``own - weight * rivals`` [N, Nv], a row without rivals (``-inf``) unchanged, padded clips 0."""
    out = own - weight * torch.where(torch.isfinite(rivals), rivals, torch.zeros_like(rivals))
    return torch.where(clip_mask, out, torch.zeros_like(out))


def _check_groups(name: str, groups: Tensor, rows: int) -> None:
    """Check that ``groups`` is int64 [rows] (one group id per row)."""
    if groups.shape != (rows,) or groups.dtype != torch.int64:
        raise ValueError(f"{name}: groups must be int64 [{rows}], got {groups.dtype} {tuple(groups.shape)}")


def _sibling_pairs(groups: Tensor) -> tuple[Tensor, Tensor]:
    """Every ordered pair ``(n, m)``, ``n != m``, of rows of one group: int64 [P] each, ``n`` ascending."""
    order = torch.argsort(groups, stable=True)
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    k = torch.arange(int(counts.max()) if len(counts) else 0, device=groups.device)
    member = starts[inverse][:, None] + k[None, :]                      # [N, K] positions in ``order``
    ok = k[None, :] < counts[inverse][:, None]
    m_all = order[member.clamp(max=max(len(order) - 1, 0))]
    ok &= m_all != torch.arange(len(groups), device=groups.device)[:, None]
    return ok.nonzero(as_tuple=True)[0], m_all[ok]


def gated_sibling_competition(maps: Tensor, groups: Tensor, clip_mask: Tensor, weight: float,
                              power: float = 4.0) -> Tensor:
    """:func:`sibling_competition` with each sibling weighed down by how much its map looks like the row's own.

    ``r(n, m) = max(0, cos(c_n, c_m)) ** power``, ``c`` a map minus its mean over the valid clips (a clip grid is
    shared within a group), and ``out[n, j] = maps[n, j] - weight * max_{m != n, groups[m] = groups[n]}
    (1 - r(n, m)) * maps[m, j]``. A sibling whose map has the row's own shape (the same event said twice:
    "... for the first time", "... once more") claims nothing; one with another shape competes in full.

    Args:
        maps: float [N, Nv] (>= 0 where valid, e.g. the content-word mean of a min-max map).
        groups: int64 [N]. clip_mask: bool [N, Nv] valid clips (padded clips: 0 in the output).
        weight: >= 0 (0: ``maps`` unchanged). power: > 0 (larger: only near-identical maps are spared).

    Returns:
        float [N, Nv].
    """
    check_mask("gated_sibling_competition", "clip_mask", clip_mask, tuple(maps.shape))
    _check_groups("gated_sibling_competition", groups, maps.shape[0])
    if weight < 0 or power <= 0:
        raise ValueError(f"gated_sibling_competition: need weight >= 0 and power > 0, got {weight}, {power}")
    groups = groups.to(maps.device)
    x = torch.where(clip_mask, maps, torch.zeros_like(maps))
    centred = torch.where(clip_mask, maps - x.sum(1, keepdim=True) / clip_mask.sum(1, keepdim=True).clamp(min=1), x)
    unit = centred / centred.norm(dim=1, keepdim=True).clamp(min=1e-12)
    n, m = _sibling_pairs(groups)
    spared = (unit[n] * unit[m]).sum(1).clamp(min=0) ** power
    rival = (1 - spared)[:, None] * x[m]
    rivals = torch.full_like(x, -torch.inf).scatter_reduce(0, n[:, None].expand_as(rival), rival, "amax")
    return _minus_rivals(maps, rivals, clip_mask, weight)


def masked_sibling_competition(word_maps: Tensor, tokens: Tensor, token_mask: Tensor, chosen_mask: Tensor | None,
                               groups: Tensor, clip_mask: Tensor, weight: float, *,
                               token_weights: Tensor | None = None, chunk: int = 4096) -> Tensor:
    """:func:`sibling_competition` with each sibling's map read over the words the sentence does not contain.

    ``own[n] = mean_{i in C(n)} word_maps[n, i]`` and ``rival(n, m) = mean_{i in C(m), tokens[m, i] not in
    tokens of n} word_maps[m, i]``, means weighted by ``token_weights`` when given, ``C`` the chosen tokens;
    ``out[n, j] = own[n, j] - weight * max_{m != n, groups[m] = groups[n]} rival(n, m)[j]``, where a sibling
    whose chosen words all occur in sentence n is no rival, and a sentence without rivals keeps ``own``.
    Two sentences of one event said twice ("... for the first time", "... once more") share their event
    words; the whole-sentence competition would cancel the event in both, this one leaves it to both and lets
    the words they do not share compete (the shared-word masking of the triplet, Decision 5).

    Args:
        word_maps: float [N, Ns, Nv] per-word clip maps (one row per sentence, on its video).
        tokens: int64 [N, Ns] word ids. token_mask: bool [N, Ns] valid tokens.
        chosen_mask: bool [N, Ns] or None: the words averaged (e.g. content words); a row with none of them
            uses all its valid tokens. None: all valid tokens.
        groups: int64 [N] group id per row (rows of one group share a video, hence a clip grid).
        clip_mask: bool [N, Nv] valid clips (padded clips: 0 in the output).
        weight: >= 0 (0: the own maps).
        token_weights: float [N, Ns] (> 0 on valid tokens) or None (equal weights).
        chunk: sentence pairs processed at once (memory: chunk x Ns x Nv).

    Returns:
        float [N, Nv].
    """
    check_mask("masked_sibling_competition", "token_mask", token_mask, tuple(word_maps.shape[:2]))
    check_mask("masked_sibling_competition", "clip_mask", clip_mask, (word_maps.shape[0], word_maps.shape[2]))
    if tokens.shape != token_mask.shape or tokens.dtype != torch.int64:
        raise ValueError(f"masked_sibling_competition: tokens must be int64 {tuple(token_mask.shape)}, got "
                         f"{tokens.dtype} {tuple(tokens.shape)}")
    _check_groups("masked_sibling_competition", groups, word_maps.shape[0])
    if weight < 0:
        raise ValueError(f"masked_sibling_competition: weight must be >= 0, got {weight}")
    if token_weights is not None:
        check_weights("masked_sibling_competition", token_weights, token_mask)
    chosen = _chosen_tokens("masked_sibling_competition", token_mask, chosen_mask)
    own = _token_mean(word_maps, chosen, token_weights)
    n_idx, m_idx = _sibling_pairs(groups.to(word_maps.device))
    rivals = torch.full_like(own, -torch.inf)
    for s in range(0, len(n_idx), chunk):
        n, m = n_idx[s:s + chunk], m_idx[s:s + chunk]
        in_n = ((tokens[m][:, :, None] == tokens[n][:, None, :]) & token_mask[n][:, None, :]).any(2)
        keep = chosen[m] & ~in_n                                        # [pairs, Ns]
        rival = _token_mean(word_maps[m], keep, None if token_weights is None else token_weights[m])
        rival = torch.where(keep.any(1, keepdim=True), rival, torch.full_like(rival, -torch.inf))
        rivals = rivals.scatter_reduce(0, n[:, None].expand_as(rival), rival, "amax")
    return _minus_rivals(own, rivals, clip_mask, weight)


def _token_mean(P: Tensor, chosen: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean over the ``chosen`` tokens [B, Ns] of P [B, Ns, Nv] -> [B, Nv] (P already sanitized); with
    ``weights`` float [B, Ns] (> 0) the weighted mean ``sum_i w_i P_i / sum_i w_i`` over the chosen tokens."""
    w = chosen.to(P.dtype) if weights is None else torch.where(chosen, weights.to(P.dtype), torch.zeros_like(P[..., 0]))
    Pc = torch.where(chosen[:, :, None], P, torch.zeros_like(P)) * w[:, :, None]
    return Pc.sum(dim=1) / w.sum(dim=1, keepdim=True).clamp(min=1e-12)


def _sanitize(P: Tensor, token_mask: Tensor, clip_mask: Tensor, fill: float) -> Tensor:
    valid = token_mask[:, :, None] & clip_mask[:, None, :]
    return torch.where(valid, P, torch.full_like(P, fill))


def segment_scores(
    P: Tensor,
    token_mask: Tensor,
    clip_mask: Tensor,
    *,
    min_token_mask: Tensor | None = None,
    pos_token_mask: Tensor | None = None,
) -> Tensor:
    """Eq. 8: ``SC(s, e) = pos(s, e) - neg(s, e)``.

    ``pos = sum_{valid i} sum_{j in [s,e]} P[i,j] / (n * len)``; ``m_j = min_i P[i, j]``;
    ``neg = sum_{j < L, j not in [s,e]} m_j / (L - len)``, 0 when ``len == L``.

    Args:
        P: float [B, Ns, Nv] alignment map.
        token_mask: bool [B, Ns]. clip_mask: bool [B, Nv] (valid prefix).
        min_token_mask: bool [B, Ns] or None: tokens entering the minimum ``m_j`` (intersected with
            ``token_mask``; default all valid tokens; experiments/localization/README.md suggests content words).
            A sample with none of them uses all its valid tokens.
        pos_token_mask: bool [B, Ns] or None: tokens averaged into ``pos`` (default all valid
            tokens, the binding definition; content words are an option). Same fallback.

    Returns:
        float [B, Nv, Nv], ``-inf`` on invalid cells (``s > e`` or ``e >= L``).
    """
    check_map("segment_scores", P, token_mask, clip_mask)
    P = _sanitize(P, token_mask, clip_mask, 0.0)
    n = token_mask.sum(dim=1).to(P.dtype)
    length = segment_lengths(P.shape[2], P.device, P.dtype)
    if pos_token_mask is None:
        pos = window_sums(P.sum(dim=1)) / (n[:, None, None] * length)
    else:
        pbar = _token_mean(P, _chosen_tokens("segment_scores", token_mask, pos_token_mask))
        pos = window_sums(pbar) / length
    m = _clip_minima(P, token_mask, min_token_mask)
    sc = pos - outside_means(torch.where(clip_mask, m, torch.zeros_like(m)), clip_mask)
    return torch.where(segment_mask(clip_mask), sc, torch.full_like(sc, -torch.inf))


def maxsum_segment_scores(
    P: Tensor,
    token_mask: Tensor,
    clip_mask: Tensor,
    *,
    score_token_mask: Tensor | None = None,
    threshold: float = 0.0,
    token_weights: Tensor | None = None,
) -> Tensor:
    """Centred window sums of the token-mean map (an alternative to Eq. 8, not the paper's rule).

    ``pbar_j = mean_{chosen i} P[i, j]``, ``c_j = pbar_j - (1/L) sum_{k<L} pbar_k - alpha * sd`` and
    ``MS(s, e) = sum_{j in [s, e]} c_j``. Its arg-max is the maximum-sum contiguous run of ``c``:
    it extends a segment while the clips it adds lie above the video's mean, so its length follows
    the map instead of favouring short peaks as SC's length-normalised mean does.

    Args:
        P: float [B, Ns, Nv]. token_mask: bool [B, Ns]. clip_mask: bool [B, Nv] (valid prefix).
        score_token_mask: bool [B, Ns] or None: tokens averaged into ``pbar`` (default all valid
            tokens); a sample with none of them uses all its valid tokens.
        threshold: alpha >= 0: ``c_j = pbar_j - mean(pbar) - alpha * std(pbar)`` (population std over
            the video's valid clips): a clip joins the segment only when it lies alpha standard
            deviations above the video's mean. 0 is the plain rule; larger values give shorter runs.
        token_weights: float [B, Ns] (> 0) or None: ``pbar`` is then the weighted mean over the chosen tokens
            (word salience, docs/model.md); None weights them equally.

    Returns:
        float [B, Nv, Nv], ``-inf`` on invalid cells.
    """
    check_map("maxsum_segment_scores", P, token_mask, clip_mask)
    P = _sanitize(P, token_mask, clip_mask, 0.0)
    if threshold < 0:
        raise ValueError(f"maxsum_segment_scores: threshold must be >= 0, got {threshold}")
    if token_weights is not None:
        check_weights("maxsum_segment_scores", token_weights, token_mask)
    pbar = _token_mean(P, _chosen_tokens("maxsum_segment_scores", token_mask, score_token_mask), token_weights)
    c = centred(pbar, clip_mask)
    if threshold:
        L = clip_mask.sum(dim=1, keepdim=True).to(P.dtype)
        c = torch.where(clip_mask, c - threshold * (c**2).sum(dim=1, keepdim=True).div(L).sqrt(), c)
    return masked_window_sums(c, clip_mask)


def assemble_by_length(per_length: list[Tensor]) -> Tensor:
    """Place per-length values into a segment map.

    Args:
        per_length: ``Nv`` tensors; entry ``l - 1`` is [B, Nv - l + 1, *rest] holding the value of
            the segment of length ``l`` starting at ``s`` (ending at ``e = s + l - 1``).

    Returns:
        [B, Nv, Nv, *rest] with ``out[b, s, e] = per_length[e - s][b, s]`` and 0 where ``s > e``.
    """
    Nv = len(per_length)
    first = per_length[0]
    B, rest = first.shape[0], first.shape[2:]
    padded = [
        torch.cat([t, t.new_zeros((B, Nv - t.shape[1], *rest))], dim=1) if t.shape[1] < Nv else t
        for t in per_length
    ]
    stacked = torch.stack(padded, dim=1)  # [B, Nv(len), Nv(s), *rest]
    idx = torch.arange(Nv, device=first.device)
    l_idx = (idx[None, :] - idx[:, None]).clamp(min=0)
    s_idx = idx[:, None].expand(Nv, Nv)
    out = stacked[:, l_idx, s_idx]
    upper = (idx[:, None] <= idx[None, :]).view(1, Nv, Nv, *([1] * len(rest)))
    return torch.where(upper, out, torch.zeros_like(out))


def inner_loss_map(P: Tensor, token_mask: Tensor, clip_mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Eq. 9: ``Lin(s, e) = -(1/n) sum_{valid i} log(max(min_{j in [s,e]} P[i, j], eps))``.

    Since log is monotone, the window minimum is taken over ``log(max(P, eps))``.

    Args:
        P: float [B, Ns, Nv]. token_mask: bool [B, Ns]. clip_mask: bool [B, Nv] (valid prefix).
        eps: floor inside the log.

    Returns:
        float [B, Nv, Nv], 0 on invalid cells.
    """
    check_map("inner_loss_map", P, token_mask, clip_mask)
    # Padding becomes log(1) = 0: padded tokens add nothing; windows over padded clips are invalid.
    Q = torch.log(_sanitize(P, token_mask, clip_mask, 1.0).clamp(min=eps))
    n = token_mask.sum(dim=1).to(P.dtype)
    Nv = P.shape[2]
    run = Q
    per_length = [run.sum(dim=1)]
    for length in range(2, Nv + 1):
        run = torch.minimum(run[:, :, :-1], Q[:, :, length - 1 :])
        per_length.append(run.sum(dim=1))
    lin = -assemble_by_length(per_length) / n[:, None, None]
    return torch.where(segment_mask(clip_mask), lin, torch.zeros_like(lin))


def outer_loss_map(
    P: Tensor,
    token_mask: Tensor,
    clip_mask: Tensor,
    eps: float = 1e-6,
    *,
    form: str = "complement",
    min_token_mask: Tensor | None = None,
) -> Tensor:
    """Eq. 11 (Decision 2): mean over the complement clips of ``-log(max(1 - m_j, eps))``.

    ``Lout(s, e) = -(1/(L - len)) sum_{j < L, j not in [s,e]} log(max(1 - m_j, eps))``, 0 when
    ``len == L``, with ``m_j = min_{valid i} P[i, j]``.

    Args:
        P: float [B, Ns, Nv]. token_mask: bool [B, Ns]. clip_mask: bool [B, Nv] (valid prefix).
        eps: floor inside the log.
        form: ``"complement"`` (binding definition, pushes the complement's ``m_j`` down) or
            ``"printed"`` (Eq. 11 as printed: ``-log(max(m_j, eps))``, pushes it up).
        min_token_mask: as in :func:`segment_scores`, tokens entering ``m_j``.

    Returns:
        float [B, Nv, Nv], 0 on invalid cells.
    """
    if form not in ("complement", "printed"):
        raise ValueError(f"outer_loss_map: form must be 'complement' or 'printed', got {form!r}")
    check_map("outer_loss_map", P, token_mask, clip_mask)
    P = _sanitize(P, token_mask, clip_mask, 0.0)
    m = _clip_minima(P, token_mask, min_token_mask)
    r = -torch.log((1.0 - m if form == "complement" else m).clamp(min=eps))
    lout = outside_means(torch.where(clip_mask, r, torch.zeros_like(r)), clip_mask)
    return torch.where(segment_mask(clip_mask), lout, torch.zeros_like(lout))
