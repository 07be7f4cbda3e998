"""`GroundingDataset` items, the epoch-aware train sampler and `collate` (the batch contract).

The batch is exactly the one of docs/architecture.md. Training items carry a negative sentence from
another video and no timestamps; val/test items carry ``gt`` and ``gt_all``.

Negatives are a pure function of (seed, epoch, sample index): `EpochSampler` yields ``(index, epoch)``
pairs, so the epoch reaches the workers with every index (persistent workers included) and a resumed
run sees the same negatives. Lightning calls the sampler's ``set_epoch`` each epoch (it is a
``DistributedSampler``, so Lightning keeps it under DDP too). Indexing with a plain int uses the epoch
set by `GroundingDataset.set_epoch`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from .clip_cache import ClipCache
from .features import FeatureStore, chunk_clips, pool_clips
from .negatives import BindingNegatives, SiblingSentences
from .readers import DIDEMO_CHUNK_S
from .records import Query
from .text import UNK, Vocab, is_content, tokenize


class GroundingDataset(Dataset):
    """Queries with their pooled clip features and token ids.

    queries: one split's Query records; store: the feature store (read lazily, one video per item);
    num_clips: Nv; max_tokens: tokens kept per sentence; train: add a negative sentence (and no
    timestamps); seed: seed of the negatives; dim: expected feature width (checked on every read);
    chunked: DiDeMo mode, the video's first ``duration / 5`` rows (5-second chunks) are the clips.
    negatives: add a negative sentence (a query of another video) to every item; None = ``train``.
        Validation uses it for the held-out matching loss: its epoch stays 0, so its negatives are fixed.
        A split of a single video has none (there is no other video).
    binding_tolerance: None (default) = no binding negatives; else items with negatives also carry one
        (`BindingNegatives` with this tolerance: one content word swapped for one of another sentence of
        the same video), with ``bind_ok`` False when the query has none.
    siblings: items with negatives also carry a sibling (`SiblingSentences`: another sentence of the
        same video), with ``sib_ok`` False when the video has one sentence.
    clip_cache: None (default) = read and pool the video for every item; else a `ClipCache` that keeps the
        pooled clips (any datasets may share one: the key holds the store's path, ``num_clips``, ``dim``
        and, in DiDeMo mode, the chunk count).
    """

    def __init__(self, queries: list[Query], store: FeatureStore, vocab: Vocab, *, num_clips: int,
                 max_tokens: int, train: bool, seed: int = 0, dim: int | None = None,
                 chunked: bool = False, negatives: bool | None = None,
                 binding_tolerance: int | None = None, siblings: bool = False,
                 clip_cache: ClipCache | None = None):
        self.queries = list(queries)
        self.clip_cache = clip_cache
        self.store = store
        self.num_clips = num_clips
        self.train = train
        self.seed = int(seed)
        self.dim = dim
        self.chunked = chunked
        self.epoch = 0
        self._tokens, self._content = [], []
        for q in self.queries:
            words = tokenize(q.sentence, max_tokens) or ["<unk>"]  # no word at all: one unknown token
            ids = vocab.encode(words)
            self._tokens.append(np.asarray(ids, dtype=np.int64))
            self._content.append(np.asarray([is_content(w) for w in words], dtype=bool))
        self.negatives = train if negatives is None else bool(negatives)
        if self.negatives:
            codes: dict[str, int] = {}
            self._vid_code = np.asarray([codes.setdefault(q.vid, len(codes)) for q in self.queries])
            if len(codes) < 2 and self.queries:
                if train:
                    raise ValueError("training needs queries from at least 2 videos (negatives come from "
                                     "another video)")
                self.negatives = False
        self.binding = (BindingNegatives(self._tokens, self._content, self._vid_code, UNK, binding_tolerance)
                        if self.negatives and binding_tolerance is not None else None)
        self.siblings = SiblingSentences(self._vid_code) if self.negatives and siblings else None
        assert all(len(t) for t in self._tokens) and UNK == 1

    def __len__(self) -> int:
        return len(self.queries)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for the negatives of int indices (sampler-driven indices carry their own)."""
        self.epoch = int(epoch)

    def negative_index(self, index: int, epoch: int) -> int:
        """Index of the negative sentence of sample ``index`` at ``epoch``: a query of another video,
        uniform among them, drawn from a generator seeded by (seed, epoch, index)."""
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        own = self._vid_code[index]
        for _ in range(32):  # rejection sampling: uniform over the other videos' queries
            j = int(rng.integers(len(self.queries)))
            if self._vid_code[j] != own:
                return j
        others = np.flatnonzero(self._vid_code != own)  # a video that holds most queries
        return int(others[rng.integers(len(others))])

    def clips(self, q: Query) -> tuple[np.ndarray, np.ndarray]:
        """The query's video as clips float32 [Nv, D] and mask bool [Nv] (from the cache when there is one)."""
        num_valid = round(q.duration / DIDEMO_CHUNK_S) if self.chunked else None

        def make():
            feats = self.store.read(q.vid, self.dim)
            if self.chunked:
                return chunk_clips(feats, num_valid, self.num_clips)
            return pool_clips(feats, self.num_clips)

        if self.clip_cache is None:
            return make()
        return self.clip_cache.get((self.store.path, q.vid, self.num_clips, self.dim, num_valid), make)

    def __getitem__(self, item) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, self.epoch)
        q = self.queries[index]
        clips, mask = self.clips(q)
        out = {
            "video": torch.from_numpy(clips), "video_mask": torch.from_numpy(mask),
            "tokens": torch.from_numpy(self._tokens[index]), "content": torch.from_numpy(self._content[index]),
            "duration": float(q.duration), "qidx": int(index),
            "vid": q.vid, "qid": q.qid, "query": q.sentence,
        }
        if self.negatives:
            j = self.negative_index(index, epoch)
            out["neg_tokens"] = torch.from_numpy(self._tokens[j])
            out["neg_content"] = torch.from_numpy(self._content[j])
        if self.binding is not None:
            bind = self.binding.draw(index, np.random.default_rng([self.seed, int(epoch), int(index), 1]))
            out["bind_ok"] = bind is not None
            out["bind_tokens"] = torch.from_numpy(self._tokens[index] if bind is None else bind)
            out["bind_content"] = torch.from_numpy(self._content[index])
        if self.siblings is not None:
            j = self.siblings.draw(index, np.random.default_rng([self.seed, int(epoch), int(index), 2]))
            out["sib_ok"] = j is not None
            out["sib_tokens"] = torch.from_numpy(self._tokens[index if j is None else j])
            out["sib_content"] = torch.from_numpy(self._content[index if j is None else j])
        if not self.train:
            out["gt_all"] = torch.tensor(q.moments, dtype=torch.float32).reshape(-1, 2)
        return out


