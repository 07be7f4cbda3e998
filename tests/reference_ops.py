"""Literal loop implementations of DESIGN.md's equations (test oracle and benchmark baseline).

Loops over the sample b and the segment (s, e) and writes each formula as printed in DESIGN.md,
with small tensor reductions over the tokens and clips of one segment. Works on any device/dtype.
P: [B, Ns, Nv]; token_mask [B, Ns], clip_mask [B, Nv] bool (True = valid, clips a prefix).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _tokens(token_mask: Tensor, b: int) -> Tensor:
    return token_mask[b].nonzero().flatten()


def _min_tokens(token_mask: Tensor, min_token_mask: Tensor | None, b: int) -> Tensor:
    toks = _tokens(token_mask, b)
    if min_token_mask is None:
        return toks
    chosen = (token_mask[b] & min_token_mask[b]).nonzero().flatten()
    return chosen if chosen.numel() > 0 else toks


def ref_minmax(A: Tensor, token_mask: Tensor, clip_mask: Tensor, eps: float = 1e-12) -> Tensor:
    """P = (A - min_j A) / (max_j A - min_j A) over valid clips; 1 for a degenerate row; 0 padding."""
    B, _Ns, _Nv = A.shape
    P = torch.zeros_like(A)
    for b in range(B):
        L = int(clip_mask[b].sum())
        for i in _tokens(token_mask, b).tolist():
            row = A[b, i, :L]
            lo, hi = row.min(), row.max()
            P[b, i, :L] = (row - lo) / (hi - lo) if hi - lo > eps else torch.ones_like(row)
    return P


def ref_matching_score(A: Tensor, token_mask: Tensor, clip_mask: Tensor) -> Tensor:
    """S = (1/n) sum_i max_{j<L} A[i, j]."""
    out = torch.zeros(A.shape[0], dtype=A.dtype, device=A.device)
    for b in range(A.shape[0]):
        toks = _tokens(token_mask, b)
        L = int(clip_mask[b].sum())
        if toks.numel():
            out[b] = sum(A[b, i, :L].max() for i in toks.tolist()) / toks.numel()
    return out


def ref_joint_matching_score(A: Tensor, token_mask: Tensor, clip_mask: Tensor) -> Tensor:
    """S = max_{j<L} (1/n) sum_i A[i, j]; 0 for a sentence without a valid token."""
    out = torch.zeros(A.shape[0], dtype=A.dtype, device=A.device)
    for b in range(A.shape[0]):
        toks = _tokens(token_mask, b)
        L = int(clip_mask[b].sum())
        if toks.numel():
            out[b] = max(sum(A[b, i, j] for i in toks.tolist()) / toks.numel() for j in range(L))
    return out


def ref_segment_scores(
    P: Tensor, token_mask: Tensor, clip_mask: Tensor, min_token_mask: Tensor | None = None
) -> Tensor:
    """SC(s,e) = sum_i sum_{j in [s,e]} P / (n len) - sum_{j not in [s,e]} m_j / (L - len)."""
    B, _Ns, Nv = P.shape
    out = torch.full((B, Nv, Nv), -math.inf, dtype=P.dtype, device=P.device)
    for b in range(B):
        toks = _tokens(token_mask, b)
        n = toks.numel()
        L = int(clip_mask[b].sum())
        m = P[b, _min_tokens(token_mask, min_token_mask, b), :L].min(dim=0).values
        for s in range(L):
            for e in range(s, L):
                length = e - s + 1
                pos = P[b, toks, s : e + 1].sum() / (n * length)
                if length == L:
                    neg = 0.0
                else:
                    outside = [j for j in range(L) if not s <= j <= e]
                    neg = m[outside].sum() / (L - length)
                out[b, s, e] = pos - neg
    return out


def ref_inner_loss_map(P: Tensor, token_mask: Tensor, clip_mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Lin(s,e) = -(1/n) sum_i log(max(min_{j in [s,e]} P[i,j], eps))."""
    B, _Ns, Nv = P.shape
    out = torch.zeros((B, Nv, Nv), dtype=P.dtype, device=P.device)
    for b in range(B):
        toks = _tokens(token_mask, b)
        L = int(clip_mask[b].sum())
        for s in range(L):
            for e in range(s, L):
                total = 0.0
                for i in toks.tolist():
                    total = total + torch.log(torch.clamp(P[b, i, s : e + 1].min(), min=eps))
                out[b, s, e] = -total / toks.numel()
    return out


