"""FSAN options added for the localization study: grounding_rule, grounding_tokens, video_center."""

from __future__ import annotations

import pytest
import torch

from fsan_lightning import ops
from test_models import make_net, padded_pair

torch.set_num_threads(1)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(3, 7, 20, generator=g)
    vm = torch.arange(7)[None] < torch.tensor([[7], [5], [3]])
    tokens = torch.randint(2, 40, (3, 6), generator=g)
    tm = torch.arange(6)[None] < torch.tensor([[6], [4], [2]])
    content = tm & (torch.rand(3, 6, generator=g) < 0.5)
    return video, vm, tokens, tm, content


def test_grounding_rules_route_to_the_ops():
    video, vm, tokens, tm, content = _inputs()
    for rule in ("sc", "maxsum"):
        for toks in ("all", "content"):
            net = make_net(grounding_rule=rule, grounding_tokens=toks).eval()
            out = net(video, vm, tokens, tm)
            got = net.segment_scores(out, tm, vm, content_mask=content)
            subset = content & tm if toks == "content" else None
            if rule == "sc":
                expected = ops.segment_scores(out.P, tm, vm, pos_token_mask=subset)
            else:
                expected = ops.maxsum_segment_scores(out.P, tm, vm, score_token_mask=subset)
            torch.testing.assert_close(got, expected)
            # the SAP losses' weights always use SC (Eq. 8)
            torch.testing.assert_close(net.sap_segment_scores(out, tm, vm), ops.segment_scores(out.P, tm, vm))


def test_grounding_options_reject_bad_values_and_missing_content_mask():
    with pytest.raises(ValueError, match="grounding_rule"):
        make_net(grounding_rule="argmax")
    with pytest.raises(ValueError, match="grounding_tokens"):
        make_net(grounding_tokens="nouns")
    video, vm, tokens, tm, _ = _inputs()
    net = make_net(grounding_tokens="content").eval()
    out = net(video, vm, tokens, tm)
    with pytest.raises(ValueError, match="content_mask"):
        net.segment_scores(out, tm, vm)


def test_video_center_ignores_a_per_video_offset_and_padding():
    video, vm, tokens, tm, _ = _inputs(1)
    net = make_net(video_center=True).eval()
    with torch.no_grad():
        a = net(video, vm, tokens, tm)
        shifted = video + torch.randn(3, 1, 20) * 5  # one offset per video, on every clip
        b = net(shifted, vm, tokens, tm)
    torch.testing.assert_close(a.A, b.A, atol=1e-4, rtol=1e-4)
    plain = make_net(video_center=False).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(video, vm, tokens, tm).A, plain(shifted, vm, tokens, tm).A, atol=1e-3)
    # padding (junk values on invalid clips) still never changes a valid output
    first, second = padded_pair()
    with torch.no_grad():
        o1, o2 = net(*first), net(*second)
    torch.testing.assert_close(o1.A[0, :5, :6], o2.A[0, :5, :6], atol=1e-5, rtol=1e-5)
