"""The baselines' pure mathematics: max-sum runs and word prototypes, against literal loops and hand cases."""
from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning.ops.max_sum import max_sum_run, window_sums
from fsan_lightning.ops.prototype import (
    centred_clip_scores,
    first_occurrences,
    prototype_alignment,
    prototype_segment_scores,
    within_video_variance,
    word_prototypes,
)
from reference_ops import ref_within_video_variance
from helpers import assert_import_avoids


def prefix_mask(lengths, nv):
    return torch.arange(nv)[None, :] < torch.tensor(lengths)[:, None]


def loop_window_sums(c, lengths):
    B, nv = c.shape
    out = torch.full((B, nv, nv), -math.inf, dtype=c.dtype)
    for b in range(B):
        for s in range(lengths[b]):
            for e in range(s, lengths[b]):
                total = 0.0
                for j in range(s, e + 1):
                    total += float(c[b, j])
                out[b, s, e] = total
    return out


def loop_max_sum_run(values):
    """Every run in (s, e) order; a later one wins only when strictly larger."""
    best, run = -math.inf, None
    for s in range(len(values)):
        for e in range(s, len(values)):
            total = sum(values[s : e + 1])
            if total > best:
                best, run = total, (s, e)
    return run, best


def test_window_sums_match_loops():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(5, 7, generator=g, dtype=torch.float64)
    lengths = [7, 1, 3, 6, 4]
    c_padded = torch.where(prefix_mask(lengths, 7), c, torch.full_like(c, 1e6))  # padded values are ignored
    got = window_sums(c_padded, prefix_mask(lengths, 7))
    want = loop_window_sums(c, lengths)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.allclose(got[torch.isfinite(want)], want[torch.isfinite(want)], atol=1e-12)


def test_max_sum_run_hand_cases():
    c = torch.tensor([[-1.0, 2.0, 3.0, -10.0, 4.0], [-3.0, -1.0, -2.0, 0.0, 0.0], [1.0, -1.0, 1.0, 0.0, 0.0]])
    mask = prefix_mask([5, 3, 3], 5)
    runs, best = max_sum_run(c, mask)
    # [2, 3] sums to 5 > 4; all negative: the largest single clip; ties (0,0), (0,2), (2,2) = 1: the first
    assert runs.tolist() == [[1, 2], [1, 1], [0, 0]]
    assert best.tolist() == [5.0, -1.0, 1.0]


def test_max_sum_run_matches_loop_with_ties():
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        nv = int(torch.randint(1, 9, (1,), generator=g))
        lengths = torch.randint(1, nv + 1, (6,), generator=g).tolist()
        c = torch.randint(-2, 3, (6, nv), generator=g).double()  # small integers: many exact ties
        runs, best = max_sum_run(c, prefix_mask(lengths, nv))
        for b in range(6):
            run, total = loop_max_sum_run(c[b, : lengths[b]].tolist())
            assert tuple(runs[b].tolist()) == run and float(best[b]) == total


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="window_sums: scores must be"):
        window_sums(torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="not a prefix"):
        window_sums(torch.zeros(1, 3), torch.tensor([[True, False, True]]))


def test_first_occurrences():
    tokens = torch.tensor([[4, 2, 4, 2, 3, 0], [5, 5, 5, 0, 0, 0]])
    selected = torch.tensor([[True, True, True, True, True, False], [False, True, True, False, False, False]])
    assert first_occurrences(tokens, selected).tolist() == [
        [True, True, False, False, True, False],
        [False, True, False, False, False, False],  # the unselected first 5 does not hide the second
    ]


def test_word_prototypes_hand_case():
    means = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=torch.float64)  # overall mean (2/3, 2/3)
    # word 2: video 0 (listed twice: counts once); word 3: videos 0, 1; word 4: all three videos
    pw = torch.tensor([2, 2, 3, 3, 4, 4, 4])
    pv = torch.tensor([0, 0, 0, 1, 0, 1, 2])
    protos, counts = word_prototypes(means, pw, pv, vocab_size=6)
    assert counts.tolist() == [0, 0, 1, 2, 3, 0]
    assert torch.allclose(protos[2], torch.tensor([2.0, -1.0], dtype=torch.float64) / math.sqrt(5))  # (4/3, -2/3)
    assert torch.allclose(protos[3], torch.tensor([1.0, 1.0], dtype=torch.float64) / math.sqrt(2))  # (1/3, 1/3)
    assert protos[4].abs().sum() == 0  # (2/3, 2/3) - (2/3, 2/3): a word in every video carries nothing
    assert protos[[0, 1, 5]].abs().sum() == 0
    protos2, _ = word_prototypes(means, pw, pv, vocab_size=6, min_videos=2)
    assert protos2[2].abs().sum() == 0 and torch.allclose(protos2[3], protos[3])
    with pytest.raises(ValueError, match="outside"):
        word_prototypes(means, torch.tensor([6]), torch.tensor([0]), vocab_size=6)


def test_alignment_scores_and_fallback_hand_case():
    # 2-d features, identity standardisation; prototypes: word 2 = e0, word 3 = e1
    protos = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    has = protos.abs().sum(1) > 0
    video = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]]] * 2)
    mask = prefix_mask([3, 3], 4)
    tokens = torch.tensor([[2, 3, 2], [1, 0, 0]])  # query 2: only <unk> (not selected)
    words = torch.tensor([[True, True, True], [False, False, False]])
    P, known = prototype_alignment(video, mask, tokens, words, torch.zeros(2), torch.ones(2), protos, has)
    r = 1 / math.sqrt(2)
    assert known.tolist() == [[True, True, False], [False, False, False]]
    assert torch.allclose(P[0], torch.tensor([[1.0, 0.0, r, 0.0], [0.0, 1.0, r, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    c, has_word = centred_clip_scores(P, known, mask)
    # clip means 0.5, 0.5, r; video mean (1 + r) / 3
    m = (1 + r) / 3
    assert torch.allclose(c[0], torch.tensor([0.5 - m, 0.5 - m, r - m, 0.0]))
    assert has_word.tolist() == [True, False] and c[1].abs().sum() == 0
    scores = prototype_segment_scores(c, has_word, mask)
    assert scores[0].argmax().item() == 2 * 4 + 2  # the run is clip 2 alone
    assert scores[1].argmax().item() == 0 * 4 + 2  # no known word: the whole (3-clip) video
    assert torch.isinf(scores[:, :, 3]).all() and torch.isinf(scores[:, 1, 0]).all()


def test_baseline_mathematics_imports_neither_lightning_nor_hydra():
    assert_import_avoids(["fsan_lightning.ops.max_sum", "fsan_lightning.ops.prototype", "fsan_lightning.baselines.prototype"],
                         ("pytorch_lightning", "lightning.", "hydra"))


def test_within_video_variance_matches_literal_loops():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    mask = prefix_mask([6, 4, 1], 6)
    dirs = torch.randn(5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(within_video_variance(video, mask, dirs), ref_within_video_variance(video, mask, dirs))


def test_within_video_variance_hand_case():
    # clips (0,0), (2,0), (4,1) on direction (1,0): projections 0, 2, 4 -> variance 8/3; padding ignored
    video = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [4.0, 1.0], [100.0, 100.0]]])
    got = within_video_variance(video, prefix_mask([3], 4), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(got, torch.tensor([[8 / 3, 2 / 9]]))
    with pytest.raises(ValueError, match="need video"):
        within_video_variance(video, prefix_mask([3], 4), torch.ones(2, 3))
