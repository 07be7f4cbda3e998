"""The full feature check: every feature row of every video a run will read, once, before training.

`check_feature_values` streams the videos one at a time (memory: one video's ``[T, D]`` array), so it
costs one read of the feature file and nothing that grows with the data set. Per video it finds:

- problems (the video cannot be used): ``missing`` (no features), ``unreadable`` (the store cannot
  read it), ``rank`` (not 2-D), ``zero_rows``, ``too_few_rows`` (DiDeMo: fewer rows than its chunks),
  ``width`` (not the expected width: the configured one, else the width of most videos),
  ``nonfinite`` (NaN or inf, first row named);
- warnings (the video is used, and counted): ``short`` (fewer rows than the ``num_clips`` clips it
  is pooled to: only its rows are valid clips, the rest are masked) and ``duration_mismatch`` (its
  length in seconds, rows / rate, differs from the annotated duration by more than
  ``duration_tolerance`` of the duration; the rate is ``feature_rate`` rows per second, else the
  median rows per second over the file's videos; skipped for chunked DiDeMo features).

Each problem message names the file, the video (record), its key in the file and what is wrong, in
the words `FeatureStore.read` uses at training time. The result is a plain `FeatureCheck` that
`FeatureCheckCache` stores under a key made of the feature file's size and mtime (every video file's
for a folder of .npy files), the videos asked for and the check's parameters: a second run on the
same files skips the reading. No torch, no Lightning.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataFormatError
from .features import FeatureStore, HDF5FeatureStore, NpyFolderFeatureStore, shape_problem

#: relative tolerance between the annotated duration and the feature length in seconds
DURATION_TOLERANCE = 0.5
PROBLEM_KINDS = ("missing", "unreadable", "rank", "zero_rows", "too_few_rows", "width", "nonfinite")
WARNING_KINDS = ("short", "duration_mismatch")
#: videos named in a message (the report holds them all)
SHOWN = 10
CACHE_VERSION = 1


class FeatureCheckError(DataFormatError):
    """Videos of a run have unusable features (the message lists file, videos and problems)."""


@dataclass(frozen=True)
class VideoNeed:
    """What the annotations ask of one video's features.

    min_rows: rows it must have (DiDeMo: its chunks; 1 otherwise); duration: annotated seconds (the
    largest over its queries); splits: the splits whose queries use it.
    """

    min_rows: int
    duration: float
    splits: tuple[str, ...]


def video_needs(queries_by_split: dict, chunk_seconds: float | None = None) -> dict[str, VideoNeed]:
    """vid -> `VideoNeed` over the given splits' `Query` lists (chunk_seconds: DiDeMo's 5 s chunks)."""
    rows: dict[str, int] = {}
    duration: dict[str, float] = {}
    splits: dict[str, list[str]] = {}
    for split, queries in queries_by_split.items():
        for q in queries:
            need = round(q.duration / chunk_seconds) if chunk_seconds else 1
            rows[q.vid] = max(rows.get(q.vid, 0), need)
            duration[q.vid] = max(duration.get(q.vid, 0.0), float(q.duration))
            if split not in splits.setdefault(q.vid, []):
                splits[q.vid].append(split)
    return {v: VideoNeed(rows[v], duration[v], tuple(splits[v])) for v in sorted(rows)}


@dataclass
class FeatureCheck:
    """The result of one check of one feature store.

    problems: vid -> {"kind", "message"} (missing videos included, kind "missing");
    warnings: kind -> {vid: message}; width: the expected feature width D; rate: rows per second of
    the duration check (None when not checked); rows: feature rows read; seconds: wall time of the read.
    """

    file: str
    videos: int
    rows: int = 0
    width: int | None = None
    rate: float | None = None
    problems: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: dict[str, dict[str, str]] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False

    @property
    def missing(self) -> list[str]:
        """Videos without features (sorted)."""
        return sorted(v for v, p in self.problems.items() if p["kind"] == "missing")

    @property
    def broken(self) -> list[str]:
        """Videos present but unusable (sorted)."""
        return sorted(v for v, p in self.problems.items() if p["kind"] != "missing")

    def problem_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p["kind"] for p in self.problems.values()).items()))

    def warning_counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.warnings.items()) if v}

    def broken_message(self, policy_hint: str | None = "data.bad_features=skip") -> str:
        """Every broken video (up to SHOWN), one per line: record, key, problem, splits; then the fix."""
        broken = self.broken
        lines = [f"{len(broken)} of {self.videos} videos have unusable features "
                 f"({', '.join(f'{k}={n}' for k, n in self.problem_counts().items() if k != 'missing')}):"]
        for vid in broken[:SHOWN]:
            splits = self.splits.get(vid) or []
            lines.append(f"  {self.problems[vid]['message']}" + (f" [{'/'.join(splits)} split]" if splits else ""))
        if len(broken) > SHOWN:
            lines.append(f"  ... and {len(broken) - SHOWN} more")
        fix = "re-extract these videos' features"
        if policy_hint:
            fix += f", or set {policy_hint} to drop their queries (counted in data_report.json)"
        lines.append(fix)
        return "\n".join(lines)

    def warning_lines(self) -> list[str]:
        """One line per warning kind: count and the first videos."""
        out = []
        for kind, items in sorted(self.warnings.items()):
            if not items:
                continue
            first = sorted(items)[0]
            out.append(f"{self.file}: {len(items)} of {self.videos} videos {_WARNING_TEXT[kind]} "
                       f"(first: {items[first]})")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureCheck:
        return cls(**d)


_WARNING_TEXT = {
    "short": "have fewer feature rows than clips (only their rows are valid clips)",
    "duration_mismatch": "have a feature length that disagrees with the annotated duration",
}


def check_feature_values(store: FeatureStore, needs: dict[str, VideoNeed], dim: int | None = None,
                         num_clips: int | None = None, duration_tolerance: float = DURATION_TOLERANCE,
                         feature_rate: float | None = None, check_durations: bool = True) -> FeatureCheck:
    """Read every row of every needed video once (one video in memory at a time) and report.

    store: the features; needs: vid -> `VideoNeed` (`video_needs`); dim: the expected width (None: the
    width of most videos); num_clips: Nv for the ``short`` warning (None: no such warning).
    Never raises for a bad video: every problem and warning is in the returned `FeatureCheck`.
    """
    if duration_tolerance <= 0:
        raise ValueError(f"duration_tolerance must be positive, got {duration_tolerance}")
    if feature_rate is not None and feature_rate <= 0:
        raise ValueError(f"feature_rate must be positive rows per second, got {feature_rate}")
    started = time.perf_counter()
    result = FeatureCheck(file=store.path, videos=len(needs),
                          splits={v: list(n.splits) for v, n in needs.items()})
    shapes: dict[str, tuple[int, ...]] = {}
    for vid in needs:
        try:
            shape = store.shape(vid)
        except (DataFormatError, OSError) as err:
            result.problems[vid] = {"kind": "unreadable", "message": _message(store, vid, str(err))}
            continue
        if shape is None:
            result.problems[vid] = {"kind": "missing", "message": _message(store, vid, "no features for this video")}
        else:
            shapes[vid] = tuple(int(x) for x in shape)
    if dim is None:
        widths = Counter(s[1] for s in shapes.values() if len(s) == 2 and s[0] > 0)
        dim = min(widths, key=lambda w: (-widths[w], w)) if widths else None
    result.width = dim
    lengths: dict[str, int] = {}
    for vid, shape in shapes.items():
        problem = shape_problem(shape, dim, needs[vid].min_rows)
        if problem is not None:
            result.problems[vid] = {"kind": problem[0], "message": _message(store, vid, problem[1])}
            continue
        try:
            store.read(vid, dim)  # checks finiteness; the array is dropped at once
        except DataFormatError as err:
            result.problems[vid] = {"kind": "nonfinite", "message": str(err)}
            continue
        except OSError as err:
            result.problems[vid] = {"kind": "unreadable", "message": _message(store, vid, f"cannot be read ({err})")}
            continue
        lengths[vid] = shape[0]
        result.rows += shape[0]
    store.close()
    warnings: dict[str, dict[str, str]] = {k: {} for k in WARNING_KINDS}
    if num_clips is not None:
        for vid, rows in lengths.items():
            if rows < num_clips:
                warnings["short"][vid] = f"{vid}: {rows} rows < {num_clips} clips"
    if check_durations and lengths:
        ratios = [rows / needs[v].duration for v, rows in lengths.items() if needs[v].duration > 0]
        rate = float(feature_rate) if feature_rate is not None else (float(np.median(ratios)) if ratios else None)
        result.rate = rate
        if rate:
            for vid, rows in lengths.items():
                annotated = needs[vid].duration
                seconds = rows / rate
                if abs(seconds - annotated) > duration_tolerance * annotated:
                    warnings["duration_mismatch"][vid] = (
                        f"{vid}: {rows} rows = {seconds:.1f} s at {rate:.3g} rows/s, annotated {annotated:.1f} s, "
                        f"more than {duration_tolerance:.0%} apart")
    result.warnings = {k: v for k, v in warnings.items() if v}
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _message(store: FeatureStore, vid: str, problem: str) -> str:
    return str(DataFormatError(store.path, problem, vid, store.where(vid)))


# ---------------------------------------------------------------------------------------------- cache
def _stat(path: Path) -> list | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def check_key(store: FeatureStore, needs: dict[str, VideoNeed], params: dict) -> str:
    """A digest of what the check's answer depends on: the files' size and mtime, the needs, params."""
    if isinstance(store, NpyFolderFeatureStore):
        files = {v: _stat(Path(store.path) / store.where(v)) for v in needs}
        layout = "npy"
    else:
        files = {"": _stat(Path(store.path))}
        layout = getattr(store, "key_template", type(store).__name__) if isinstance(store, HDF5FeatureStore) \
            else type(store).__name__
    payload = {
        "version": CACHE_VERSION,
        "path": os.path.abspath(store.path),
        "layout": layout,
        "files": files,
        "needs": [[v, n.min_rows, round(n.duration, 4), list(n.splits)] for v, n in sorted(needs.items())],
        "params": params,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


class FeatureCheckCache:
    """Check results as small JSON files in a folder, one per key; keeps the newest ``keep`` files."""

    def __init__(self, folder, keep: int = 64):
        self.folder = Path(folder)
        self.keep = int(keep)

    def get(self, key: str) -> FeatureCheck | None:
        path = self.folder / f"{key}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        try:
            check = FeatureCheck.from_dict(data)
        except TypeError:
            return None
        check.cached = True
        return check

    def put(self, key: str, check: FeatureCheck) -> bool:
        """Store a result; False (and nothing raised) when the folder is not writable."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps({**check.to_dict(), "cached": False}))
            tmp.replace(self.folder / f"{key}.json")
            old = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)[self.keep:]
            for p in old:
                p.unlink(missing_ok=True)
        except OSError:
            return False
        return True


def cached_check(store: FeatureStore, needs: dict[str, VideoNeed], cache_dir=None, **params) -> FeatureCheck:
    """`check_feature_values` with its result cached in ``cache_dir`` (None: no cache)."""
    if cache_dir is None:
        return check_feature_values(store, needs, **params)
    cache = FeatureCheckCache(cache_dir)
    key = check_key(store, needs, params)
    hit = cache.get(key)
    if hit is not None:
        return hit
    result = check_feature_values(store, needs, **params)
    cache.put(key, result)
    return result
