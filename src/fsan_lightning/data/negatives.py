"""Binding negatives: a sentence of the video with one content word swapped for a word of another
sentence of the same video (docs/model.md, "Binding negatives").

Weak supervision only says which sentences belong to a video. A negative sentence of another video
can be rejected by a whole-video bag of words; a binding negative cannot: every word of it occurs in
the video, but the swapped word belongs to another moment. ``"paint the small bottle"`` with
``"slice the yellow bottle"`` in the same video gives ``"paint the yellow bottle"``.

Two filters keep the negative a plausible sentence that the video does not show:
- **well-formed**: the swapped-in word must have occurred between the same two neighbours somewhere in
  the split (``"the yellow bottle"``), so the swap keeps the word's role and a text-only reading cannot
  reject it ("paint the small slice" would teach the interaction to spot bad grammar instead);
- **not another sentence of the video**: the swap is rejected when its content words minus those of
  another sentence of the video leave at most ``tolerance`` words (0: only sentences that say no more
  than a sibling; 1 also absorbs a sibling naming the same event with another subject, "the guy" /
  "someone", but then rejects the near misses, "paint the yellow bottle" beside "slice the yellow bottle").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class BindingNegatives:
    """Candidates and draws of binding negatives for one split's queries.

    Args:
        tokens: per query, int64 token ids [Ns_i]. content: per query, bool [Ns_i] content words.
        video_codes: int [Q], the video of each query. unknown_id: id never swapped in or out.
        tolerance: a candidate is rejected when it lies within ``tolerance`` content words of another
            sentence of the same video (its content set minus that sentence's has <= tolerance words).
        well_formed: keep only swaps whose new word has occurred between the same neighbours (the
            sentence start and end count as neighbours) in these queries.
    """

    def __init__(self, tokens: Sequence[np.ndarray], content: Sequence[np.ndarray], video_codes: np.ndarray,
                 unknown_id: int = 1, tolerance: int = 0, well_formed: bool = True) -> None:
        if tolerance < 0:
            raise ValueError(f"BindingNegatives: tolerance must be >= 0, got {tolerance}")
        self.tokens = list(tokens)
        self.unknown_id, self.tolerance, self.well_formed = int(unknown_id), int(tolerance), bool(well_formed)
        self._cache: dict[int, list[tuple[int, int]]] = {}
        self._contexts: set[tuple[int, int, int]] = set()  # (previous id, word id, next id); -1 / -2 = ends
        for ids in self.tokens:
            ext = [-1, *np.asarray(ids).tolist(), -2]
            self._contexts.update(zip(ext[:-2], ext[1:-1], ext[2:]))
        self._content = [frozenset(int(t) for t, c in zip(ids, cm) if c and t != unknown_id)
                         for ids, cm in zip(tokens, content)]
        self._swappable = [np.flatnonzero(cm & (ids != unknown_id)) for ids, cm in zip(tokens, content)]
        self._siblings = SiblingSentences(video_codes)

    def candidates(self, index: int) -> list[tuple[int, int]]:
        """``(position in the sentence, swapped-in token id)`` pairs of query ``index``, sorted; computed
        once per query (a few hundred microseconds for ActivityNet's longest videos), then cached."""
        cached = self._cache.get(index)
        if cached is None:
            cached = self._cache[index] = self._enumerate(index)
        return cached

    def _enumerate(self, index: int) -> list[tuple[int, int]]:
        own = self._content[index]
        siblings = self._siblings.siblings(index)
        out = set()
        for j in siblings:
            for new in self._content[j] - own:
                for pos in self._swappable[index].tolist():
                    if self.well_formed and (self._neighbour(index, pos - 1), new,
                                             self._neighbour(index, pos + 1)) not in self._contexts:
                        continue
                    old = int(self.tokens[index][pos])
                    swapped = (own - {old}) | {new}
                    if not any(len(swapped - self._content[k]) <= self.tolerance for k in siblings):
                        out.add((pos, new))
        return sorted(out)

    def _neighbour(self, index: int, pos: int) -> int:
        ids = self.tokens[index]
        return -1 if pos < 0 else -2 if pos >= len(ids) else int(ids[pos])

    def draw(self, index: int, rng: np.random.Generator) -> np.ndarray | None:
        """Token ids of one binding negative of query ``index`` (uniform over its candidates), or None
        when it has none (a video with one sentence, or every swap is another sentence of it)."""
        cands = self.candidates(index)
        if not cands:
            return None
        pos, new = cands[int(rng.integers(len(cands)))]
        ids = self.tokens[index].copy()
        ids[ids == ids[pos]] = new  # every occurrence of the swapped word
        return ids


class SiblingSentences:
    """Draws of a sibling: another sentence of the same video, for the ``sibling`` loss term
    (:class:`fsan_lightning.models.criterion.SiblingTerms`; docs/model.md, "Sibling contrast").

    Weak supervision gives every sentence of a video without its moment, but the sentences of one video
    describe different moments of it. Scored at the same clips of the same video, a sentence and its
    sibling share everything that is constant in the video (scene, actor, recording), so only words
    found at different clips can tell them apart.

    Args:
        video_codes: int [Q], the video of each query.
    """

    def __init__(self, video_codes: np.ndarray) -> None:
        codes = np.asarray(video_codes).tolist()
        by_video: dict[int, list[int]] = {}
        for i, code in enumerate(codes):
            by_video.setdefault(code, []).append(i)
        self._siblings = [[j for j in by_video[code] if j != i] for i, code in enumerate(codes)]

    def siblings(self, index: int) -> list[int]:
        """Indices of the other queries of query ``index``'s video (ascending)."""
        return self._siblings[index]

    def draw(self, index: int, rng: np.random.Generator) -> int | None:
        """Index of one sibling of query ``index`` (uniform), or None for a video with one sentence."""
        sib = self._siblings[index]
        return sib[int(rng.integers(len(sib)))] if sib else None
