"""Grounding maps against the literal loop references of DESIGN.md's equations."""

from __future__ import annotations

import pytest
import torch

from fsan_lightning import ops
from helpers import TOL, random_case
from reference_ops import (
    ref_inner_loss_map,
    ref_joint_matching_score,
    ref_matching_score,
    ref_minmax,
    ref_outer_loss_map,
    ref_segment_scores,
    ref_sentence_contrast_score,
)

torch.set_num_threads(1)
@pytest.mark.parametrize("seed", range(4))
def test_segment_scores_matches_literal_loops(seed):
    P, tm, cm, content = random_case(seed)
    torch.testing.assert_close(ops.segment_scores(P, tm, cm), ref_segment_scores(P, tm, cm), **TOL)
    torch.testing.assert_close(
        ops.segment_scores(P, tm, cm, min_token_mask=content),
        ref_segment_scores(P, tm, cm, min_token_mask=content),
        **TOL,
    )


@pytest.mark.parametrize("seed", range(4))
def test_inner_loss_map_matches_literal_loops(seed):
    P, tm, cm, _ = random_case(seed)
    out = ops.inner_loss_map(P, tm, cm)
    torch.testing.assert_close(out, ref_inner_loss_map(P, tm, cm), **TOL)
    # exact zeros in P hit the floor: -log(eps) for the clip every token rejects
    assert out[0, 0, 0].item() == pytest.approx(-torch.log(torch.tensor(1e-6, dtype=torch.float64)).item())
    torch.testing.assert_close(
        ops.inner_loss_map(P, tm, cm, eps=1e-3), ref_inner_loss_map(P, tm, cm, eps=1e-3), **TOL
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("form", ["complement", "printed"])
def test_outer_loss_map_matches_literal_loops(seed, form):
    P, tm, cm, content = random_case(seed)
    torch.testing.assert_close(
        ops.outer_loss_map(P, tm, cm, form=form), ref_outer_loss_map(P, tm, cm, form=form), **TOL
    )
    torch.testing.assert_close(
        ops.outer_loss_map(P, tm, cm, form=form, min_token_mask=content),
        ref_outer_loss_map(P, tm, cm, form=form, min_token_mask=content),
        **TOL,
    )


@pytest.mark.parametrize("seed", range(3))
def test_minmax_and_matching_score_match_literal_loops(seed):
    A, tm, cm, _ = random_case(seed)
    A = torch.nan_to_num(A, nan=123.0) * 5 - 2  # padding holds junk, not NaN (A comes from a network)
    A[3, 0, :] = 0.7  # degenerate row -> 1 on valid clips
    P = ops.minmax_normalize(A, tm, cm)
    torch.testing.assert_close(P, ref_minmax(A, tm, cm), **TOL)
    valid = tm[:, :, None] & cm[:, None, :]
    assert P[valid].min() >= 0 and P[valid].max() <= 1 and (P[~valid] == 0).all()
    Anan = torch.where(valid, A, torch.nan)
    torch.testing.assert_close(ops.matching_score(Anan, tm, cm), ref_matching_score(A, tm, cm), **TOL)
    # Decision 1: the printed matching score on P is the constant 1
    torch.testing.assert_close(ops.matching_score(P, tm, cm), torch.ones(A.shape[0], dtype=A.dtype), **TOL)


@pytest.mark.parametrize("seed", range(3))
def test_joint_matching_score_matches_literal_loops(seed):
    A, tm, cm, _ = random_case(seed)
    A = torch.nan_to_num(A, nan=123.0) * 5 - 2
    Anan = torch.where(tm[:, :, None] & cm[:, None, :], A, torch.nan)
    torch.testing.assert_close(ops.joint_matching_score(Anan, tm, cm), ref_joint_matching_score(A, tm, cm), **TOL)
    # the smooth maximum lies between the mean over clips and the hard maximum, near the latter for small t
    hard = ops.joint_matching_score(Anan, tm, cm)
    soft = ops.joint_matching_score(Anan, tm, cm, temperature=1e-3)
    assert (soft <= hard + 1e-9).all() and (hard - soft < 0.05).all()


def test_joint_score_needs_the_words_at_one_clip():
    # two words, two clips: each word's own max is 1 in both sentences, but only "together" has both at
    # clip 0; Eq. 7 scores them alike, the joint score does not
    together = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    apart = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    tm, cm = torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
    assert ops.matching_score(together, tm, cm) == ops.matching_score(apart, tm, cm) == 1.0
    assert ops.joint_matching_score(together, tm, cm) == 1.0
    assert ops.joint_matching_score(apart, tm, cm) == 0.5
    with pytest.raises(ValueError, match="temperature"):
        ops.joint_matching_score(apart, tm, cm, temperature=0.0)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("window", [1, 3, 50])
def test_sentence_contrast_score_matches_literal_loops(seed, window):
    A, tm, cm, _ = random_case(seed)
    A = torch.nan_to_num(A, nan=123.0) * 5 - 2
    other, om, _, _ = random_case(seed + 10)
    other = torch.nan_to_num(other, nan=-7.0)[:, :, : A.shape[2]]
    om[1] = False  # a side without a valid token: mean 0
    nan = lambda x, m: torch.where(m[:, :, None] & cm[:, None, :], x, torch.nan)  # noqa: E731
    got = ops.sentence_contrast_score(nan(A, tm), tm, nan(other, om), om, cm, window=window)
    torch.testing.assert_close(got, ref_sentence_contrast_score(A, tm, other, om, cm, window), **TOL)
    soft = ops.sentence_contrast_score(nan(A, tm), tm, nan(other, om), om, cm, window=window, temperature=1e-3)
    assert (soft <= got + 1e-9).all() and (got - soft < 0.05).all()


def test_sentence_contrast_ignores_what_every_clip_of_the_video_shares_and_damps_noise():
    # sentence 0 peaks at clips 0-1, sentence 1 at clips 2-3: each wins where its moment is
    mine = torch.tensor([[[0.9, 0.8, 0.1, 0.0]]], dtype=torch.float64)
    theirs = torch.tensor([[[0.0, 0.1, 0.8, 0.9]]], dtype=torch.float64)
    tm, cm = torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)
    assert ops.sentence_contrast_score(mine, tm, theirs, tm, cm).item() == pytest.approx(0.9)
    assert ops.sentence_contrast_score(theirs, tm, mine, tm, cm).item() == pytest.approx(0.9)
    # a per-clip term common to both sentences (the video's scene, its recording) changes nothing
    common = torch.tensor([0.5, -0.3, 2.0, 0.1], dtype=torch.float64)
    assert ops.sentence_contrast_score(mine + common, tm, theirs + common, tm, cm).item() == pytest.approx(0.9)
    # alternating noise wins both ways clip by clip, but not over 2-clip windows
    noise = torch.tensor([[[0.5, -0.5, 0.5, -0.5]]], dtype=torch.float64)
    zero = torch.zeros_like(noise)
    assert ops.sentence_contrast_score(noise, tm, zero, tm, cm).item() == pytest.approx(0.5)
    assert ops.sentence_contrast_score(zero, tm, noise, tm, cm).item() == pytest.approx(0.5)
    assert ops.sentence_contrast_score(noise, tm, zero, tm, cm, window=2).item() == pytest.approx(0.0)
    assert ops.sentence_contrast_score(mine, tm, theirs, tm, cm, window=2).item() == pytest.approx(0.8)
    with pytest.raises(ValueError, match="window"):
        ops.sentence_contrast_score(mine, tm, theirs, tm, cm, window=0)
    with pytest.raises(ValueError, match="other_A"):
        ops.sentence_contrast_score(mine, tm, theirs[:, :, :3], tm, cm)


