"""The MLP grounding head's options (Table 4 row 1): MIL pooling, clip-level scoring, literal cases."""

from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning import ops
from fsan_lightning.models import MILTripletTerms, MLPClipHead, MLPSegmentHead, build_criterion, run_training_pass
from helpers import make_net

torch.set_num_threads(1)
INF = math.inf


# ----------------------------------------------------------------------------- ops.mil_pool
def test_mil_pool_hard_and_smooth_literal():
    x = torch.tensor([[0.2, 0.8, 0.5], [0.3, 0.1, 0.9]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    torch.testing.assert_close(ops.mil_pool(x, mask), torch.tensor([0.8, 0.3]))
    smooth = ops.mil_pool(x, mask, temperature=0.5)
    expected = torch.tensor([0.5 * math.log((math.exp(0.4) + math.exp(1.6)) / 2), 0.3])
    torch.testing.assert_close(smooth, expected)
    # between the mean and the max; the max as t -> 0, the mean as t -> inf
    assert 0.5 < smooth[0] < 0.8
    torch.testing.assert_close(
        ops.mil_pool(x, mask, temperature=1e-4), torch.tensor([0.8, 0.3]), atol=1e-3, rtol=0
    )
    wide = ops.mil_pool(x.double(), mask, temperature=1e4)
    torch.testing.assert_close(wide, torch.tensor([0.5, 0.3], dtype=torch.float64), atol=1e-4, rtol=0)


def test_mil_pool_on_segment_maps_and_errors():
    x = torch.tensor([[[0.1, 0.7], [9.0, 0.4]]])  # cell [1, 0] (s > e) is not an instance
    mask = ops.segment_mask(torch.tensor([[True, True]]))
    torch.testing.assert_close(ops.mil_pool(x, mask), torch.tensor([0.7]))
    expected = 0.1 * math.log((math.exp(1.0) + math.exp(7.0) + math.exp(4.0)) / 3)
    torch.testing.assert_close(ops.mil_pool(x, mask, temperature=0.1), torch.tensor([expected]))
    with pytest.raises(ValueError, match="temperature"):
        ops.mil_pool(x, mask, temperature=0.0)
    with pytest.raises(ValueError, match="at least one valid"):
        ops.mil_pool(x, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="bool"):
        ops.mil_pool(x, mask.float())


# ----------------------------------------------------------------------------- ops.clip_segment_scores
C = torch.tensor(
    [[1.0, 3.0, -1.0, 7.0], [5.0, 2.0, 2.0, 2.0]]
)  # sample 0: L = 3 (7 is padding); sample 1: L = 1
CM = torch.tensor([[True, True, True, False], [True, False, False, False]])


def test_clip_segment_scores_maxsum_literal():
    # sample 0: mean 1, centred [0, 2, -2]; sample 1: one clip, centred 0
    expected = torch.tensor(
        [
            [[0.0, 2.0, 0.0, -INF], [-INF, 2.0, 0.0, -INF], [-INF, -INF, -2.0, -INF], [-INF] * 4],
            [[0.0, -INF, -INF, -INF], [-INF] * 4, [-INF] * 4, [-INF] * 4],
        ]
    )
    torch.testing.assert_close(ops.clip_segment_scores(C, CM, "maxsum"), expected)
    # its arg-max is the run of above-average clips, as in ops.max_sum
    assert ops.best_segment(ops.clip_segment_scores(C, CM))[0].tolist() == [0, 1]


def test_clip_segment_scores_contrast_literal():
    # mean inside minus mean outside (outside 0 when the segment is the whole video)
    expected = torch.tensor(
        [
            [
                [1 - 1.0, 2 - (-1.0), 1.0 - 0, -INF],
                [-INF, 3 - 0.0, 1 - 1.0, -INF],
                [-INF, -INF, -1 - 2.0, -INF],
                [-INF] * 4,
            ],
            [[5.0, -INF, -INF, -INF], [-INF] * 4, [-INF] * 4, [-INF] * 4],
        ]
    )
    torch.testing.assert_close(ops.clip_segment_scores(C, CM, "contrast"), expected)


def test_clip_segment_scores_gradients_are_finite_and_padding_is_ignored():
    c = C.clone().requires_grad_(True)
    for rule in ("maxsum", "contrast"):
        sc = ops.clip_segment_scores(c, CM, rule)
        sc[torch.isfinite(sc)].sum().backward()
        assert torch.isfinite(c.grad).all() and c.grad[0, 3] == 0 and (c.grad[1, 1:] == 0).all()
        c.grad = None
    other = C.clone()
    other[0, 3], other[1, 1:] = -50.0, 123.0
    torch.testing.assert_close(
        ops.clip_segment_scores(other, CM, "contrast"), ops.clip_segment_scores(C, CM, "contrast")
    )
    with pytest.raises(ValueError, match="rule"):
        ops.clip_segment_scores(C, CM, "mean")


# ----------------------------------------------------------------------------- the head
def test_clip_head_scores_segments_from_clip_logits():
    torch.manual_seed(0)
    head = MLPClipHead(8, hidden=6, dropout=0.0).eval()
    V, vm = torch.randn(2, 5, 8), torch.arange(5)[None] < torch.tensor([[5], [3]])
    S, tm = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    out = head(V, vm, S, tm)
    clip = out.instance_logits
    assert clip.shape == (2, 5) and (clip[1, 3:] == 0).all() and torch.equal(out.instance_mask, vm)
    torch.testing.assert_close(out.segment_logits, ops.clip_segment_scores(clip, vm, "maxsum"))
    # no attention pooling in clip mode: one Linear(d, 1) fewer than the segment head
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(MLPSegmentHead(8, 6)) - n(head) == 8 + 1
    seg = MLPSegmentHead(8, 6, dropout=0.0).eval()(V, vm, S, tm)
    assert torch.equal(seg.instance_mask, ops.segment_mask(vm)) and seg.instance_logits.shape == (2, 5, 5)


def test_product_condition_reads_the_sentence():
    torch.manual_seed(0)
    head = MLPClipHead(8, hidden=6, dropout=0.0, condition="product").eval()
    V, vm = torch.randn(1, 4, 8), torch.ones(1, 4, dtype=torch.bool)
    S, tm = torch.randn(1, 3, 8), torch.tensor([[True, True, False]])
    s_bar = S[:, :2].mean(dim=1)
    h = torch.relu(head.fc2(torch.relu(head.fc1(V * s_bar[:, None]))))
    torch.testing.assert_close(head(V, vm, S, tm).instance_logits, head.fc3(h).squeeze(-1))
    S2 = S.clone()
    S2[0, 2] = 100.0  # a padded token changes nothing
    torch.testing.assert_close(head(V, vm, S2, tm).instance_logits, head(V, vm, S, tm).instance_logits)
    with pytest.raises(ValueError, match="condition"):
        MLPClipHead(8, condition="sum")
    with pytest.raises(ValueError, match="segment_rule"):
        MLPClipHead(8, segment_rule="sum")


# ----------------------------------------------------------------------------- the MIL terms
def _net(kind="segment"):
    return make_net(grounding_head="mlp", d_model=16, num_heads=2, ffn_dim=16, interaction={"layers": 1},
                    head={"kind": kind, "hidden": 8}).eval()


def _batch():
    g = torch.Generator().manual_seed(0)
    B, Nv = 3, 5
    tokens = torch.tensor([[2, 3, 4, 0], [6, 7, 1, 0], [2, 8, 9, 10]])
    neg = torch.tensor([[4, 5, 11], [1, 9, 0], [3, 8, 11]])
    return {
        "video": torch.randn(B, Nv, 20, generator=g),
        "video_mask": torch.arange(Nv)[None] < torch.tensor([[5], [3], [4]]),
        "tokens": tokens,
        "token_mask": tokens > 0,
        "content_mask": tokens > 0,
        "neg_tokens": neg,
        "neg_token_mask": neg > 0,
        "neg_content_mask": neg > 0,
        "vid": ["a", "b", "c"],
    }


def _triplet(a, b, margin=0.2):
    return torch.clamp(margin - a + b, min=0).mean()


def _mil_term(net, batch, temperature=None):
    return MILTripletTerms(0.2, temperature)(run_training_pass(net, batch, negative_video=False))[0]["mil"]


def test_default_mil_is_the_hard_max_over_segments():
    net, batch = _net(), _batch()
    vm = batch["video_mask"]
    pos = net(batch["video"], vm, batch["tokens"], batch["token_mask"]).segment_logits
    Ns = batch["tokens"].shape[1]
    neg_tokens = torch.nn.functional.pad(batch["neg_tokens"], (0, Ns - 3))
    neg = net(batch["video"], vm, neg_tokens, neg_tokens > 0).segment_logits
    old = lambda x: torch.sigmoid(x).flatten(1).amax(dim=1)  # noqa: E731  (the first build's _mil)
    torch.testing.assert_close(_mil_term(net, batch), _triplet(old(pos), old(neg)), atol=1e-5, rtol=1e-5)


def test_clip_head_mil_is_the_smooth_max_over_clip_logits():
    net, batch = _net("clip"), _batch()
    t = 0.1
    vm = batch["video_mask"]

    def video_score(tokens):
        c = torch.sigmoid(net(batch["video"], vm, tokens, tokens > 0).instance_logits)
        return torch.stack([t * torch.log(torch.exp(c[b, vm[b]] / t).mean()) for b in range(3)])

    neg_tokens = torch.nn.functional.pad(batch["neg_tokens"], (0, 1))
    expected = _triplet(video_score(batch["tokens"]), video_score(neg_tokens))
    torch.testing.assert_close(_mil_term(net, batch, t), expected, atol=1e-5, rtol=1e-5)
    net.train()
    crit = build_criterion({"triplet": 1 / 3, "triplet_video": 1 / 3, "inner": 1 / 3, "outer": 1 / 3},
                           mil_temperature=t, grounding_head="mlp", net=net)
    losses = crit(run_training_pass(net, batch, crit.needs_negative_video))
    losses["loss"].backward()
    assert net.head.fc3.weight.grad.abs().sum() > 0 and torch.isfinite(losses["loss"])
    with pytest.raises(ValueError, match="temperature"):
        MILTripletTerms(temperature=0.0)
