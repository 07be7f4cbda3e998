"""FSAN network: padding invariance, ablation switches, word vectors, input checks, MLP pooling."""

from __future__ import annotations

import pytest
import torch

from fsan_lightning import ops
from fsan_lightning.models import window_softmax_pool
from helpers import SMALL_NET, VDIM, VOCAB, WORD, make_net, n_params, padded_pair

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"grounding_head": "mlp"},
        {"cross_attn": False},
        {"inner_attn": False},
        {"alignment": {"kind": "dot"}, "text_encoder": {"layers": 2}},
    ],
)
def test_padding_never_changes_valid_outputs(kw):
    net = make_net(**kw).eval()
    (v1, vm1, t1, tm1), (v2, vm2, t2, tm2) = padded_pair()
    with torch.no_grad():
        o1, o2 = net(v1, vm1, t1, tm1), net(v2, vm2, t2, tm2)
        sc1, sc2 = net.segment_scores(o1, tm1, vm1), net.segment_scores(o2, tm2, vm2)
    close = {"rtol": 0, "atol": 1e-5}
    torch.testing.assert_close(o1.A[0, :5, :6], o2.A[0, :5, :6], **close)
    torch.testing.assert_close(o1.P[0, :5, :6], o2.P[0, :5, :6], **close)
    torch.testing.assert_close(o1.text_features[0, :5], o2.text_features[0, :5], **close)
    torch.testing.assert_close(o1.video_features[0, :6], o2.video_features[0, :6], **close)
    torch.testing.assert_close(sc1[0, :6, :6], sc2[0, :6, :6], **close)
    assert torch.isinf(sc2[0, :, 6:]).all() and (o2.P[0, 5:] == 0).all() and (o2.P[0, :, 6:] == 0).all()
    # the other sample really differs between the two batches, so the test is not vacuous
    assert not torch.allclose(o1.A[1, :3, :4], o2.A[1, :3, :4])


def test_forward_shapes_and_ranges():
    net = make_net(grounding_head="mlp").eval()
    (v, vm, t, tm), _ = padded_pair()
    out = net(v, vm, t, tm)
    assert out.A.shape == out.P.shape == out.cosine.shape == (2, 5, 6)
    assert out.text_features.shape == (2, 5, 32) and out.video_features.shape == (2, 6, 32)
    assert out.segment_logits.shape == (2, 6, 6)
    valid = tm[:, :, None] & vm[:, None, :]
    assert out.P[valid].min() == 0 and out.P[valid].max() == 1
    assert out.cosine.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(out.A, net.alignment.scale * out.cosine)
    sub = out.select(slice(1, 2))
    assert sub.A.shape == (1, 5, 6) and torch.equal(sub.segment_logits, out.segment_logits[1:])


def _block_params(d: int, f: int) -> int:
    attention = 3 * d * d + 3 * d + d * d + d
    ffn = d * f + f + f * d + d
    return attention + ffn + 2 * 2 * d  # + two LayerNorms


def test_ablation_parameter_counts():
    d, f = SMALL_NET["d_model"], SMALL_NET["ffn_dim"]
    layers, h = SMALL_NET["interaction"]["layers"], SMALL_NET["head"]["hidden"]
    full = n_params(make_net())
    assert full - n_params(make_net(cross_attn=False)) == layers * 2 * _block_params(d, f)
    assert full - n_params(make_net(inner_attn=False)) == layers * 2 * _block_params(d, f)
    mlp_head = (d + 1) + (d * h + h) + (h * h + h) + (h + 1)
    assert n_params(make_net(grounding_head="mlp")) - full == mlp_head
    assert n_params(make_net(alignment={"learn_score_scale": True})) - full == 1
    assert n_params(make_net(alignment={"dim": 8})) - full == 2 * d * 8 - 2 * d * d
    frozen, free = make_net(), make_net(text_encoder={"freeze_embeddings": False})
    assert n_params(free, True) - n_params(frozen, True) == VOCAB * WORD