def test_matching_score_empty_sentence_scores_zero():
    A = torch.randn(2, 3, 4, dtype=torch.float64)
    tm = torch.tensor([[True, True, False], [False, False, False]])
    cm = torch.ones(2, 4, dtype=torch.bool)
    out = ops.matching_score(A, tm, cm)
    assert out[1] == 0
    assert out[0] == pytest.approx(A[0, :2].max(dim=1).values.mean().item())


def test_segment_scores_hand_computed():
    # one token, three clips: P = [1, 0, 0.5]; m = P
    P = torch.tensor([[[1.0, 0.0, 0.5]]], dtype=torch.float64)
    tm = torch.tensor([[True]])
    cm = torch.tensor([[True, True, True]])
    sc = ops.segment_scores(P, tm, cm)
    # (0,0): pos 1, neg (0 + 0.5)/2 = 0.25 -> 0.75; (0,1): 0.5 - 0.5 = 0; (0,2): 0.5 - 0 = 0.5
    # (1,1): 0 - 0.75 = -0.75; (1,2): 0.25 - 1 = -0.75; (2,2): 0.5 - 0.5 = 0
    inf = float("inf")
    expected = torch.tensor(
        [[[0.75, 0.0, 0.5], [-inf, -0.75, -0.75], [-inf, -inf, 0.0]]], dtype=torch.float64
    )
    torch.testing.assert_close(sc, expected, **TOL)
    lin = ops.inner_loss_map(P, tm, cm)
    assert lin[0, 0, 0] == 0 and lin[0, 2, 2] == pytest.approx(-torch.log(torch.tensor(0.5)).item())
    assert lin[0, 0, 2] == pytest.approx(-torch.log(torch.tensor(1e-6)).item())
    lout = ops.outer_loss_map(P, tm, cm)
    # (2,2): complement clips 0, 1 with m = 1, 0 -> -(log(eps) + log(1)) / 2
    assert lout[0, 2, 2] == pytest.approx(-torch.log(torch.tensor(1e-6, dtype=torch.float64)).item() / 2)
    assert lout[0, 0, 2] == 0


