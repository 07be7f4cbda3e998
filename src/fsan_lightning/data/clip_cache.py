"""`ClipCache`: a per-process, memory-bounded store of pooled clips, so a video is read and pooled once.

Every item of a split reads its video's features from the store and pools them to ``Nv`` clips. A video has
several sentences, and training reads every split once an epoch (the self-training teacher reads the training
split once more): on the embedded world that re-reading was a quarter of a CPU training's time
(benchmarks/README.md, "The clip cache"; ``python -m benchmarks.clip_cache``). The cache keeps the pooled
``(clips, mask)`` of the videos it has seen, least recently used first out, within ``max_mb`` megabytes, so
memory stays bounded by the budget, not by the data set.

Each process has its own: a DataLoader worker starts with the entries of the parent at fork time (copy on
write) and fills its own; pickling (spawned workers) drops the entries. Entries are the very arrays pooling
returned, so a cached item equals an uncached one bit for bit; callers must not write into them (`collate`
copies them into the batch).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np


class ClipCache:
    """LRU of ``key -> (clips float32 [Nv, D], mask bool [Nv])`` within ``max_mb`` megabytes.

    max_mb: the budget (MiB, > 0); an entry larger than the whole budget is returned but not kept.
    Counters ``hits``, ``misses`` and ``evictions`` and the bytes held (``nbytes``) are public, for logs
    and benchmarks.
    """

    def __init__(self, max_mb: float):
        if not max_mb > 0:
            raise ValueError(f"ClipCache needs a positive budget in MiB, got {max_mb} (use no cache for 0)")
        self.max_bytes = int(max_mb * 2**20)
        self._entries: OrderedDict[Hashable, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable, make: Callable[[], tuple[np.ndarray, np.ndarray]]
            ) -> tuple[np.ndarray, np.ndarray]:
        """The entry of ``key``; on a miss ``make()`` computes it (errors propagate, nothing is stored)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry
        self.misses += 1
        entry = make()
        size = sum(a.nbytes for a in entry)
        if size <= self.max_bytes:
            self._entries[key] = entry
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self.nbytes -= sum(a.nbytes for a in old)
                self.evictions += 1
        return entry

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_entries=OrderedDict(), nbytes=0)
        return state

    def __repr__(self) -> str:
        return (f"ClipCache({len(self)} entries, {self.nbytes / 2**20:.1f} of {self.max_bytes / 2**20:.0f} MiB, "
                f"hits={self.hits}, misses={self.misses}, evictions={self.evictions})")
