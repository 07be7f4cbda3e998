"""Word salience (`WordSalience`, `fit_local_visibility`): the estimate on worlds with known answers, the
logits' policy, and what the network's grounders do with the weights."""

from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning import ops
from fsan_lightning.baselines.prototype import fit_local_visibility
from fsan_lightning.models import MaxSumGrounder
from fsan_lightning.models.salience import WordSalience
from fsan_lightning.ops.prototype import word_prototypes
from helpers import FEATURE_SPACE_NET, VOCAB, make_net, padded_pair

torch.set_num_threads(1)

MOMENT, SCENE, HIDDEN, FUNCTION = 2, 3, 4, 5  # word ids of the small world below


def small_world(seed: int = 0, n: int = 40, clips: int = 8, dim: int = 6):
    """n videos; each mentions MOMENT, SCENE and HIDDEN with probability 1/2 (and always the function word).
    MOMENT adds 3 on dim 0 in clips 2-3 of its videos, SCENE adds 3 on dim 1 in every clip, HIDDEN adds
    nothing; every clip has unit noise. -> one batch per 10 videos (training items: no timestamps)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, n, 10):
        video = torch.randn(10, clips, dim, generator=g)
        has = torch.rand(10, 3, generator=g) < 0.5
        video[:, 2:4, 0] += 3 * has[:, 0:1].float()
        video[:, :, 1] += 3 * has[:, 1:2].float()
        tokens = torch.zeros(10, 4, dtype=torch.long)
        for i in range(10):
            ids = [w for w, h in zip((MOMENT, SCENE, HIDDEN), has[i].tolist()) if h] + [FUNCTION]
            tokens[i, : len(ids)] = torch.tensor(ids)
        tm = tokens > 0
        batches.append({"video": video, "video_mask": torch.ones(10, clips, dtype=torch.bool), "tokens": tokens,
                        "token_mask": tm, "content_mask": tm & (tokens != FUNCTION),
                        "vid": [f"v{start + i}" for i in range(10)]})
    return batches


def literal_local_visibility(batches, vocab_size: int, min_videos: int) -> torch.Tensor:
    """The documented estimate with plain loops over videos and words (features standardised by the clips'
    statistics, the prototype direction from `word_prototypes`)."""
    videos, words_of = {}, {}
    for b in batches:
        for i, vid in enumerate(b["vid"]):
            videos.setdefault(vid, b["video"][i][b["video_mask"][i]].double())
            words_of.setdefault(vid, set()).update(b["tokens"][i][b["content_mask"][i]].tolist())
    clips = torch.cat(list(videos.values()))
    mean, std = clips.mean(0), clips.std(0, unbiased=False)
    vids = list(videos)
    means = torch.stack([(videos[v] - mean).div(std).mean(0) for v in vids])
    pw = torch.tensor([w for v in vids for w in sorted(words_of[v])])
    pv = torch.tensor([k for k, v in enumerate(vids) for _ in words_of[v]])
    protos, counts = word_prototypes(means, pw, pv, vocab_size, min_videos)
    est = torch.zeros(vocab_size, dtype=torch.float64)
    for w in range(vocab_size):
        if protos[w].norm() == 0:
            continue
        inside, outside = [], []
        for v in vids:
            proj = (videos[v] - mean).div(std) @ protos[w]
            var = float(((proj - proj.mean()) ** 2).mean())
            (inside if w in words_of[v] else outside).append(var)
        est[w] = sum(inside) / len(inside) - (sum(outside) / len(outside) if outside else 0.0)
    return est


def test_local_visibility_matches_the_literal_estimate_and_tells_the_words_apart():
    batches = small_world()
    est, estimated, counts = fit_local_visibility(batches, 6, min_videos=3)
    torch.testing.assert_close(est, literal_local_visibility(batches, 6, 3), rtol=1e-5, atol=1e-6)
    assert estimated.tolist() == [False, False, True, True, True, False]
    assert counts[FUNCTION] == 0 and est[FUNCTION] == 0  # a function word is not a content word
    # the word at moments varies inside its videos; the scene word is constant in them; the hidden one is absent
    assert est[MOMENT] > 0.5
    assert abs(float(est[SCENE])) < est[MOMENT] / 5 and abs(float(est[HIDDEN])) < est[MOMENT] / 5
    # a word needs min_videos videos that mention it and min_videos that do not
    n_videos = 40
    limit = min(int(counts[MOMENT]), n_videos - int(counts[MOMENT]))
    for k, expected in ((limit, True), (limit + 1, False)):
        est_k, estimated_k, _ = fit_local_visibility(batches, 6, min_videos=k)
        assert bool(estimated_k[MOMENT]) is expected
        assert torch.all(est_k[~estimated_k] == 0)


def test_local_visibility_counts_a_repeated_video_once_and_refuses_timestamps():
    batches = small_world(n=20)
    est, _, counts = fit_local_visibility(batches, 6, min_videos=2)
    twice = [*batches, batches[0]]  # the same 10 videos again (another sentence per video in a real split)
    est2, _, counts2 = fit_local_visibility(twice, 6, min_videos=2)
    torch.testing.assert_close(est2, est)
    torch.testing.assert_close(counts2, counts)
    leaked = {**batches[0], "gt": torch.zeros(10, 2)}
    with pytest.raises(ValueError, match="fit_local_visibility: batch 0 carries timestamps"):
        fit_local_visibility([leaked], 6)


def test_salience_logits_policy_hand_case():
    s = WordSalience(6, min_videos=2, power=0.5, floor=0.01)
    assert torch.equal(s(torch.tensor([[2, 3]])), torch.ones(1, 2)) and not bool(s.fitted)  # unfitted: the mean
    # words 2, 3, 4 have estimates (4, 1, -1: median 1); word 5 has none
    s.set_estimate(torch.tensor([0.0, 0.0, 4.0, 1.0, -1.0, 9.0]), torch.tensor([False, False, True, True, True, False]))
    assert bool(s.fitted)
    w = s(torch.tensor([[2, 3, 4, 5, 0]]))[0].tolist()
    assert w == pytest.approx([2.0, 1.0, math.sqrt(0.01), 1.0, 1.0])  # sqrt(4 / 1), the median, the floor, rare
    with pytest.raises(ValueError, match="must be \\[6\\]"):
        s.set_estimate(torch.zeros(5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="min_videos >= 1"):
        WordSalience(6, min_videos=0)


SALIENT_NET = {**FEATURE_SPACE_NET, "grounder": {"kind": "maxsum", "tokens": "content", "threshold": 0.25},
               "salience": {"min_videos": 1}}


def test_network_weights_the_grounders_token_mean():
    net = make_net(base=SALIENT_NET)
    plain = make_net(base={**SALIENT_NET, "salience": None})
    plain.load_state_dict(net.state_dict(), strict=False)
    (vid, vm, tok, tm), _ = padded_pair(1)
    content = tm.clone()
    out = net(vid, vm, tok, tm)
    # unfitted: equal weights, the scores of the network without salience
    torch.testing.assert_close(net.segment_scores(out, tm, content), plain.segment_scores(plain(vid, vm, tok, tm), tm, content))
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(3))
    net.salience.logits.copy_(logits)
    out = net(vid, vm, tok, tm)
    assert torch.equal(out.token_weights[tm], logits[tok[tm]].exp()) and torch.all(out.token_weights[~tm] == 1)
    expected = ops.maxsum_segment_scores(out.P, tm, vm, score_token_mask=content, threshold=0.25,
                                         token_weights=logits[tok].exp())
    torch.testing.assert_close(net.segment_scores(out, tm, content), expected)
    assert not torch.allclose(torch.nan_to_num(expected, neginf=0), torch.nan_to_num(
        MaxSumGrounder("content", 0.25)(out.P, tm, vm, content), neginf=0))


def test_feedback_grounder_weights_the_moment_and_the_rereading():
    fb = {"kind": "feedback", "beta": 1.0, "temperature": 0.1, "inner": {"kind": "maxsum", "tokens": "content"}}
    net = make_net(base={**SALIENT_NET, "grounder": fb})
    (vid, vm, tok, tm), _ = padded_pair(2)
    # one word dominates: the moment is (almost) that word's own
    logits = torch.full((VOCAB,), -30.0)
    logits[tok[0, 0]] = 0.0
    net.salience.logits.copy_(logits)
    out = net(vid, vm, tok, tm)
    a = net.grounder.moment_weights(out.cosine, tm, vm, tm, out.token_weights)
    alone = torch.softmax(torch.where(vm[0], out.cosine[0, 0] / 0.1, -torch.inf), dim=0)
    torch.testing.assert_close(a[0], alone, atol=1e-6, rtol=1e-5)


def test_salience_needs_a_maxsum_rule():
    with pytest.raises(ValueError, match="SC takes no token weights"):
        make_net(base={**SALIENT_NET, "grounder": {"kind": "sc"}})
    with pytest.raises(ValueError, match="SCGrounder does not take token weights"):
        make_net().grounder(torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool),
                          None, torch.ones(1, 2))
