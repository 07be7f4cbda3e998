"""Alignment in the clip feature space: identity projections, per-word residual vectors, d_model=None."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsan_lightning.models import FSAN
from fsan_lightning.models.alignment import AlignmentMap
from fsan_lightning.models.encoders import TextEncoder, VideoEncoder
from test_models import VDIM, VOCAB, WORD, n_params, padded_pair

torch.set_num_threads(1)

FEATURE_SPACE = {
    "d_model": None,
    "text_layers": 0,
    "icim_layers": 0,
    "num_heads": 4,
    "video_projection": "identity",
    "align_projection": "identity",
    "word_residual": True,
    "dropout": 0.0,
}


def make_feature_space_net(seed: int = 0, **kw) -> FSAN:
    torch.manual_seed(seed)
    return FSAN(VOCAB, WORD, VDIM, **{**FEATURE_SPACE, **kw})


def test_identity_video_encoder_returns_the_clips_and_checks_the_width():
    enc = VideoEncoder(VDIM, VDIM, dropout=0.0, projection="identity").eval()
    x = torch.randn(2, 5, VDIM)
    torch.testing.assert_close(enc(x), x)
    assert n_params(enc) == 0
    with pytest.raises(ValueError, match="d_model == video_dim"):
        VideoEncoder(VDIM, VDIM + 1, projection="identity")
    with pytest.raises(ValueError, match="projection"):
        VideoEncoder(VDIM, VDIM, projection="pca")


def test_identity_alignment_is_the_plain_cosine():
    align = AlignmentMap(VDIM, VDIM, "cosine", score_scale=10.0, projection="identity")
    S, V = torch.randn(2, 3, VDIM), torch.randn(2, 4, VDIM)
    tm, vm = torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)
    A, P, cos = align(S, V, tm, vm)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                ref = float(F.cosine_similarity(S[b, i], V[b, j], dim=0))
                assert abs(float(cos[b, i, j]) - ref) < 1e-5
    torch.testing.assert_close(A, 10.0 * cos)
    assert n_params(align) == 0
    with pytest.raises(ValueError, match="align_dim == d_model"):
        AlignmentMap(VDIM, 8, projection="identity")


def test_word_residual_starts_at_zero_and_learns_per_word():
    torch.manual_seed(0)
    plain = TextEncoder(VOCAB, WORD, 16, num_layers=0, dropout=0.0)
    torch.manual_seed(0)
    resid = TextEncoder(VOCAB, WORD, 16, num_layers=0, dropout=0.0, word_residual=True)
    tokens = torch.tensor([[3, 4, 3, 0]])
    mask = tokens > 0
    torch.testing.assert_close(resid(tokens, mask), plain(tokens, mask))  # zero at init
    assert n_params(resid) - n_params(plain) == VOCAB * 16
    resid(tokens, mask).sum().backward()
    g = resid.residual.weight.grad
    assert torch.all(g[3] == 2) and torch.all(g[4] == 1)  # word 3 appears twice
    assert torch.all(g[0] == 0) and torch.all(g[5:] == 0)  # padding and absent words untouched


def test_feature_space_net_compares_words_with_raw_clips():
    net = make_feature_space_net().eval()
    assert net.video_encoder.proj.__class__.__name__ == "Identity"
    (v, vm, t, tm), _ = padded_pair()
    with torch.no_grad():
        out = net(v, vm, t, tm)
        # ICIM with 0 layers still adds its learnable positions to both sides
        words = net.text_encoder(t, tm) + net.icim.text_pos[: t.shape[1]]
        clips = v + net.icim.video_pos[: v.shape[1]]
    assert out.video_features.shape[-1] == VDIM  # d_model=None -> the feature width
    ref = F.normalize(words, dim=-1) @ F.normalize(clips, dim=-1).transpose(1, 2)
    valid = tm[:, :, None] & vm[:, None, :]
    torch.testing.assert_close(out.cosine, torch.where(valid, ref, torch.zeros_like(ref)))
    # the only trainable parameters: the word projection, the per-word residuals and the positions
    positions = net.icim.text_pos.numel() + net.icim.video_pos.numel()
    assert n_params(net, trainable_only=True) == (WORD * VDIM + VDIM) + VOCAB * VDIM + positions


def test_identity_projection_with_a_different_width_fails_early():
    with pytest.raises(ValueError, match="d_model == video_dim"):
        make_feature_space_net(d_model=16)


def test_gated_icim_starts_as_the_identity_and_learns_its_gates():
    from fsan_lightning.models.icim import ICIM, AttentionBlock

    torch.manual_seed(0)
    icim = ICIM(16, num_layers=2, num_heads=2, ffn_dim=24, dropout=0.0, max_tokens=8, max_clips=8, residual="gated")
    S, V = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    tm = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    vm = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    S2, V2 = icim(S, V, tm, vm)
    # gates at 0: only the positions are added (padding zeroed)
    torch.testing.assert_close(S2, torch.where(tm[..., None], S + icim.text_pos[:5], torch.zeros_like(S)))
    torch.testing.assert_close(V2, torch.where(vm[..., None], V + icim.video_pos[:6], torch.zeros_like(V)))
    assert not any("norm" in name for name, _ in icim.named_parameters())
    (S2.sum() + V2.pow(2).sum()).backward()
    gates = [p for name, p in icim.named_parameters() if "gate" in name]
    assert len(gates) == 2 * 4 * 2  # layers x blocks x (attention, ffn)
    assert any(float(g.grad.abs()) > 0 for g in gates)
    with pytest.raises(ValueError, match="residual"):
        AttentionBlock(16, 2, 24, 0.0, residual="prenorm")


def test_postnorm_icim_is_unchanged_by_the_option():
    from fsan_lightning.models.icim import ICIM

    torch.manual_seed(1)
    default = ICIM(16, num_layers=1, num_heads=2, ffn_dim=24, dropout=0.0)
    torch.manual_seed(1)
    explicit = ICIM(16, num_layers=1, num_heads=2, ffn_dim=24, dropout=0.0, residual="postnorm")
    S, V = torch.randn(1, 4, 16), torch.randn(1, 5, 16)
    tm, vm = torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool)
    for a, b in zip(default(S, V, tm, vm), explicit(S, V, tm, vm)):
        torch.testing.assert_close(a, b)
