"""Alternative grounding scores (max-sum rule, SC with a token subset in pos) vs literal loops."""

from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning import ops
from reference_ops import chosen_tokens, ref_maxsum
from helpers import TOL, random_case

torch.set_num_threads(1)




def ref_sc_pos_subset(P, token_mask, clip_mask, subset):
    """SC with pos averaged over the chosen tokens and m_j over all valid tokens."""
    B, _Ns, Nv = P.shape
    out = torch.full((B, Nv, Nv), -math.inf, dtype=P.dtype)
    for b in range(B):
        toks = chosen_tokens(token_mask, subset, b).tolist()
        every = token_mask[b].nonzero().flatten().tolist()
        L = int(clip_mask[b].sum())
        m = [min(P[b, i, j] for i in every) for j in range(L)]
        for s in range(L):
            for e in range(s, L):
                length = e - s + 1
                pos = sum(P[b, i, j] for i in toks for j in range(s, e + 1)) / (len(toks) * length)
                rest = [m[j] for j in range(L) if not s <= j <= e]
                out[b, s, e] = pos - (sum(rest) / len(rest) if rest else 0.0)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_maxsum_matches_literal_loops(seed):
    P, tm, cm, content = random_case(seed)
    torch.testing.assert_close(ops.maxsum_segment_scores(P, tm, cm), ref_maxsum(P, tm, cm), **TOL)
    torch.testing.assert_close(
        ops.maxsum_segment_scores(P, tm, cm, score_token_mask=content), ref_maxsum(P, tm, cm, content), **TOL
    )
    torch.testing.assert_close(
        ops.maxsum_segment_scores(P, tm, cm, score_token_mask=content, threshold=0.3),
        ref_maxsum(P, tm, cm, content, alpha=0.3), **TOL
    )


@pytest.mark.parametrize("seed", range(3))
def test_weighted_maxsum_matches_literal_loops(seed):
    P, tm, cm, content = random_case(seed)
    w = torch.rand(tm.shape, generator=torch.Generator().manual_seed(seed), dtype=P.dtype) * 3 + 0.01
    torch.testing.assert_close(
        ops.maxsum_segment_scores(P, tm, cm, score_token_mask=content, threshold=0.3, token_weights=w),
        ref_maxsum(P, tm, cm, content, alpha=0.3, weights=w), **TOL
    )
    # equal weights are the plain mean; a common factor changes nothing
    torch.testing.assert_close(
        ops.maxsum_segment_scores(P, tm, cm, score_token_mask=content, token_weights=torch.full_like(w, 2.5)),
        ops.maxsum_segment_scores(P, tm, cm, score_token_mask=content), **TOL
    )


@pytest.mark.parametrize("seed", range(3))
def test_token_mean_matches_literal_loops(seed):
    P, tm, cm, content = random_case(seed)
    w = torch.rand(tm.shape, generator=torch.Generator().manual_seed(seed), dtype=P.dtype) + 0.1
    for subset, weights in ((None, None), (content, None), (content, w)):
        expected = torch.zeros(P.shape[0], P.shape[2], dtype=P.dtype)
        for b in range(P.shape[0]):
            toks = chosen_tokens(tm, subset, b).tolist()
            ws = {i: 1.0 if weights is None else float(weights[b, i]) for i in toks}
            for j in range(int(cm[b].sum())):  # padded clips (NaN here) pass through unread by the test
                expected[b, j] = sum(ws[i] * P[b, i, j] for i in toks) / sum(ws.values())
        got = ops.token_mean(P, tm, subset, token_weights=weights)
        torch.testing.assert_close(torch.where(cm, got, 0.0), expected, **TOL)
    with pytest.raises(ValueError, match="token_mean: token_mask must have shape"):
        ops.token_mean(P, tm[:, :-1])


def test_weighted_maxsum_hand_case():
    # two words over 3 clips; weights 3 : 1 -> pbar = (0.75, 0.25, 0.0) for word maps (1, 0, 0) and (0, 1, 0)
    P = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    tm, cm = torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool)
    got = ops.maxsum_segment_scores(P, tm, cm, token_weights=torch.tensor([[3.0, 1.0]]))
    c = torch.tensor([0.75, 0.25, 0.0]) - 1 / 3
    assert got[0, 0, 0].item() == pytest.approx(float(c[0]))
    assert got[0, 0, 1].item() == pytest.approx(float(c[0] + c[1]))
    assert got[0, 1, 1].item() == pytest.approx(float(c[1]))


