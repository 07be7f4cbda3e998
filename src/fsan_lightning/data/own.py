"""Own videos: the description file and its deterministic by-video splits.

The description file (JSONL, one object per video and line; blank lines are not records)::

    {"video": "videos/kitchen.mp4", "sentences": ["a man slices a tomato", "he fries it"]}
    {"video": "videos/park.mp4", "id": "park1", "duration": 61.5, "sentences": ["a dog runs"],
     "timestamps": [[3.0, 20.5]], "split": "test"}

- ``video`` (required): the video file, relative to the description file's folder unless absolute.
- ``sentences`` (required): a non-empty list of strings, no timestamps needed (weak supervision).
- ``id``: the video id and feature key (default: the file name without extension).
- ``duration``: seconds; absent = the duration the extractor recorded in the feature file.
- ``timestamps``: one ``[start, end]`` per sentence (seconds), used only to evaluate (validation and
  test videos need them; in training videos they are ignored).
- ``split``: ``"train"``, ``"val"`` or ``"test"`` to place the video by hand.

Splits (`split_descriptions`): whole videos, never sentences. Videos without a ``split`` go to
validation and test only if all their sentences have timestamps (the others cannot be scored); among
those, videos are ordered by the SHA-1 of their id (independent of the file order and of the seed)
and the first ``round(test_fraction * N)`` (at least 1) go to test, the next
``round(val_fraction * N)`` (at least 1) to validation, N = all videos; all others train.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import DataFormatError
from .readers import _make_query, _number, _read_text
from .records import DataReport, Query

DESCRIPTIONS_FILE = "descriptions.jsonl"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class VideoDescription:
    """One line of a description file. timestamps: None or one (start, end) per sentence."""

    vid: str
    path: Path
    sentences: tuple[str, ...]
    duration: float | None
    timestamps: tuple[tuple[float, float], ...] | None
    split: str | None
    line: int


def read_descriptions(path) -> list[VideoDescription]:
    """Parse a description file; DataFormatError naming the file, line and key for anything wrong."""
    import json

    path, text = _read_text(path)
    out: list[VideoDescription] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"line {lineno}"
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, f"invalid JSON ({exc.msg} at column {exc.colno})", where) from None
        if not isinstance(rec, dict):
            raise DataFormatError(path, f"expected a JSON object, got {type(rec).__name__}", where)
        unknown = sorted(set(rec) - {"video", "sentences", "id", "duration", "timestamps", "split"})
        if unknown:
            raise DataFormatError(path, f"unknown key(s) {unknown} (known: video, sentences, id, duration, "
                                        "timestamps, split)", where)
        video = rec.get("video")
        if not isinstance(video, str) or not video.strip():
            raise DataFormatError(path, f"expected a video file name, got {video!r}", where, "video")
        vpath = Path(video)
        vpath = vpath if vpath.is_absolute() else path.parent / vpath
        vid = rec.get("id", vpath.stem)
        if not isinstance(vid, str) or not vid or "/" in vid:
            raise DataFormatError(path, f"expected a non-empty id without '/', got {vid!r}", where, "id")
        if vid in seen:
            raise DataFormatError(path, f"video id {vid!r} already used on line {seen[vid]} (give one an "
                                        "\"id\")", where, "id")
        seen[vid] = lineno
        sentences = rec.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise DataFormatError(path, f"expected a non-empty list of sentences, got {sentences!r}", where,
                                  "sentences")
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise DataFormatError(path, f"expected a string, got {type(s).__name__}", where,
                                      f"sentences[{i}]")
        duration = None
        if rec.get("duration") is not None:
            duration = _number(rec["duration"], path, where, "duration")
            if duration <= 0:
                raise DataFormatError(path, f"duration must be positive, got {duration}", where, "duration")
        stamps = None
        if rec.get("timestamps") is not None:
            raw_stamps = rec["timestamps"]
            if not isinstance(raw_stamps, list) or len(raw_stamps) != len(sentences):
                raise DataFormatError(path, f"expected one [start, end] per sentence ({len(sentences)}), got "
                                            f"{raw_stamps!r}", where, "timestamps")
            stamps = []
            for i, st in enumerate(raw_stamps):
                if not isinstance(st, list) or len(st) != 2:
                    raise DataFormatError(path, f"expected [start, end], got {st!r}", where, f"timestamps[{i}]")
                stamps.append((_number(st[0], path, where, f"timestamps[{i}]"),
                               _number(st[1], path, where, f"timestamps[{i}]")))
            stamps = tuple(stamps)
        split = rec.get("split")
        if split is not None and split not in SPLIT_NAMES:
            raise DataFormatError(path, f"expected one of {SPLIT_NAMES}, got {split!r}", where, "split")
        out.append(VideoDescription(vid, vpath, tuple(sentences), duration, stamps, split, lineno))
    if not out:
        raise DataFormatError(path, "no records in the file")
    return out


def _hash(vid: str) -> bytes:
    return hashlib.sha1(vid.encode("utf-8")).digest()


def split_descriptions(descs: list[VideoDescription], val_fraction: float = 0.15,
                       test_fraction: float = 0.15, file="descriptions") -> dict[str, list[VideoDescription]]:
    """Assign whole videos to train / val / test (rule in the module docstring); deterministic."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    splits: dict[str, list[VideoDescription]] = {s: [] for s in SPLIT_NAMES}
    free = []
    for d in descs:
        if d.split in ("val", "test") and d.timestamps is None:
            raise DataFormatError(file, f"video {d.vid!r} is placed in {d.split} but its sentences have no "
                                        "timestamps to evaluate against", f"line {d.line}", "split")
        if d.split is not None:
            splits[d.split].append(d)
        else:
            free.append(d)
    n = len(descs)
    eligible = sorted((d for d in free if d.timestamps is not None), key=lambda d: _hash(d.vid))
    want = {s: max(1, round(f * n)) - len(splits[s]) for s, f in (("test", test_fraction), ("val", val_fraction))}
    need = sum(max(0, w) for w in want.values())
    if need > len(eligible):
        raise DataFormatError(file, f"validation and test need {need} more video(s) whose sentences all have "
                                    f"timestamps, but only {len(eligible)} of the {len(free)} videos without a "
                                    "\"split\" have them: add \"timestamps\" to some videos (evaluation only) "
                                    "or place videos with \"split\"")
    used = 0
    for s in ("test", "val"):
        splits[s] += eligible[used:used + max(0, want[s])]
        used += max(0, want[s])
    taken = {d.vid for d in eligible[:used]}
    splits["train"] += [d for d in free if d.vid not in taken]
    if len({d.vid for d in splits["train"]}) < 2:
        raise DataFormatError(file, f"weak training needs at least 2 training videos (negatives come from other "
                                    f"videos); the split leaves {len(splits['train'])}")
    for s in SPLIT_NAMES:
        splits[s].sort(key=lambda d: d.line)
    return splits