@pytest.mark.parametrize(
    "kw",
    [
        {"cross_attn": False},
        {"inner_attn": False},
        {"text_encoder": {"layers": 0}},
        {"alignment": {"kind": "dot"}},
        {"alignment": {"score_scale": 3.0}},
    ],
)
def test_each_switch_changes_the_computation(kw):
    (v, vm, t, tm), _ = padded_pair()
    with torch.no_grad():
        base = make_net().eval()(v, vm, t, tm)
        other = make_net(**kw).eval()(v, vm, t, tm)
    assert not torch.allclose(base.A, other.A, atol=1e-4)
    if kw == {"alignment": {"score_scale": 3.0}}:  # P and the cosine do not depend on the scale
        torch.testing.assert_close(base.P, other.P)
        torch.testing.assert_close(base.cosine, other.cosine)


def test_grounding_head_and_content_minimum_change_segment_scores():
    (v, vm, t, tm), _ = padded_pair()
    content = tm.clone()
    content[:, 0] = False
    sap, mlp = make_net().eval(), make_net(grounding_head="mlp").eval()
    content_net = make_net(grounder={"kind": "sc", "min_tokens": "content"}).eval()
    with torch.no_grad():
        out = sap(v, vm, t, tm)
        out_mlp = mlp(v, vm, t, tm)
        sc = sap.segment_scores(out, tm)
        torch.testing.assert_close(sc, ops.segment_scores(out.P, tm, vm))
        # the mlp head grounds with its logits, while the grounder's scores stay available
        assert torch.equal(mlp.segment_scores(out_mlp, tm), out_mlp.segment_logits)
        torch.testing.assert_close(mlp.grounder(out_mlp.P, tm, vm), ops.segment_scores(out_mlp.P, tm, vm))
        sc_content = content_net.segment_scores(out, tm, content)
        torch.testing.assert_close(sc_content, ops.segment_scores(out.P, tm, vm, min_token_mask=content))
        assert not torch.allclose(sc_content[ops.segment_mask(vm)], sc[ops.segment_mask(vm)])
    with pytest.raises(ValueError, match="content_mask"):
        content_net.segment_scores(out, tm)


def test_load_word_vectors_and_freezing():
    net = make_net()
    matrix = torch.randn(VOCAB, WORD)
    net.load_word_vectors(matrix)
    assert torch.equal(net.text_encoder.embedding.weight, matrix)
    assert not net.text_encoder.embedding.weight.requires_grad
    assert make_net(text_encoder={"freeze_embeddings": False}).text_encoder.embedding.weight.requires_grad
    with pytest.raises(ValueError, match=r"\[40, 12\].*\[40, 13\]"):
        net.load_word_vectors(torch.randn(VOCAB, WORD + 1))
    with pytest.raises(ValueError, match="NaN"):
        net.load_word_vectors(torch.full((VOCAB, WORD), float("nan")))


def test_bad_inputs_raise():
    net = make_net()
    (v, vm, t, tm), _ = padded_pair()
    with pytest.raises(ValueError, match="no valid token"):
        net(v, vm, t, torch.zeros_like(tm))
    hole = vm.clone()
    hole[0, 1] = False
    with pytest.raises(ValueError, match="prefix"):
        net(v, hole, t, tm)
    with pytest.raises(ValueError, match="token ids outside"):
        net(v, vm, t + VOCAB, tm)
    with pytest.raises(ValueError, match="max_clips"):
        net(torch.randn(2, 17, VDIM), torch.ones(2, 17, dtype=torch.bool), t, tm)
    with pytest.raises(ValueError, match="grounding_head"):
        make_net(grounding_head="transformer")
    with pytest.raises(ValueError, match="alignment: kind must be one of"):
        make_net(alignment={"kind": "l2"})
    with pytest.raises(TypeError, match=r"model.net.grounder \(SCGrounder\)"):
        make_net(grounder={"threshold": 0.2})


def test_window_softmax_pool_matches_literal_loop():
    g = torch.Generator().manual_seed(1)
    B, Nv, H = 2, 6, 3
    logits = torch.randn(B, Nv, generator=g, dtype=torch.float64) * 30  # large logits: stability
    values = torch.randn(B, Nv, H, generator=g, dtype=torch.float64)
    out = window_softmax_pool(logits, values)
    ref = torch.zeros(B, Nv, Nv, H, dtype=torch.float64)
    for b in range(B):
        for s in range(Nv):
            for e in range(s, Nv):
                w = torch.softmax(logits[b, s : e + 1], dim=0)
                ref[b, s, e] = (w[:, None] * values[b, s : e + 1]).sum(dim=0)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