def test_weighted_maxsum_refuses_bad_weights():
    P, tm, cm, _ = random_case(0)
    with pytest.raises(ValueError, match="token_weights must be float of shape"):
        ops.maxsum_segment_scores(P, tm, cm, token_weights=torch.ones(tm.shape[0], tm.shape[1] + 1))
    bad = torch.ones(tm.shape)
    bad[0, 0] = 0.0
    with pytest.raises(ValueError, match=r"token_weights of sample\(s\) \[0\] are not finite and > 0"):
        ops.maxsum_segment_scores(P, tm, cm, token_weights=bad)


@pytest.mark.parametrize("seed", range(3))
def test_segment_scores_pos_subset_matches_literal_loops(seed):
    P, tm, cm, content = random_case(seed)
    torch.testing.assert_close(
        ops.segment_scores(P, tm, cm, pos_token_mask=content), ref_sc_pos_subset(P, tm, cm, content), **TOL
    )
    # the full token set reproduces the default
    torch.testing.assert_close(
        ops.segment_scores(P, tm, cm, pos_token_mask=tm), ops.segment_scores(P, tm, cm), **TOL
    )


def test_maxsum_hand_computed_prefers_the_whole_bump():
    # one token, P = [0, 1, 1, 1, 0, 0]: mean 0.5, centred [-.5, .5, .5, .5, -.5, -.5]
    P = torch.tensor([[[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]]], dtype=torch.float64)
    tm = torch.tensor([[True]])
    cm = torch.ones(1, 6, dtype=torch.bool)
    ms = ops.maxsum_segment_scores(P, tm, cm)
    assert ms[0, 1, 3].item() == pytest.approx(1.5)
    assert ms[0, 1, 1].item() == pytest.approx(0.5)
    assert ms[0, 0, 5].item() == pytest.approx(0.0)
    assert ops.best_segment(ms)[0].tolist() == [1, 3]
    assert ms[0, 1, 0].item() == -math.inf


def test_maxsum_threshold_shortens_the_run_by_hand():
    # P = [0, .6, 1, .6, 0, 0]: mean 11/30; centred [-.367, .233, .633, .233, -.367, -.367], sd 0.389.
    # alpha 0: the run [1, 3] (sum 1.1) beats [2, 2] (0.633); alpha 0.5 subtracts 0.194 per clip:
    # [1, 3] sums 0.517, [2, 2] 0.439, [1, 2] 0.477 -> still [1, 3]; alpha 1 (0.389 per clip):
    # [1, 3] -0.067, [2, 2] 0.244, [1, 2] 0.089 -> the peak clip alone.
    P = torch.tensor([[[0.0, 0.6, 1.0, 0.6, 0.0, 0.0]]], dtype=torch.float64)
    tm, cm = torch.tensor([[True]]), torch.ones(1, 6, dtype=torch.bool)
    best = {a: ops.best_segment(ops.maxsum_segment_scores(P, tm, cm, threshold=a))[0].tolist() for a in (0, 0.5, 1)}
    assert best == {0: [1, 3], 0.5: [1, 3], 1: [2, 2]}
    sd = math.sqrt(sum((x - 11 / 30) ** 2 for x in (0, 0.6, 1, 0.6, 0, 0)) / 6)
    ms = ops.maxsum_segment_scores(P, tm, cm, threshold=1.0)
    assert ms[0, 2, 2].item() == pytest.approx(1 - 11 / 30 - sd)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        ops.maxsum_segment_scores(P, tm, cm, threshold=-0.1)


