"""Shared test helpers (the one module tests import besides conftest): small networks and batches."""
from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fsan_lightning.models import FSAN, build_fsan

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # annotation corpora, legacy checkpoints
FEATURES = "sub_activitynet_v1-3.c3d.hdf5"  # the synthetic world's feature file

VOCAB, WORD, VDIM = 40, 12, 20
SMALL_NET = {
    "d_model": 32, "num_heads": 4, "ffn_dim": 48, "dropout": 0.1,
    "text_encoder": {"kind": "transformer", "layers": 1},
    "video_encoder": {"kind": "linear"},
    "interaction": {"kind": "icim", "layers": 2, "max_tokens": 16, "max_clips": 16},
    "alignment": {"kind": "cosine"},
    "grounder": {"kind": "sc"},
    "head": {"kind": "segment", "hidden": 24},
}
FEATURE_SPACE_NET = {
    **SMALL_NET, "d_model": None, "dropout": 0.0,
    "text_encoder": {"kind": "word_residual", "layers": 0},
    "video_encoder": {"kind": "feature_space"},
    "interaction": {"kind": "icim", "layers": 0, "max_tokens": 16, "max_clips": 16},
    "alignment": {"kind": "feature_space"},
}


def net_config(base: dict | None = None, **kw) -> dict:
    """``base`` (default SMALL_NET) with ``kw``; dict values are merged into the part's dict."""
    cfg = copy.deepcopy(base or SMALL_NET)
    for key, value in kw.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            if "kind" in value and value["kind"] != cfg[key].get("kind"):
                cfg[key] = dict(value)  # another kind: its own arguments only
            else:
                cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def make_net(seed: int = 0, base: dict | None = None, **kw) -> FSAN:
    """A small FSAN (vocabulary 40, 12-d words, 20-d clips); ``kw`` as in :func:`net_config`."""
    cfg = net_config(base, **kw)
    switches = {k: cfg.pop(k) for k in ("cross_attn", "inner_attn", "grounding_head") if k in cfg}
    torch.manual_seed(seed)
    return build_fsan(VOCAB, WORD, VDIM, **cfg, **switches)


def n_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def padded_pair(seed: int = 0):
    """The same sample (5 tokens, 6 clips) padded two ways inside batches with other samples."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(6, VDIM, generator=g)
    tokens = torch.randint(2, VOCAB, (5,), generator=g)

    def batch(Ns: int, Nv: int, other_tokens: int, other_clips: int, junk: float):
        vid = torch.full((2, Nv, VDIM), junk)
        vid[0, :6] = video
        vid[1, :other_clips] = torch.randn(other_clips, VDIM, generator=g)
        tok = torch.zeros(2, Ns, dtype=torch.long)
        tok[0, :5] = tokens
        tok[1, :other_tokens] = torch.randint(2, VOCAB, (other_tokens,), generator=g)
        tm = torch.arange(Ns)[None] < torch.tensor([[5], [other_tokens]])
        vm = torch.arange(Nv)[None] < torch.tensor([[6], [other_clips]])
        tok[~tm] = 0
        return vid, vm, tok, tm

    return batch(5, 6, 3, 4, 0.0), batch(9, 11, 9, 11, 3.0)


# ----------------------------------------------------------------------------- ops cases
TOL = {"rtol": 0, "atol": 1e-9}


def random_case(seed: int, B: int = 5, Ns: int = 6, Nv: int = 7, nan_padding: bool = True):
    """float64 P with exact 0s and 1s, random token masks (not only prefixes), prefix clip masks."""
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(B, Ns, Nv, generator=g, dtype=torch.float64)
    P[torch.rand(B, Ns, Nv, generator=g) < 0.15] = 0.0
    P[torch.rand(B, Ns, Nv, generator=g) < 0.15] = 1.0
    P[0, :, 0] = 0.0  # a clip that every token rejects
    token_mask = torch.rand(B, Ns, generator=g) < 0.7
    token_mask[:, 0] = True
    token_mask[0] = True  # a full sentence
    L = torch.randint(1, Nv + 1, (B,), generator=g)
    L[0], L[1] = Nv, 1  # full video and a single clip
    clip_mask = torch.arange(Nv)[None, :] < L[:, None]
    content = (torch.rand(B, Ns, generator=g) < 0.5) & token_mask
    content[2] = False  # no content word: falls back to all tokens
    if nan_padding:
        P = torch.where(token_mask[:, :, None] & clip_mask[:, None, :], P, torch.nan)
    return P, token_mask, clip_mask, content


# ----------------------------------------------------------------------------- predictions
def read_features(world: Path, vid: str) -> np.ndarray:
    """The raw feature rows [T, D] of ``vid`` in a synthetic world."""
    with h5py.File(world / FEATURES, "r") as f:
        return f[f"{vid}/c3d_features"][()]


def assert_same_windows(got: list, expected: list) -> None:
    """Seconds exactly as rounded in the file (1e-4); scores to the file's 1e-6 rounding plus padding noise."""
    assert len(got) == len(expected)
    for (s, e, sc), (s0, e0, sc0) in zip(got, expected):
        assert (s, e) == (s0, e0)
        assert (sc is None) == (sc0 is None)
        if sc is not None:
            assert sc == pytest.approx(sc0, abs=3e-6)
