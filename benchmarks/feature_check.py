"""Time the full feature check on a world, read from the files and then from the cache.

    python -m benchmarks.feature_check [WORLD_DIR] [--repeats 3]

WORLD_DIR: an ActivityNet-layout folder (train.json, val_1.json, val_2.json, the HDF5); default: the
embedded synthetic world, generated into .data_cache/synthetic when absent. Prints one line per
repeat: the uncached check (every row of every video of the three splits) and a cache hit.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from fsan_lightning.data.feature_check import cached_check, video_needs
from fsan_lightning.data.features import open_feature_store
from fsan_lightning.data.readers import read_annotations
from fsan_lightning.data.synthetic import ensure_world


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.feature_check")
    p.add_argument("world", nargs="?", default=".data_cache/synthetic")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-clips", type=int, default=32)
    args = p.parse_args(argv)
    world = Path(args.world)
    if not (world / "train.json").is_file():
        ensure_world(world)
    files = {"train": "train.json", "val": "val_1.json", "test": "val_2.json"}
    needs = video_needs({s: read_annotations("synthetic", world / f)[0] for s, f in files.items()})
    store = open_feature_store(world / "sub_activitynet_v1-3.c3d.hdf5")
    with tempfile.TemporaryDirectory() as cache:
        cached_check(store, needs, cache, num_clips=args.num_clips)  # fill the cache
        for _ in range(args.repeats):
            t = time.perf_counter()
            full = cached_check(store, needs, None, num_clips=args.num_clips)
            uncached = time.perf_counter() - t
            t = time.perf_counter()
            hit = cached_check(store, needs, cache, num_clips=args.num_clips)
            print(f"full check {uncached:.2f} s ({full.videos} videos, {full.rows} rows x {full.width}); "
                  f"cache {'hit' if hit.cached else 'miss'} {time.perf_counter() - t:.4f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