def _valid_only(fn, cm):
    valid = ops.segment_mask(cm)

    def wrapped(P):
        out = fn(P)
        return torch.where(valid, out, torch.zeros_like(out))

    return wrapped


@pytest.mark.parametrize(
    "name",
    [
        "segment_scores",
        "inner_loss_map",
        "outer_complement",
        "outer_printed",
        "minmax",
        "segment_scores_content",
    ],
)
def test_gradcheck(name):
    g = torch.Generator().manual_seed(7)
    B, Ns, Nv = 2, 3, 5
    # values well inside (eps, 1 - eps) and no ties, so min/max are differentiable
    P = (0.05 + 0.9 * torch.rand(B, Ns, Nv, generator=g, dtype=torch.float64)).requires_grad_()
    tm = torch.tensor([[True, True, False], [True, True, True]])
    cm = torch.tensor([[True] * 5, [True, True, True, False, False]])
    content = torch.tensor([[True, False, False], [False, True, True]])
    fns = {
        "segment_scores": lambda x: ops.segment_scores(x, tm, cm),
        "segment_scores_content": lambda x: ops.segment_scores(x, tm, cm, min_token_mask=content),
        "inner_loss_map": lambda x: ops.inner_loss_map(x, tm, cm),
        "outer_complement": lambda x: ops.outer_loss_map(x, tm, cm),
        "outer_printed": lambda x: ops.outer_loss_map(x, tm, cm, form="printed"),
        "minmax": lambda x: ops.minmax_normalize(x, tm, cm),
    }
    fn = fns[name] if name == "minmax" else _valid_only(fns[name], cm)
    assert torch.autograd.gradcheck(fn, (P,), eps=1e-6, atol=1e-7)


def test_segment_mask_and_assemble_by_length():
    cm = torch.tensor([[True, True, False]])
    expected = torch.tensor([[[True, True, False], [False, True, False], [False, False, False]]])
    assert torch.equal(ops.segment_mask(cm), expected)
    per_length = [torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[4.0, 5.0]]), torch.tensor([[6.0]])]
    out = ops.assemble_by_length(per_length)
    assert torch.equal(out, torch.tensor([[[1.0, 4.0, 6.0], [0.0, 2.0, 5.0], [0.0, 0.0, 3.0]]]))


def test_bad_masks_raise():
    P = torch.rand(2, 3, 4)
    tm = torch.ones(2, 3, dtype=torch.bool)
    hole = torch.tensor([[True, False, True, False], [True, True, True, True]])
    with pytest.raises(ValueError, match="segment_scores.*clip_mask.*sample.*\\[0\\].*prefix"):
        ops.segment_scores(P, tm, hole)
    with pytest.raises(ValueError, match="inner_loss_map.*no valid token"):
        ops.inner_loss_map(
            P, torch.tensor([[True, False, False], [False] * 3]), torch.ones(2, 4, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="must be bool"):
        ops.outer_loss_map(P, tm.long(), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        ops.segment_scores(P, tm[:, :2], torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="form"):
        ops.outer_loss_map(P, tm, torch.ones(2, 4, dtype=torch.bool), form="paper")