def test_maxsum_gradcheck_and_bad_mask():
    g = torch.Generator().manual_seed(3)
    P = (0.05 + 0.9 * torch.rand(2, 3, 5, generator=g, dtype=torch.float64)).requires_grad_()
    tm = torch.tensor([[True, True, False], [True, True, True]])
    cm = torch.tensor([[True] * 5, [True, True, True, False, False]])
    valid = ops.segment_mask(cm)

    def fn(x):
        out = ops.maxsum_segment_scores(x, tm, cm)
        return torch.where(valid, out, torch.zeros_like(out))

    assert torch.autograd.gradcheck(fn, (P,), eps=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="maxsum_segment_scores.*must be bool"):
        ops.maxsum_segment_scores(P, tm, cm, score_token_mask=tm.long())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sibling_competition_matches_literal_loops(seed):
    g = torch.Generator().manual_seed(seed)
    N, Nv = 9, 6
    maps = torch.randn(N, Nv, generator=g, dtype=torch.float64)
    maps[3] = maps[2]  # a tie for the group maximum
    groups = torch.tensor([5, 5, 1, 1, 1, 7, 2, 2, 5])
    valid = torch.randint(3, Nv + 1, (N,), generator=g)
    for rows in ([0, 1, 8], [2, 3, 4], [5], [6, 7]):  # a group shares one video, hence one clip grid
        valid[rows] = int(valid[rows[0]])
    cm = torch.arange(Nv)[None, :] < valid[:, None]
    for weight in (0.0, 0.5, 1.0):
        expected = torch.zeros(N, Nv, dtype=maps.dtype)
        for n in range(N):
            for j in range(int(valid[n])):
                others = [float(maps[m, j]) for m in range(N) if m != n and groups[m] == groups[n]]
                expected[n, j] = maps[n, j] - weight * (max(others) if others else 0.0)
        got = ops.sibling_competition(maps, groups, cm, weight)
        torch.testing.assert_close(got, expected, **TOL)


