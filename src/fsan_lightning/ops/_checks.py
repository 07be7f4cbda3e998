"""Input validation shared by the ops (shapes, dtypes, valid-prefix masks).

Every check raises ``ValueError`` naming the calling op and the offending sample, so bad batches
fail where they enter instead of as NaNs three functions later.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_map(name: str, P: Tensor, token_mask: Tensor, clip_mask: Tensor) -> None:
    """Check a token-by-clip map and its masks.

    Args:
        name: op name used in error messages.
        P: float [B, Ns, Nv].
        token_mask: bool [B, Ns], True = valid token; every sample needs one.
        clip_mask: bool [B, Nv], True = valid clip; valid clips form a non-empty prefix.
    """
    if P.dim() != 3:
        raise ValueError(f"{name}: map must be [B, Ns, Nv], got shape {tuple(P.shape)}")
    if not P.is_floating_point():
        raise ValueError(f"{name}: map must be floating point, got {P.dtype}")
    B, Ns, Nv = P.shape
    check_mask(name, "token_mask", token_mask, (B, Ns))
    check_clip_mask(name, clip_mask, (B, Nv))
    empty = ~token_mask.any(dim=1)
    if bool(empty.any()):
        raise ValueError(f"{name}: sample(s) {_first(empty)} have no valid token in token_mask")


def check_mask(name: str, label: str, mask: Tensor, shape: tuple[int, ...]) -> None:
    """Check that ``mask`` is a bool tensor of ``shape``."""
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}: {label} must be bool (True = valid), got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name}: {label} must have shape {tuple(shape)}, got {tuple(mask.shape)}")


def check_weights(name: str, weights: Tensor, token_mask: Tensor) -> None:
    """Check that token ``weights`` are floats of ``token_mask``'s shape, finite and > 0 on valid tokens."""
    if not weights.is_floating_point() or tuple(weights.shape) != tuple(token_mask.shape):
        raise ValueError(f"{name}: token_weights must be float of shape {tuple(token_mask.shape)}, "
                         f"got {weights.dtype} {tuple(weights.shape)}")
    bad = token_mask & ~(torch.isfinite(weights) & (weights > 0))
    if bool(bad.any()):
        raise ValueError(f"{name}: token_weights of sample(s) {_first(bad.any(dim=1))} are not finite and > 0 on valid tokens")


def check_clip_mask(name: str, clip_mask: Tensor, shape: tuple[int, int]) -> None:
    """Check that ``clip_mask`` [B, Nv] is bool, non-empty per sample and a prefix."""
    check_mask(name, "clip_mask", clip_mask, shape)
    lengths = clip_mask.sum(dim=1)
    prefix = torch.arange(shape[1], device=clip_mask.device)[None, :] < lengths[:, None]
    bad = (lengths == 0) | (prefix != clip_mask).any(dim=1)
    if bool(bad.any()):
        raise ValueError(
            f"{name}: clip_mask of sample(s) {_first(bad)} is empty or not a prefix "
            "(valid clips must be clips 0..L-1 with L >= 1)"
        )


def _first(flags: Tensor, limit: int = 5) -> list[int]:
    return flags.nonzero().flatten()[:limit].tolist()
