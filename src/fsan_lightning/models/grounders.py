"""Grounders: rank the segments of a video from the alignment map P (paper Sec. 3.4, Eq. 8).

A grounder is a small parameter-free object: ``grounder(P, token_mask, clip_mask, content_mask,
token_weights=None)`` -> segment scores float [B, Nv, Nv], ``-inf`` on invalid cells; ``token_weights``
float [B, Ns] (a network's :class:`~.salience.WordSalience`) weight the token mean of the max-sum rules.
The paper's is :class:`SCGrounder`; :class:`MaxSumGrounder` is a variant; :class:`FeedbackGrounder` also reads the features (``reads_features``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .. import ops

TOKEN_SETS = ("all", "content")


def _tokens(name: str, which: str, token_mask: Tensor, content_mask: Tensor | None) -> Tensor | None:
    """None for all valid tokens, else the content words (``content_mask & token_mask``)."""
    if which == "all":
        return None
    if content_mask is None:
        raise ValueError(f"{name}: tokens='content' needs the batch's content_mask")
    return content_mask & token_mask


def _check_choice(name: str, key: str, value: str) -> None:
    if value not in TOKEN_SETS:
        raise ValueError(f"{name}: {key} must be one of {TOKEN_SETS}, got {value!r}")


class SCGrounder:
    """Eq. 8: ``SC(s, e) = pos(s, e) - neg(s, e)`` (:func:`ops.segment_scores`).

    Args:
        pos_tokens: tokens averaged into ``pos``: ``"all"`` (the binding definition) or ``"content"``.
        min_tokens: tokens entering the minimum ``m_j`` of ``neg``: ``"all"`` or ``"content"``
            (experiments/localization/README.md: function words pull the minimum to noise).
    """

    def __init__(self, pos_tokens: str = "all", min_tokens: str = "all") -> None:
        _check_choice("SCGrounder", "pos_tokens", pos_tokens)
        _check_choice("SCGrounder", "min_tokens", min_tokens)
        self.pos_tokens, self.min_tokens = pos_tokens, min_tokens

    def __call__(self, P: Tensor, token_mask: Tensor, clip_mask: Tensor, content_mask: Tensor | None = None,
                 token_weights: Tensor | None = None) -> Tensor:
        """P float [B, Ns, Nv], masks bool -> SC float [B, Nv, Nv], -inf invalid."""
        if token_weights is not None:
            raise ValueError("SCGrounder does not take token weights (word salience); use the maxsum or feedback grounder")
        return ops.segment_scores(
            P, token_mask, clip_mask,
            min_token_mask=_tokens("SCGrounder", self.min_tokens, token_mask, content_mask),
            pos_token_mask=_tokens("SCGrounder", self.pos_tokens, token_mask, content_mask),
        )

    def __repr__(self) -> str:
        return f"SCGrounder(pos_tokens={self.pos_tokens!r}, min_tokens={self.min_tokens!r})"


class MaxSumGrounder:
    """Variant: centred window sums of the token-mean map (:func:`ops.maxsum_segment_scores`).

    SC's length-normalised mean favours short peaks (experiments/localization/README.md); the maximum-sum run follows
    the map's length instead. ``threshold`` alpha admits a clip only alpha standard deviations above
    the video's mean: 0.25 moved val R1@0.5 from 34.9 to 39.0 on the same forward passes (plateau
    0.2-0.35; the plain rule predicted 43% of the video, the ground truth covers 24%).

    Args:
        tokens: tokens averaged into the map: ``"all"`` or ``"content"``. threshold: alpha >= 0.
    """

    def __init__(self, tokens: str = "all", threshold: float = 0.0) -> None:
        _check_choice("MaxSumGrounder", "tokens", tokens)
        if threshold < 0:
            raise ValueError(f"MaxSumGrounder: threshold must be >= 0, got {threshold}")
        self.tokens, self.threshold = tokens, float(threshold)

    def __call__(self, P: Tensor, token_mask: Tensor, clip_mask: Tensor, content_mask: Tensor | None = None,
                 token_weights: Tensor | None = None) -> Tensor:
        """P float [B, Ns, Nv], masks bool, token_weights float [B, Ns] or None -> float [B, Nv, Nv], -inf invalid."""
        return ops.maxsum_segment_scores(
            P, token_mask, clip_mask,
            score_token_mask=_tokens("MaxSumGrounder", self.tokens, token_mask, content_mask),
            threshold=self.threshold, token_weights=token_weights,
        )

    def __repr__(self) -> str:
        return f"MaxSumGrounder(tokens={self.tokens!r}, threshold={self.threshold})"


class FeedbackGrounder:
    """Variant: ground once, move every word toward the video's clips at the sentence's moment, ground again
    (a parameter-free text <- video attention, read at grounding time only; docs/model.md, "Feedback grounding").

    The sentence's moment is ``a = softmax_j(m_j / temperature)`` over the valid clips, ``m`` the mean over
    its content words of the cosine map (all tokens when it has none; weighted by the output's
    ``token_weights`` when it has them); each word ``s_i`` becomes
    ``s_i + beta * |s_i| * unit(sum_j a_j (v_j - mean v))``, the map is recomputed by the network's
    alignment, and ``inner`` ranks the segments of the new map. The centred clips carry what the moment has that the
    rest of the video lacks, in this video's appearance (a factor's look varies from video to video), so the
    words' maps sharpen where the first reading was right. The training losses never see it.

    Args:
        inner: the grounder of the re-read map (default :class:`MaxSumGrounder` over all tokens; `make
            train`'s: content words, threshold 0.25). beta: step (0 = ``inner`` on P).
        temperature: of the softmax over clips.
    """

    reads_features = True  # FSAN.segment_scores calls ground_output with the network's alignment

    def __init__(self, inner=None, beta: float = 1.0, temperature: float = 0.1) -> None:
        if beta < 0 or temperature <= 0:
            raise ValueError(f"FeedbackGrounder: need beta >= 0 and temperature > 0, got {beta}, {temperature}")
        inner = MaxSumGrounder() if inner is None else inner
        self.inner, self.beta, self.temperature = inner, float(beta), float(temperature)

    def __call__(self, P: Tensor, token_mask: Tensor, clip_mask: Tensor, content_mask: Tensor | None = None,
                 token_weights: Tensor | None = None) -> Tensor:
        """On a map alone (no features): the inner grounder."""
        return self.inner(P, token_mask, clip_mask, content_mask, token_weights)

    def moment_weights(self, score_map: Tensor, token_mask: Tensor, clip_mask: Tensor,
                       content_mask: Tensor | None, token_weights: Tensor | None = None) -> Tensor:
        """score_map float [B, Ns, Nv], token_weights float [B, Ns] or None -> the sentence's moment ``a``
        float [B, Nv] (0 on padded clips)."""
        m = ops.token_mean(score_map, token_mask, content_mask, token_weights=token_weights)
        return torch.softmax(torch.where(clip_mask, m / self.temperature, -torch.inf), dim=1)

    def refined_map(self, alignment, out, token_mask: Tensor, content_mask: Tensor | None = None) -> Tensor:
        """``out``: an FSANOutput (text_features [B, Ns, d], video_features [B, Nv, d], cosine or A
        [B, Ns, Nv], token_weights [B, Ns] or None); alignment: the network's. -> the re-read map P2 float
        [B, Ns, Nv]."""
        S, V, vm = out.text_features, out.video_features, out.video_mask
        a = self.moment_weights(out.cosine if out.cosine is not None else out.A, token_mask, vm, content_mask,
                                out.token_weights)
        r = torch.einsum("bj,bjd->bd", a, ops.centred(V, vm))
        S2 = S + self.beta * S.norm(dim=-1, keepdim=True) * F.normalize(r, dim=-1)[:, None, :]
        return alignment(S2, V, token_mask, vm)[1]

    def ground_output(self, alignment, out, token_mask: Tensor, content_mask: Tensor | None = None) -> Tensor:
        """As :meth:`refined_map`, then ``inner`` -> segment scores float [B, Nv, Nv], -inf invalid."""
        if self.beta == 0:
            return self.inner(out.P, token_mask, out.video_mask, content_mask, out.token_weights)
        P2 = self.refined_map(alignment, out, token_mask, content_mask)
        return self.inner(P2, token_mask, out.video_mask, content_mask, out.token_weights)

    def __repr__(self) -> str:
        return f"FeedbackGrounder(inner={self.inner!r}, beta={self.beta}, temperature={self.temperature})"