def own_queries(descs: list[VideoDescription], split: str, durations: dict[str, float], file
                ) -> tuple[list[Query], DataReport]:
    """Query records of one split. durations: video id -> seconds for videos without a "duration".

    Training videos: every sentence, moment = the whole video (a placeholder, never used in
    training). Validation / test videos: each sentence with its timestamp, repaired or dropped by the
    readers' policy (counted in the report).
    """
    report = DataReport(dataset="own", file=f"{file} [{split}]")
    queries: list[Query] = []
    for d in descs:
        duration = d.duration if d.duration is not None else durations.get(d.vid)
        if duration is None:
            raise DataFormatError(file, f"no duration for video {d.vid!r}: give \"duration\", or extract its "
                                        "features with python -m fsan_lightning.extract (which records it)",
                                  f"line {d.line}", "duration")
        for i, sentence in enumerate(d.sentences):
            report.pairs += 1
            moment = d.timestamps[i] if (split != "train" and d.timestamps) else (0.0, duration)
            q = _make_query(report, f"{d.vid}#{i}", d.vid, sentence, duration, [moment])
            if q is not None:
                queries.append(q)
    if split == "train":
        with_ts = sum(len(d.sentences) for d in descs if d.timestamps)
        if with_ts:
            report.notes.append(f"{with_ts} training sentences have timestamps: unused (weak training)")
    report.queries, report.videos = len(queries), len({q.vid for q in queries})
    return queries, report


def video_files(folder) -> list[Path]:
    """The video files directly inside a folder (by suffix, case-insensitive), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
