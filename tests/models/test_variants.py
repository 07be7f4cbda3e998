"""Every registered part variant: builds, runs forward and backward, respects padding; and what each changes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsan_lightning import ops
from fsan_lightning.models import (
    ICIM, REGISTRIES, BottleneckGatedICIM, CentredVideoEncoder, FeatureSpaceAlignment, FeatureSpaceVideoEncoder, GatedICIM, MaxSumGrounder,
    CentredFeatureSpaceVideoEncoder, CentredLocalICIM, LocalICIM, SCGrounder, TextEncoder, TextSideICIM,
    WordResidualTextEncoder,
)
from helpers import FEATURE_SPACE_NET, VDIM, VOCAB, WORD, make_net, n_params, padded_pair

torch.set_num_threads(1)

# one network per registered kind of every part (the feature-space kinds need the feature width)
VARIANTS = [
    (part, kind) for part in ("text_encoder", "video_encoder", "interaction", "alignment", "grounder", "head")
    for kind in sorted(REGISTRIES[part])
] + [("network", kind) for kind in sorted(REGISTRIES["network"])]


def _variant_net(part: str, kind: str):
    if (part, kind) in (("video_encoder", "feature_space"), ("video_encoder", "centred_feature_space"),
                        ("alignment", "feature_space")):
        return make_net(base=FEATURE_SPACE_NET, **{part: {"kind": kind}})
    if part == "network":
        return make_net(kind=kind)
    extra = {"grounding_head": "mlp"} if part == "head" else {}
    return make_net(**{part: {"kind": kind}}, **extra)


@pytest.mark.parametrize(("part", "kind"), VARIANTS, ids=[f"{p}-{k}" for p, k in VARIANTS])
def test_every_registered_variant_builds_runs_and_respects_padding(part, kind):
    net = _variant_net(part, kind)
    assert type(net if part == "network" else getattr(net, part)) is REGISTRIES[part][kind]
    (v1, vm1, t1, tm1), (v2, vm2, t2, tm2) = padded_pair()
    net.eval()
    with torch.no_grad():
        o1, o2 = net(v1, vm1, t1, tm1), net(v2, vm2, t2, tm2)
        sc1, sc2 = net.segment_scores(o1, tm1, tm1), net.segment_scores(o2, tm2, tm2)
    close = {"rtol": 0, "atol": 1e-5}
    torch.testing.assert_close(o1.P[0, :5, :6], o2.P[0, :5, :6], **close)
    torch.testing.assert_close(sc1[0, :6, :6], sc2[0, :6, :6], **close)
    assert torch.isinf(sc2[0, :, 6:]).all()
    net.train()
    out = net(v2, vm2, t2, tm2)
    loss = out.A.sum() + (out.instance_logits.sum() if out.instance_logits is not None else 0)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_feature_space_encoder_returns_the_clips_and_checks_the_width():
    enc = FeatureSpaceVideoEncoder(VDIM, None, dropout=0.0).eval()
    x = torch.randn(2, 5, VDIM)
    torch.testing.assert_close(enc(x, torch.ones(2, 5, dtype=torch.bool)), x)
    assert n_params(enc) == 0 and enc.out_dim == VDIM
    with pytest.raises(ValueError, match="feature width"):
        FeatureSpaceVideoEncoder(VDIM, VDIM + 1)
    with pytest.raises(ValueError, match="feature width 20"):
        make_net(base=FEATURE_SPACE_NET, d_model=16)


def test_feature_space_alignment_is_the_plain_cosine():
    align = FeatureSpaceAlignment(VDIM, score_scale=10.0)
    S, V = torch.randn(2, 3, VDIM), torch.randn(2, 4, VDIM)
    tm, vm = torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)
    A, P, cos = align(S, V, tm, vm)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                assert abs(float(cos[b, i, j]) - float(F.cosine_similarity(S[b, i], V[b, j], dim=0))) < 1e-5
    torch.testing.assert_close(A, 10.0 * cos)
    assert n_params(align) == 0
    with pytest.raises(ValueError, match="dim must equal d_model"):
        FeatureSpaceAlignment(VDIM, dim=8)


def test_word_residual_starts_at_zero_and_learns_per_word():
    torch.manual_seed(0)
    plain = TextEncoder(VOCAB, WORD, 16, layers=0, dropout=0.0)
    torch.manual_seed(0)
    resid = WordResidualTextEncoder(VOCAB, WORD, 16, layers=0, dropout=0.0)
    tokens = torch.tensor([[3, 4, 3, 0]])
    mask = tokens > 0
    torch.testing.assert_close(resid(tokens, mask), plain(tokens, mask))  # zero at init
    assert n_params(resid) - n_params(plain) == VOCAB * 16
    resid(tokens, mask).sum().backward()
    g = resid.residual.weight.grad
    assert torch.all(g[3] == 2) and torch.all(g[4] == 1)  # word 3 appears twice
    assert torch.all(g[0] == 0) and torch.all(g[5:] == 0)  # padding and absent words untouched


def test_feature_space_net_compares_words_with_raw_clips():
    net = make_net(base=FEATURE_SPACE_NET).eval()
    (v, vm, t, tm), _ = padded_pair()
    with torch.no_grad():
        out = net(v, vm, t, tm)
        # ICIM with 0 layers still adds its learnable positions to both sides
        words = net.text_encoder(t, tm) + net.interaction.text_pos[: t.shape[1]]
        clips = v + net.interaction.video_pos[: v.shape[1]]
    assert out.video_features.shape[-1] == VDIM  # d_model=None -> the feature width
    ref = F.normalize(words, dim=-1) @ F.normalize(clips, dim=-1).transpose(1, 2)
    valid = tm[:, :, None] & vm[:, None, :]
    torch.testing.assert_close(out.cosine, torch.where(valid, ref, torch.zeros_like(ref)))
    # the only trainable parameters: the word projection, the per-word residuals and the positions
    positions = net.interaction.text_pos.numel() + net.interaction.video_pos.numel()
    assert n_params(net, trainable_only=True) == (WORD * VDIM + VDIM) + VOCAB * VDIM + positions


def _check_identity_at_init(icim):
    """A 2-layer gated interaction over 16-d inputs: with its gates at 0 it only adds the positions (padding
    zeroed), and its 16 gates (layers x blocks x (attention, ffn)) get gradients. -> (S, V, tm, vm, S2, V2)."""
    S, V = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    tm = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    vm = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    S2, V2 = icim(S, V, tm, vm)
    torch.testing.assert_close(S2, torch.where(tm[..., None], S + icim.text_pos[:5], torch.zeros_like(S)))
    torch.testing.assert_close(V2, torch.where(vm[..., None], V + icim.video_pos[:6], torch.zeros_like(V)))
    (S2.sum() + V2.pow(2).sum()).backward()
    gates = [p for name, p in icim.named_parameters() if "gate" in name]
    assert len(gates) == 2 * 4 * 2 and any(float(g.grad.abs()) > 0 for g in gates)
    return S, V, tm, vm, S2.detach(), V2.detach()


def test_gated_icim_starts_as_the_identity_and_learns_its_gates():
    torch.manual_seed(0)
    icim = GatedICIM(16, layers=2, num_heads=2, ffn_dim=24, dropout=0.0, max_tokens=8, max_clips=8)
    _check_identity_at_init(icim)
    assert not any("norm" in name for name, _ in icim.named_parameters())
    assert sum("norm" in n for n, _ in ICIM(16, layers=1, num_heads=2, ffn_dim=24).named_parameters()) == 4 * 2 * 2


def _open_gates(icim, value: float) -> None:
    """Set every residual gate of a gated interaction to ``value`` (at init they are 0: the identity)."""
    with torch.no_grad():
        for name, p in icim.named_parameters():
            if "gate" in name:
                p.fill_(value)


def test_text_side_icim_enhances_only_the_words():
    torch.manual_seed(0)
    icim = TextSideICIM(16, layers=2, num_heads=2, ffn_dim=24, dropout=0.0, max_tokens=8, max_clips=8)
    _open_gates(icim, 0.5)
    S, V = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    tm = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    vm = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    S2, V2 = icim(S, V, tm, vm)
    torch.testing.assert_close(V2, torch.where(vm[..., None], V + icim.video_pos[:6], torch.zeros_like(V)))
    assert (S2[tm] - (S + icim.text_pos[:5])[tm]).abs().amax() > 1e-3  # the words changed
    # the words read the clips: another video changes them
    S3, _ = icim(S, V.flip(1), tm, vm.flip(1).sort(dim=1, descending=True).values)
    assert (S3 - S2).abs().amax() > 1e-4
    assert sum("gate" in n for n, _ in icim.named_parameters()) == 2 * 2 * 2  # layers x (S<-V, S<-S) x 2
    no_cross = TextSideICIM(16, layers=1, num_heads=2, ffn_dim=24, cross_attn=False)
    assert no_cross.layers[0].cross_text is None and no_cross.layers[0].self_text is not None


def test_local_icim_keeps_every_clip_output_local_and_the_words_video_free():
    torch.manual_seed(0)
    icim = LocalICIM(16, layers=2, num_heads=2, ffn_dim=24, dropout=0.0, max_tokens=8, max_clips=12, window=1)
    _open_gates(icim, 0.7)
    S, V = torch.randn(2, 5, 16), torch.randn(2, 10, 16)
    tm = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    vm = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])
    S2, V2 = icim(S, V, tm, vm)
    assert torch.isfinite(S2).all() and torch.isfinite(V2).all()
    changed = V.clone()
    changed[:, 9] += 5.0  # the last clip of video 0 (padding of video 1)
    S3, V3 = icim(S, changed, tm, vm)
    torch.testing.assert_close(S3, S2)  # no S <- V path
    reach = (V3 - V2)[0].abs().amax(dim=-1)
    # 2 layers x window 1: clips 7-9 may change, clips 0-6 may not
    assert (reach[:7] == 0).all() and (reach[7:] > 0).all()
    torch.testing.assert_close(V3[1], V2[1])  # padding never reaches valid clips
    # the clips read the sentence
    _, V4 = icim(S.flip(1), V, tm, vm)
    assert (V4 - V2)[0].abs().amax() > 1e-4
    assert LocalICIM(16, layers=1, num_heads=2, ffn_dim=24, cross_attn=False).layers[0].cross_video is None
    with pytest.raises(ValueError, match="window"):
        LocalICIM(16, layers=1, num_heads=2, ffn_dim=24, window=0)


def test_centred_local_icim_update_ignores_a_per_video_constant():
    torch.manual_seed(0)
    icim = CentredLocalICIM(16, layers=1, num_heads=2, ffn_dim=24, dropout=0.0, max_tokens=8, max_clips=12)
    _open_gates(icim, 0.7)
    S, V = torch.randn(2, 5, 16), torch.randn(2, 10, 16)
    tm = torch.ones(2, 5, dtype=torch.bool)
    vm = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])
    _, out = icim(S, V, tm, vm)
    shift = torch.randn(2, 1, 16) * 3  # a scene / camera constant of each video
    _, shifted = icim(S, V + shift * vm[..., None], tm, vm)
    # the update (output minus input) does not see the constant; the clips keep it
    torch.testing.assert_close(shifted - (V + shift) * vm[..., None], out - V * vm[..., None], atol=1e-5, rtol=1e-5)
    assert (out[1, 6:] == 0).all()


def test_centred_feature_space_encoder_subtracts_the_video_mean():
    enc = CentredFeatureSpaceVideoEncoder(4, dropout=0.0)
    video = torch.tensor([[[1.0, 2, 3, 4], [3.0, 2, 1, 0], [9.0, 9, 9, 9]]])
    vm = torch.tensor([[True, True, False]])
    torch.testing.assert_close(enc(video, vm), torch.tensor([[[-1.0, 0, 1, 2], [1.0, 0, -1, -2], [0.0, 0, 0, 0]]]))


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(3, 7, VDIM, generator=g)
    vm = torch.arange(7)[None] < torch.tensor([[7], [5], [3]])
    tokens = torch.randint(2, VOCAB, (3, 6), generator=g)
    tm = torch.arange(6)[None] < torch.tensor([[6], [4], [2]])
    content = tm & (torch.rand(3, 6, generator=g) < 0.5)
    return video, vm, tokens, tm, content


def test_grounders_route_to_the_ops():
    video, vm, tokens, tm, content = _inputs()
    for toks in ("all", "content"):
        subset = content & tm if toks == "content" else None
        for grounder, expected in (
            ({"kind": "sc", "pos_tokens": toks}, lambda P, subset=subset: ops.segment_scores(P, tm, vm, pos_token_mask=subset)),
            ({"kind": "maxsum", "tokens": toks, "threshold": 0.3},
             lambda P, subset=subset: ops.maxsum_segment_scores(P, tm, vm, score_token_mask=subset,
                                                                 threshold=0.3)),
        ):
            net = make_net(grounder=grounder).eval()
            out = net(video, vm, tokens, tm)
            torch.testing.assert_close(net.segment_scores(out, tm, content), expected(out.P))


def test_grounders_reject_bad_values_and_a_missing_content_mask():
    with pytest.raises(ValueError, match="pos_tokens"):
        SCGrounder(pos_tokens="nouns")
    with pytest.raises(ValueError, match="threshold"):
        MaxSumGrounder(threshold=-1)
    video, vm, tokens, tm, _ = _inputs()
    net = make_net(grounder={"kind": "maxsum", "tokens": "content"}).eval()
    with pytest.raises(ValueError, match="content_mask"):
        net.segment_scores(net(video, vm, tokens, tm), tm)


def test_centred_video_encoder_ignores_a_per_video_offset():
    video, vm, tokens, tm, _ = _inputs(1)
    net = make_net(video_encoder={"kind": "centred"}).eval()
    assert isinstance(net.video_encoder, CentredVideoEncoder)
    shifted = video + torch.randn(3, 1, VDIM) * 5  # one offset per video, on every clip
    with torch.no_grad():
        torch.testing.assert_close(net(video, vm, tokens, tm).A, net(shifted, vm, tokens, tm).A, atol=1e-4, rtol=1e-4)
        plain = make_net().eval()
        assert not torch.allclose(plain(video, vm, tokens, tm).A, plain(shifted, vm, tokens, tm).A, atol=1e-3)


def test_two_stage_network_adds_the_map_before_the_interaction():
    from fsan_lightning.models import FSAN, TwoStageFSAN

    (v, vm, t, tm), _ = padded_pair()
    two, one = make_net(kind="two_stage").eval(), make_net().eval()
    assert isinstance(two, TwoStageFSAN) and type(one) is FSAN
    with torch.no_grad():
        out, ref = two(v, vm, t, tm), one(v, vm, t, tm)
        base = two.alignment(two.text_encoder(t, tm), two.video_encoder(v, vm), tm, vm)
    torch.testing.assert_close(out.P, ref.P)  # same weights (same seed): the interacted map is FSAN's
    torch.testing.assert_close(out.base_A, base[0])
    torch.testing.assert_close(out.base_P, base[1])
    assert ref.base_P is None and not torch.allclose(out.base_P, out.P)


@pytest.mark.parametrize("kind", ["unpositioned_icim", "unpositioned_gated_icim"])
def test_unpositioned_icim_is_equivariant_to_a_permutation_of_the_clips(kind):
    from fsan_lightning.models.build import INTERACTIONS

    torch.manual_seed(0)
    icim = INTERACTIONS[kind](16, layers=2, num_heads=2, ffn_dim=24, dropout=0.0, max_tokens=8, max_clips=12)
    if kind == "unpositioned_gated_icim":
        _open_gates(icim, 0.7)
    assert not any("pos" in name for name, _ in icim.named_parameters())  # nothing positional is learned
    assert "video_pos" not in icim.state_dict()
    S, V = torch.randn(2, 5, 16), torch.randn(2, 10, 16)
    tm, vm = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 10, dtype=torch.bool)
    S2, V2 = icim(S, V, tm, vm)
    perm = torch.randperm(10)
    S3, V3 = icim(S, V[:, perm], tm, vm)
    torch.testing.assert_close(V3, V2[:, perm])  # a clip's output follows its content, not its place
    torch.testing.assert_close(S3, S2)
    # the positioned part is not equivariant: its clip tables tell places apart
    positioned = INTERACTIONS[kind.replace("unpositioned_", "")](16, layers=2, num_heads=2, ffn_dim=24,
                                                                  dropout=0.0, max_tokens=8, max_clips=12)
    if kind == "unpositioned_gated_icim":
        _open_gates(positioned, 0.7)
    _, P2 = positioned(S, V, tm, vm)
    _, P3 = positioned(S, V[:, perm], tm, vm)
    assert (P3 - P2[:, perm]).abs().amax() > 1e-4


FEEDBACK = {"kind": "feedback", "beta": 0.8, "temperature": 0.2,
            "inner": {"kind": "maxsum", "tokens": "content", "threshold": 0.25}}


def test_feedback_grounder_matches_a_literal_rereading():
    net = make_net(base=FEATURE_SPACE_NET, grounder=FEEDBACK).double()
    (vid, vm, tok, tm), _ = padded_pair(3)
    vid = vid.double()
    content = tm & (tok % 3 != 0)  # some function words
    out = net(vid, vm, tok, tm)
    got = net.segment_scores(out, tm, content)
    inner = MaxSumGrounder(tokens="content", threshold=0.25)
    with torch.no_grad():
        S, V = out.text_features, out.video_features
        expected = []
        for b in range(2):
            L, toks = int(vm[b].sum()), tm[b].nonzero().flatten().tolist()
            chosen = [i for i in toks if content[b, i]] or toks
            cos = torch.stack([torch.stack([F.cosine_similarity(S[b, i], V[b, j], dim=0) for j in range(L)])
                               for i in range(S.shape[1])])
            m = torch.stack([sum(cos[i, j] for i in chosen) / len(chosen) for j in range(L)])
            a = torch.softmax(m / 0.2, dim=0)
            mean_v = V[b, :L].mean(0)
            r = sum(a[j] * (V[b, j] - mean_v) for j in range(L))
            S2 = S[b] + 0.8 * S[b].norm(dim=-1, keepdim=True) * r / r.norm()
            A2 = torch.zeros(1, S.shape[1], V.shape[1], dtype=torch.float64)
            for i in toks:
                for j in range(L):
                    A2[0, i, j] = F.cosine_similarity(S2[i], V[b, j], dim=0)
            P2 = ops.minmax_normalize(A2, tm[b : b + 1], vm[b : b + 1])
            expected.append(inner(P2, tm[b : b + 1], vm[b : b + 1], content[b : b + 1])[0])
    torch.testing.assert_close(got, torch.stack(expected))
    # the re-reading changes the ranking inputs, and beta 0 is the inner rule on P itself
    plain = inner(out.P, tm, vm, content)
    assert not torch.allclose(torch.where(torch.isfinite(got), got, 0), torch.where(torch.isfinite(plain), plain, 0))
    off = make_net(base=FEATURE_SPACE_NET, grounder={**FEEDBACK, "beta": 0.0}).double()
    off.load_state_dict(net.state_dict())
    torch.testing.assert_close(off.segment_scores(off(vid, vm, tok, tm), tm, content), plain)
    assert torch.equal(net.grounder(out.P, tm, vm, content), plain)  # on a map alone: the inner rule
    with pytest.raises(ValueError, match="beta"):
        make_net(base=FEATURE_SPACE_NET, grounder={**FEEDBACK, "beta": -1.0})


def test_bottleneck_gated_icim_starts_as_the_identity_and_runs_narrow():
    torch.manual_seed(0)
    icim = BottleneckGatedICIM(16, layers=2, num_heads=2, ffn_dim=24, dropout=0.0, max_tokens=8, max_clips=8, width=4)
    S, V, tm, vm, S2, V2 = _check_identity_at_init(icim)  # the positions are added at the full width
    assert icim.text_pos.shape[1] == 16 and all(b.attn.embed_dim == 4 for b in icim.layers[0].children())
    assert len(icim.layers) == 2
    # open gates: the update is a rank-<=width change added to the inputs, read from the other modality
    _open_gates(icim, 0.5)
    S3, V3 = icim(S, V, tm, vm)
    assert (V3 - V2)[vm].abs().amax() > 1e-3
    _, V4 = icim(S.flip(1), V, tm, vm)
    assert (V4 - V3)[0].abs().amax() > 1e-4  # the clips read the words
    pad = V.clone()
    pad[1, 4:] += 9.0
    S5, V5 = icim(S, pad, tm, vm)
    torch.testing.assert_close(V5, V3)  # padding never reaches valid positions
    torch.testing.assert_close(S5, S3)
    assert (V5[1, 4:] == 0).all()
    with pytest.raises(ValueError, match="width"):
        BottleneckGatedICIM(16, layers=1, num_heads=3, ffn_dim=24, width=4)


def test_attached_two_stage_starts_at_its_base_map_and_lets_the_interacted_map_train_the_words():
    (v, vm, t, tm), _ = padded_pair()
    parts = {"base": FEATURE_SPACE_NET, "interaction": {"kind": "bottleneck_gated_icim", "layers": 2, "width": 4}}
    net = make_net(kind="attached_two_stage", **parts)
    out = net(v, vm, t, tm)
    # a gated interaction starts as the identity and the base map reads the same positional encodings
    torch.testing.assert_close(out.base_A, out.A)
    torch.testing.assert_close(out.base_P, out.P)
    _open_gates(net.interaction, 0.5)
    out = net(v, vm, t, tm)
    assert not torch.allclose(out.base_P, out.P, atol=1e-4)
    inner = [p for n, p in net.interaction.named_parameters() if not n.endswith("_pos")]

    def grads(loss, params):
        net.zero_grad()
        loss.backward()
        return sum(0.0 if p.grad is None else float(p.grad.abs().sum()) for p in params)

    words = list(net.text_encoder.parameters())
    assert grads(out.P.sum(), inner) > 0
    assert grads(net(v, vm, t, tm).P.sum(), words) > 0  # the interacted map trains the words through ICIM
    assert grads(net(v, vm, t, tm).base_A.sum(), inner) == 0.0  # the base map never trains the interaction
    detached = make_net(kind="two_stage", **parts)
    _open_gates(detached.interaction, 0.5)
    detached.zero_grad()
    detached(v, vm, t, tm).P.sum().backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in detached.text_encoder.parameters())