def test_sibling_competition_hand_case_and_bad_input():
    # two sentences of one video over 3 clips: each loses what the other claims
    maps = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0], [0.3, 0.2, 0.1]])
    groups, cm = torch.tensor([0, 0, 1]), torch.ones(3, 3, dtype=torch.bool)
    got = ops.sibling_competition(maps, groups, cm, 1.0)
    torch.testing.assert_close(got, torch.tensor([[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], [0.3, 0.2, 0.1]]))
    with pytest.raises(ValueError, match="groups must be int64"):
        ops.sibling_competition(maps, groups.int(), cm, 1.0)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        ops.sibling_competition(maps, groups, cm, -1.0)
    with pytest.raises(ValueError, match="clip_mask must have shape"):
        ops.sibling_competition(maps, groups, cm[:, :2], 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_sibling_competition_matches_literal_loops(seed):
    g = torch.Generator().manual_seed(seed)
    N, Ns, Nv = 9, 5, 6
    word_maps = torch.randn(N, Ns, Nv, generator=g, dtype=torch.float64)
    tokens = torch.randint(1, 7, (N, Ns), generator=g)          # a small vocabulary: many shared words
    lengths = torch.randint(1, Ns + 1, (N,), generator=g)
    tm = torch.arange(Ns)[None, :] < lengths[:, None]
    chosen = torch.rand(N, Ns, generator=g) < 0.7
    chosen[4] = False                                            # no chosen word: all valid tokens
    tokens[7] = tokens[6]                                        # a sibling with nothing the sentence lacks
    weights = torch.rand(N, Ns, generator=g, dtype=torch.float64) + 0.1
    groups = torch.tensor([5, 5, 1, 1, 1, 7, 2, 2, 5])
    valid = torch.randint(3, Nv + 1, (N,), generator=g)
    for rows in ([0, 1, 8], [2, 3, 4], [5], [6, 7]):
        valid[rows] = int(valid[rows[0]])
    cm = torch.arange(Nv)[None, :] < valid[:, None]

    def mean(n, words, w):
        if not words:
            return None
        total = sum(float(w[n, i]) if w is not None else 1.0 for i in words)
        return [sum((float(w[n, i]) if w is not None else 1.0) * float(word_maps[n, i, j]) for i in words) / total
                for j in range(Nv)]

    def chosen_words(n):
        words = [i for i in range(Ns) if tm[n, i] and chosen[n, i]]
        return words or [i for i in range(Ns) if tm[n, i]]

    for weight in (0.0, 0.5, 1.0):
        for w in (None, weights):
            expected = torch.zeros(N, Nv, dtype=torch.float64)
            for n in range(N):
                own = mean(n, chosen_words(n), w)
                own_ids = {int(tokens[n, i]) for i in range(Ns) if tm[n, i]}
                rivals = [mean(m, [i for i in chosen_words(m) if int(tokens[m, i]) not in own_ids], w)
                          for m in range(N) if m != n and groups[m] == groups[n]]
                rivals = [r for r in rivals if r is not None]
                for j in range(int(valid[n])):
                    expected[n, j] = own[j] - weight * (max(r[j] for r in rivals) if rivals else 0.0)
            got = ops.masked_sibling_competition(word_maps, tokens, tm, chosen, groups, cm, weight,
                                                 token_weights=w, chunk=4)
            torch.testing.assert_close(got, expected, **TOL)


def test_masked_sibling_competition_keeps_a_repeated_event_that_the_whole_sentence_rule_cancels():
    # "kick door first" and "kick door again" on 3 clips; the event twice (clips 0 and 2), "first" flat
    kick, door, first, again = 1, 2, 3, 4
    word_maps = torch.tensor([[[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.5, 0.5, 0.5]],
                              [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.2, 0.2, 0.2]]])
    tokens = torch.tensor([[kick, door, first], [kick, door, again]])
    tm, cm, groups = torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 0])
    whole = ops.sibling_competition(ops.token_mean(word_maps, tm), groups, cm, 1.0)
    torch.testing.assert_close(whole[0], torch.tensor([0.1, 0.1, 0.1]))  # the event cancelled: a flat map
    got = ops.masked_sibling_competition(word_maps, tokens, tm, None, groups, cm, 1.0)
    # own mean (2.5/3, 0.5/3, 2.5/3) minus the sibling's "again" only (0.2)
    torch.testing.assert_close(got[0], torch.tensor([2.5 / 3 - 0.2, 0.5 / 3 - 0.2, 2.5 / 3 - 0.2]))
    with pytest.raises(ValueError, match="tokens must be int64"):
        ops.masked_sibling_competition(word_maps, tokens.int(), tm, None, groups, cm, 1.0)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        ops.masked_sibling_competition(word_maps, tokens, tm, None, groups, cm, -1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gated_sibling_competition_matches_literal_loops(seed):
    g = torch.Generator().manual_seed(seed)
    N, Nv = 9, 6
    maps = torch.rand(N, Nv, generator=g, dtype=torch.float64)
    maps[3] = 0.5 * maps[2] + 0.1  # the same shape: spared in full
    groups = torch.tensor([5, 5, 1, 1, 1, 7, 2, 2, 5])
    valid = torch.randint(3, Nv + 1, (N,), generator=g)
    for rows in ([0, 1, 8], [2, 3, 4], [5], [6, 7]):
        valid[rows] = int(valid[rows[0]])
    cm = torch.arange(Nv)[None, :] < valid[:, None]

    def centred(n):
        L = int(valid[n])
        mean = sum(float(maps[n, j]) for j in range(L)) / L
        return [float(maps[n, j]) - mean for j in range(L)]

    for weight, power in ((0.0, 4.0), (1.0, 1.0), (0.5, 4.0)):
        expected = torch.zeros(N, Nv, dtype=maps.dtype)
        for n in range(N):
            L = int(valid[n])
            rivals = []
            for m in range(N):
                if m == n or groups[m] != groups[n]:
                    continue
                a, b = centred(n), centred(m)
                cos = sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
                rivals.append([(1 - max(0.0, cos) ** power) * float(maps[m, j]) for j in range(L)])
            for j in range(L):
                expected[n, j] = maps[n, j] - weight * (max(r[j] for r in rivals) if rivals else 0.0)
        got = ops.gated_sibling_competition(maps, groups, cm, weight, power)
        torch.testing.assert_close(got, expected, **TOL)
    with pytest.raises(ValueError, match="power > 0"):
        ops.gated_sibling_competition(maps, groups, cm, 1.0, 0.0)


def test_gated_sibling_competition_spares_a_sibling_of_the_same_shape():
    # rows 0 and 1: one event said twice (the same shape at two heights); row 2 another event of the video
    maps = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    groups, cm = torch.tensor([0, 0, 0]), torch.ones(3, 3, dtype=torch.bool)
    got = ops.gated_sibling_competition(maps, groups, cm, 1.0)
    # row 0: row 1 spared (cosine 1), row 2 anti-correlated (cosine -0.5 -> 0) competes in full
    torch.testing.assert_close(got[0], torch.tensor([1.0, 0.0, -1.0]))
    torch.testing.assert_close(ops.sibling_competition(maps, groups, cm, 1.0)[0], torch.tensor([-1.0, 0.0, -1.0]))