class EpochSampler(DistributedSampler):
    """A (optionally shuffled, optionally sharded) sampler yielding ``(index, epoch)`` pairs.

    The order is the DistributedSampler's: a permutation seeded by ``seed + epoch``. With the default
    ``num_replicas=1, rank=0`` it works without torch.distributed.
    """

    def __init__(self, dataset, *, shuffle: bool = True, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)

    def __iter__(self):
        epoch = self.epoch
        for i in super().__iter__():
            yield (i, epoch)


def _pad_tokens(ids: list[torch.Tensor], content: list[torch.Tensor]):
    """-> tokens int64 [B, Ns] (0-padded), token_mask bool [B, Ns], content_mask bool [B, Ns]."""
    b, ns = len(ids), max(len(t) for t in ids)
    tokens = torch.zeros(b, ns, dtype=torch.int64)
    token_mask = torch.zeros(b, ns, dtype=torch.bool)
    content_mask = torch.zeros(b, ns, dtype=torch.bool)
    for i, (t, c) in enumerate(zip(ids, content)):
        tokens[i, : len(t)] = t
        token_mask[i, : len(t)] = True
        content_mask[i, : len(t)] = c
    return tokens, token_mask, content_mask


def collate(items: list[dict]) -> dict:
    """Stack dataset items into the batch of docs/architecture.md.

    Always: video float32 [B, Nv, Dv], video_mask bool [B, Nv], tokens int64 [B, Ns], token_mask and
    content_mask bool [B, Ns], duration float32 [B], qidx int64 [B], vid/qid/query list[str].
    Train (and validation) items: neg_tokens int64 [B, Ns'], neg_token_mask, neg_content_mask bool [B, Ns'];
    with binding negatives on, also bind_tokens int64 [B, Nb], bind_token_mask, bind_content_mask bool [B, Nb] (the binding negative,
    the sentence itself where there is none), bind_ok bool [B]; with siblings on, sib_tokens int64 [B, Nq],
    sib_token_mask, sib_content_mask bool [B, Nq] (another sentence of the same video, the sentence itself
    where there is none), sib_ok bool [B].
    Val/test items: gt float32 [B, 2] (first moment), gt_all float32 [B, M, 2] padded with -1.
    """
    if not items:
        raise ValueError("collate got an empty list")
    batch = {"video": torch.stack([it["video"] for it in items]),
             "video_mask": torch.stack([it["video_mask"] for it in items])}
    batch["tokens"], batch["token_mask"], batch["content_mask"] = _pad_tokens(
        [it["tokens"] for it in items], [it["content"] for it in items])
    batch["duration"] = torch.tensor([it["duration"] for it in items], dtype=torch.float32)
    batch["qidx"] = torch.tensor([it["qidx"] for it in items], dtype=torch.int64)
    for key in ("vid", "qid", "query"):
        batch[key] = [it[key] for it in items]
    if "neg_tokens" in items[0]:
        batch["neg_tokens"], batch["neg_token_mask"], batch["neg_content_mask"] = _pad_tokens(
            [it["neg_tokens"] for it in items], [it["neg_content"] for it in items])
    if "bind_tokens" in items[0]:
        batch["bind_tokens"], batch["bind_token_mask"], batch["bind_content_mask"] = _pad_tokens(
            [it["bind_tokens"] for it in items], [it["bind_content"] for it in items])
        batch["bind_ok"] = torch.tensor([it["bind_ok"] for it in items], dtype=torch.bool)
    if "sib_tokens" in items[0]:
        batch["sib_tokens"], batch["sib_token_mask"], batch["sib_content_mask"] = _pad_tokens(
            [it["sib_tokens"] for it in items], [it["sib_content"] for it in items])
        batch["sib_ok"] = torch.tensor([it["sib_ok"] for it in items], dtype=torch.bool)
    if "gt_all" in items[0]:
        m = max(len(it["gt_all"]) for it in items)
        gt_all = torch.full((len(items), m, 2), -1.0, dtype=torch.float32)
        for i, it in enumerate(items):
            gt_all[i, : len(it["gt_all"])] = it["gt_all"]
        batch["gt_all"] = gt_all
        batch["gt"] = gt_all[:, 0].clone()
    return batch