def ref_outer_loss_map(
    P: Tensor,
    token_mask: Tensor,
    clip_mask: Tensor,
    eps: float = 1e-6,
    form: str = "complement",
    min_token_mask: Tensor | None = None,
) -> Tensor:
    """Lout(s,e) = -(1/(L-len)) sum_{j not in [s,e]} log(max(1 - m_j, eps)); printed: log(max(m_j, eps))."""
    B, _Ns, Nv = P.shape
    out = torch.zeros((B, Nv, Nv), dtype=P.dtype, device=P.device)
    for b in range(B):
        L = int(clip_mask[b].sum())
        toks = _min_tokens(token_mask, min_token_mask, b)
        for s in range(L):
            for e in range(s, L):
                length = e - s + 1
                if length == L:
                    continue
                total = 0.0
                for j in range(L):
                    if s <= j <= e:
                        continue
                    m_j = P[b, toks, j].min()
                    arg = 1 - m_j if form == "complement" else m_j
                    total = total + torch.log(torch.clamp(arg, min=eps))
                out[b, s, e] = -total / (L - length)
    return out


def chosen_tokens(token_mask, subset, b):
    toks = token_mask[b].nonzero().flatten()
    if subset is None:
        return toks
    chosen = (token_mask[b] & subset[b]).nonzero().flatten()
    return chosen if chosen.numel() else toks


def ref_maxsum(P, token_mask, clip_mask, subset=None, alpha=0.0, weights=None):
    """MS(s,e) = sum_{j=s..e} (pbar_j - mean_{k<L} pbar_k - alpha * sd), pbar_j = mean over chosen tokens
    (weighted by ``weights[b, i]`` when given), sd the population standard deviation of pbar over the L
    valid clips."""
    B, _Ns, Nv = P.shape
    out = torch.full((B, Nv, Nv), -math.inf, dtype=P.dtype)
    for b in range(B):
        toks = chosen_tokens(token_mask, subset, b).tolist()
        L = int(clip_mask[b].sum())
        w = {i: (1.0 if weights is None else float(weights[b, i])) for i in toks}
        pbar = [sum(w[i] * P[b, i, j] for i in toks) / sum(w.values()) for j in range(L)]
        mean = sum(pbar) / L
        sd = math.sqrt(sum((x - mean) ** 2 for x in pbar) / L)
        for s in range(L):
            for e in range(s, L):
                out[b, s, e] = sum(pbar[j] - mean - alpha * sd for j in range(s, e + 1))
    return out


def ref_sentence_contrast_score(A: Tensor, token_mask: Tensor, other_A: Tensor, other_mask: Tensor,
                                clip_mask: Tensor, window: int = 1) -> Tensor:
    """max over runs [j, j + w) of w = min(window, L) valid clips of
    (1/w) sum_j ((1/n) sum_i A[i, j] - (1/n') sum_k other_A[k, j]); an empty side has mean 0."""
    out = torch.zeros(A.shape[0], dtype=A.dtype, device=A.device)
    for b in range(A.shape[0]):
        L = int(clip_mask[b].sum())
        toks, others = _tokens(token_mask, b).tolist(), _tokens(other_mask, b).tolist()

        def d(j, b=b, toks=toks, others=others):
            mine = sum(A[b, i, j] for i in toks) / len(toks) if toks else 0.0
            theirs = sum(other_A[b, k, j] for k in others) / len(others) if others else 0.0
            return mine - theirs

        w = min(window, L)
        out[b] = max(sum(d(j) for j in range(s, s + w)) / w for s in range(L - w + 1))
    return out


def ref_moment_cross_entropy(c: Tensor, target: Tensor, clip_mask: Tensor, temperature: float) -> Tensor:
    """-sum_j q_j log softmax_j(c_j / T) over the valid clips, q uniform over the valid target clips."""
    out = torch.zeros(c.shape[0], dtype=c.dtype)
    for b in range(c.shape[0]):
        valid = [j for j in range(c.shape[1]) if clip_mask[b, j]]
        inside = [j for j in valid if target[b, j]]
        if not inside:
            continue
        log_z = math.log(sum(math.exp(float(c[b, j]) / temperature) for j in valid))
        out[b] = -sum(float(c[b, j]) / temperature - log_z for j in inside) / len(inside)
    return out


def ref_within_video_variance(video: Tensor, clip_mask: Tensor, directions: Tensor) -> Tensor:
    """var[b, k]: population variance over the valid clips j of sum_d video[b, j, d] * directions[k, d]."""
    B, K = video.shape[0], directions.shape[0]
    out = torch.zeros(B, K, dtype=video.dtype)
    for b in range(B):
        L = int(clip_mask[b].sum())
        for k in range(K):
            proj = [float(sum(video[b, j, d] * directions[k, d] for d in range(video.shape[2]))) for j in range(L)]
            mean = sum(proj) / L
            out[b, k] = sum((x - mean) ** 2 for x in proj) / L
    return out
