"""Binding negatives: hand-built videos with known candidate sets."""

from __future__ import annotations

import numpy as np
import pytest

from fsan_lightning.data.negatives import BindingNegatives
from fsan_lightning.data.text import Vocab, is_content, tokenize

SENTENCES = [  # (video, sentence)
    ("v0", "he continues to paint the small bottle"),
    ("v0", "the guy continues to paint the blue bottle"),
    ("v0", "the guy continues to slice the yellow bottle"),
    ("v1", "a man opens a door"),
    ("v2", "someone kicks a ball"),
    ("v2", "someone kicks a ball"),
]


def _build(sentences=SENTENCES, **kw):
    words = [tokenize(s) for _, s in sentences]
    vocab = Vocab(["<pad>", "<unk>"] + sorted({w for ws in words for w in ws}))
    tokens = [np.asarray(vocab.encode(ws), dtype=np.int64) for ws in words]
    content = [np.asarray([is_content(w) for w in ws]) for ws in words]
    codes: dict[str, int] = {}
    vids = np.asarray([codes.setdefault(v, len(codes)) for v, _ in sentences])
    return BindingNegatives(tokens, content, vids, **kw), vocab


def _as_words(neg, vocab, index, sentences=SENTENCES):
    """Candidates of ``index`` as sentences (strings)."""
    words = tokenize(sentences[index][1])
    out = set()
    for pos, new in neg.candidates(index):
        out.add(" ".join(vocab.words[new] if w == words[pos] else w for w in words))
    return out


def test_tolerance_zero_keeps_the_near_misses_and_drops_the_siblings():
    neg, vocab = _build(tolerance=0)
    # swaps into the same neighbours only: "the _ bottle" takes blue or yellow, "to _ the" takes slice;
    # "paint the blue bottle" says no more than sentence 1 (no subject): rejected
    assert _as_words(neg, vocab, 0) == {"he continues to paint the yellow bottle",
                                        "he continues to slice the small bottle"}


def test_tolerance_one_also_drops_the_near_misses():
    neg, vocab = _build(tolerance=1)
    # both near misses lie one content word from "the guy continues to slice the yellow bottle"
    assert _as_words(neg, vocab, 0) == set()
    with pytest.raises(ValueError, match="tolerance"):
        _build(tolerance=-1)


def test_well_formed_filter_keeps_the_word_roles():
    loose, vocab = _build(tolerance=0, well_formed=False)
    got = _as_words(loose, vocab, 0)
    assert "he continues to paint the small slice" in got  # a verb in the noun's place
    assert got > _as_words(_build(tolerance=0)[0], vocab, 0)
    for s in got:  # exactly one word type differs from the sentence
        assert len(set(s.split()) ^ set(tokenize(SENTENCES[0][1]))) == 2


def test_no_candidate_without_a_distinct_sibling():
    neg, _ = _build(tolerance=0, well_formed=False)
    assert neg.candidates(3) == []  # the only sentence of its video
    assert neg.candidates(4) == []  # its sibling says the same
    assert neg.draw(3, np.random.default_rng(0)) is None


def test_draw_is_a_deterministic_candidate():
    neg, vocab = _build(tolerance=0)
    a = neg.draw(0, np.random.default_rng([0, 3, 0, 1]))
    b = neg.draw(0, np.random.default_rng([0, 3, 0, 1]))
    assert np.array_equal(a, b)
    assert " ".join(vocab.words[t] for t in a) in _as_words(neg, vocab, 0)
    assert a.dtype == np.int64 and len(a) == len(tokenize(SENTENCES[0][1]))


def test_siblings_are_the_other_sentences_of_the_video_drawn_uniformly():
    from fsan_lightning.data.negatives import SiblingSentences

    sib = SiblingSentences(np.asarray([0, 0, 0, 1, 2, 2]))
    assert sib.siblings(0) == [1, 2] and sib.siblings(5) == [4] and sib.siblings(3) == []
    assert sib.draw(3, np.random.default_rng(0)) is None  # a video with one sentence
    draws = [sib.draw(0, np.random.default_rng(s)) for s in range(400)]
    assert set(draws) == {1, 2} and 150 < draws.count(1) < 250
