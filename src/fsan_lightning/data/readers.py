"""Annotation readers: ActivityNet Captions (and the synthetic world), DiDeMo, Charades-STA.

Each reader turns one annotation file into a list of `Query` records plus a `DataReport`.

Policy for bad records (the same for every format):
- repaired, counted per reason (on the records that are kept): reversed moments are swapped
  (``reversed_swapped``); negative starts are set to 0 (``negative_start_clipped``); ends past the
  duration are set to the duration, counted apart when the excess is only a float-representation
  artefact (``end_clipped_float_artefact``, <= 1e-6 relative) or real (``end_clipped_past_duration``);
  sentences are stripped and every whitespace run (newlines included) becomes one space; sentences
  that contained a newline are counted (``sentence_had_newline``).
- dropped, counted per reason: a start at or past the duration (``start_at_or_past_duration``), a
  moment of zero length after repair (``zero_length``), an empty sentence (``empty_sentence``).
- anything else (bad JSON, wrong top-level type, missing keys, wrong types, NaN/inf, mismatched list
  lengths, DiDeMo chunk indices outside ``0..num_segments-1``, Charades lines without ``##``, videos
  without a duration, empty files) raises `DataFormatError` naming the file, the record and the key.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from pathlib import Path

from .errors import DataFormatError
from .records import DataReport, Query

#: datasets `read_annotations` understands ("synthetic" and "anet_sim" files use the ActivityNet format)
DATASETS = ("activitynet", "synthetic", "didemo", "charades", "own", "anet_sim")

#: default file names per dataset (train, val, test, features, durations); relative to data_dir.
#: Charades-STA has no validation split: val None = a held-out share of the training videos.
DATASET_DEFAULTS: dict[str, dict] = {
    "activitynet": {"train": "train.json", "val": "val_1.json", "test": "val_2.json",
                    "features": "sub_activitynet_v1-3.c3d.hdf5", "durations": None},
    "synthetic": {"train": "train.json", "val": "val_1.json", "test": "val_2.json",
                  "features": "sub_activitynet_v1-3.c3d.hdf5", "durations": None},
    "anet_sim": {"train": "train.json", "val": "val_1.json", "test": "val_2.json",
                 "features": "sub_activitynet_v1-3.c3d.hdf5", "durations": None},
    "didemo": {"train": "train_data.json", "val": "val_data.json", "test": "test_data.json",
               "features": "didemo_features.hdf5", "durations": None},
    "charades": {"train": "charades_sta_train.txt", "val": None,
                 "test": "charades_sta_test.txt", "features": "charades_features.hdf5",
                 "durations": ["Charades_v1_train.csv", "Charades_v1_test.csv"]},
    # own videos (fsan_lightning.data.own): one description file, split by video; features by extract
    "own": {"train": "descriptions.jsonl", "val": None, "test": None, "features": "features.h5",
            "durations": None},
}

#: DiDeMo chunk length in seconds
DIDEMO_CHUNK_S = 5.0
#: relative tolerance under which an end past the duration counts as a float artefact
FLOAT_TOL = 1e-6


def read_annotations(dataset: str, path, durations: list[str] | None = None
                     ) -> tuple[list[Query], DataReport]:
    """Read one annotation file of ``dataset`` into Query records and a report of what was done.

    dataset: "activitynet", "synthetic", "anet_sim" (ActivityNet format), "didemo" or "charades".
    durations: Charades only, the Charades_v1_{train,test}.csv files giving each video's length.
    """
    if dataset in ("activitynet", "synthetic", "anet_sim"):
        return read_activitynet(path, dataset=dataset)
    if dataset == "didemo":
        return read_didemo(path)
    if dataset == "charades":
        if not durations:
            raise ValueError(f"charades annotations {path} need duration files "
                             "(Charades_v1_train.csv / Charades_v1_test.csv): pass durations=[...]")
        return read_charades(path, read_durations_csv(durations))
    if dataset == "own":
        raise ValueError("own videos are one description file split by video: read it with "
                         "fsan_lightning.data.own (GroundingDataModule(dataset='own') does)")
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")


# ---------------------------------------------------------------------------------------------
# shared helpers

def _read_text(path) -> tuple[Path, str]:
    """(path, text) of a non-empty UTF-8 annotation file; clear errors otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not UTF-8 text ({exc})") from None
    if not text.strip():
        raise DataFormatError(path, "file is empty")
    return path, text


def _load_json(path):
    path, text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
                              ) from None


def _number(value, file, record, key) -> float:
    """A finite JSON number as float; bools, strings, None, NaN and inf are errors."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataFormatError(file, f"expected a number, got {type(value).__name__} {value!r}",
                              record, key)
    out = float(value)
    if not math.isfinite(out):
        raise DataFormatError(file, f"expected a finite number, got {value!r}", record, key)
    return out


def _clean_sentence(text: str) -> tuple[str, bool]:
    """Strip, and turn every run of whitespace (newlines included) into one space.

    Returns the cleaned text and whether it contained a newline.
    """
    had_newline = "\n" in text or "\r" in text
    return " ".join(text.split()), had_newline


def _clean_moment(s: float, e: float, duration: float) -> tuple[tuple[float, float] | None, list[str], str]:
    """Apply the repair policy to one moment in seconds.

    Returns (moment or None, repairs applied, drop reason or "").
    """
    repairs = []
    if s > e:
        s, e = e, s
        repairs.append("reversed_swapped")
    if s >= duration:
        return None, repairs, "start_at_or_past_duration"
    if s < 0:
        s = 0.0
        repairs.append("negative_start_clipped")
    if e > duration:
        artefact = e - duration <= FLOAT_TOL * max(1.0, duration)
        repairs.append("end_clipped_float_artefact" if artefact else "end_clipped_past_duration")
        e = duration
    if e <= s:
        return None, repairs, "zero_length"
    return (s, e), repairs, ""


def _finish(report: DataReport, queries: list[Query], path) -> tuple[list[Query], DataReport]:
    report.queries = len(queries)
    report.videos = len({q.vid for q in queries})
    assert report.queries == report.pairs - sum(report.dropped.values())
    if report.pairs == 0:
        raise DataFormatError(path, "no records in the file")
    return queries, report


# ---------------------------------------------------------------------------------------------
# ActivityNet Captions

def read_activitynet(path, dataset: str = "activitynet") -> tuple[list[Query], DataReport]:
    """``{video_id: {"duration": s, "timestamps": [[s, e], ...], "sentences": [str, ...]}}``.

    qid = ``"<video_id>#<index in the video's list>"``.
    """
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, "top level must be a JSON object {video_id: {duration, timestamps, "
                                    f"sentences}}, got a {type(data).__name__}")
    report = DataReport(dataset=dataset, file=str(path))
    queries: list[Query] = []
    for vid, rec in data.items():
        if not isinstance(rec, dict):
            raise DataFormatError(path, f"expected an object, got {type(rec).__name__}", vid)
        for key in ("duration", "timestamps", "sentences"):
            if key not in rec:
                raise DataFormatError(path, "missing key", vid, key)
        duration = _number(rec["duration"], path, vid, "duration")
        if duration <= 0:
            raise DataFormatError(path, f"duration must be positive, got {duration}", vid, "duration")
        stamps, sentences = rec["timestamps"], rec["sentences"]
        if not isinstance(stamps, list):
            raise DataFormatError(path, f"expected a list, got {type(stamps).__name__}", vid, "timestamps")
        if not isinstance(sentences, list):
            raise DataFormatError(path, f"expected a list, got {type(sentences).__name__}", vid, "sentences")
        if len(stamps) != len(sentences):
            raise DataFormatError(path, f"{len(stamps)} timestamps but {len(sentences)} sentences", vid,
                                  "timestamps")
        for i, (stamp, sentence) in enumerate(zip(stamps, sentences)):
            key = f"timestamps[{i}]"
            if not isinstance(stamp, list) or len(stamp) != 2:
                raise DataFormatError(path, f"expected [start, end], got {stamp!r}", vid, key)
            s = _number(stamp[0], path, vid, key)
            e = _number(stamp[1], path, vid, key)
            if not isinstance(sentence, str):
                raise DataFormatError(path, f"expected a string, got {type(sentence).__name__}", vid,
                                      f"sentences[{i}]")
            report.pairs += 1
            qid = f"{vid}#{i}"
            q = _make_query(report, qid, vid, sentence, duration, [(s, e)])
            if q is not None:
                queries.append(q)
    return _finish(report, queries, path)


def _make_query(report: DataReport, qid: str, vid: str, sentence: str, duration: float,
                moments: list[tuple[float, float]]) -> Query | None:
    """Clean the sentence and moments; count repairs (kept records only) or the drop reason."""
    text, had_newline = _clean_sentence(sentence)
    if not text:
        report.drop("empty_sentence", qid)
        return None
    cleaned, repairs = [], []
    for s, e in moments:
        m, reps, reason = _clean_moment(s, e, duration)
        if m is None:
            report.drop(reason, qid)
            return None
        cleaned.append(m)
        repairs.extend(reps)
    if had_newline:
        repairs.append("sentence_had_newline")
    for r in dict.fromkeys(repairs):  # one count per record and reason
        report.repair(r, qid)
    return Query(qid=qid, vid=vid, sentence=text, duration=duration, moments=tuple(cleaned))


# ---------------------------------------------------------------------------------------------
# DiDeMo

def didemo_vid(video: str) -> str:
    """Feature key of a DiDeMo video name: the name without its extension ("a.mov" -> "a", "a." -> "a")."""
    return os.path.splitext(video)[0]


def read_didemo(path) -> tuple[list[Query], DataReport]:
    """A JSON list of ``{video, description, times, annotation_id, num_segments, ...}``.

    ``times`` are inclusive 5-second chunk indices, one pair per annotator; each becomes the moment
    ``[5 s, 5 (e + 1)]`` seconds; duration = ``5 * num_segments``; qid = ``str(annotation_id)``;
    vid = video name without extension.
    """
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataFormatError(path, "top level must be a JSON list of {video, description, times, "
                                    f"annotation_id, num_segments}}, got a {type(data).__name__}")
    report = DataReport(dataset="didemo", file=str(path))
    queries: list[Query] = []
    seen_ids: set[str] = set()
    segments_of: dict[str, int] = {}
    noted: set[str] = set()
    for idx, rec in enumerate(data):
        where = f"[{idx}]"
        if not isinstance(rec, dict):
            raise DataFormatError(path, f"expected an object, got {type(rec).__name__}", where)
        for key in ("video", "description", "times", "annotation_id", "num_segments"):
            if key not in rec:
                raise DataFormatError(path, "missing key", where, key)
        aid = rec["annotation_id"]
        if isinstance(aid, bool) or not isinstance(aid, (int, str)):
            raise DataFormatError(path, f"expected an int or string, got {aid!r}", where, "annotation_id")
        qid = str(aid)
        where = f"[{idx}] (annotation_id {qid})"
        if qid in seen_ids:
            raise DataFormatError(path, "duplicate annotation_id", where, "annotation_id")
        seen_ids.add(qid)
        video = rec["video"]
        if not isinstance(video, str) or not didemo_vid(video):
            raise DataFormatError(path, f"expected a video file name, got {video!r}", where, "video")
        nseg = rec["num_segments"]
        if isinstance(nseg, bool) or not isinstance(nseg, int) or nseg <= 0:
            raise DataFormatError(path, f"expected a positive int, got {nseg!r}", where, "num_segments")
        vid = didemo_vid(video)
        # the same video under two extensions can disagree (1 video in the real val file): each
        # query keeps its own num_segments; the report notes the video
        first = segments_of.setdefault(vid, nseg)
        if first != nseg and vid not in noted:
            noted.add(vid)
            report.notes.append(f"video {vid}: num_segments {first} and {nseg} in different records "
                                f"(e.g. {where}); each query uses its own")
        desc = rec["description"]
        if not isinstance(desc, str):
            raise DataFormatError(path, f"expected a string, got {type(desc).__name__}", where, "description")
        times = rec["times"]
        if not isinstance(times, list) or not times:
            raise DataFormatError(path, f"expected a non-empty list of [start, end], got {times!r}", where,
                                  "times")
        moments = []
        for j, pair in enumerate(times):
            key = f"times[{j}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise DataFormatError(path, f"expected [start_chunk, end_chunk], got {pair!r}", where, key)
            for v in pair:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise DataFormatError(path, f"expected integer chunk indices, got {pair!r}", where, key)
                if not 0 <= v < nseg:
                    raise DataFormatError(path, f"chunk index {v} outside 0..{nseg - 1} "
                                                f"(num_segments {nseg})", where, key)
            s, e = pair
            # swap here (in chunk units) so that [5 s, 5 (e + 1)] stays the inclusive-chunk moment
            moments.append((s, e))
        report.pairs += 1
        swapped = any(s > e for s, e in moments)
        secs = [(DIDEMO_CHUNK_S * min(s, e), DIDEMO_CHUNK_S * (max(s, e) + 1)) for s, e in moments]
        q = _make_query(report, qid, vid, desc, DIDEMO_CHUNK_S * nseg, secs)
        if q is not None:
            queries.append(q)
            if swapped:
                report.repair("reversed_swapped", qid)
    return _finish(report, queries, path)


# ---------------------------------------------------------------------------------------------
# Charades-STA

def read_durations_csv(paths) -> dict[str, float]:
    """Video lengths in seconds from Charades_v1_{train,test}.csv (columns ``id`` and ``length``)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: dict[str, float] = {}
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"durations file not found: {path}") from None
        if not text.strip():
            raise DataFormatError(path, "file is empty")
        reader = csv.DictReader(text.splitlines())
        for col in ("id", "length"):
            if col not in (reader.fieldnames or []):
                raise DataFormatError(path, f"missing column (header is {reader.fieldnames})", "header", col)
        for row_no, row in enumerate(reader, start=2):
            vid = (row["id"] or "").strip()
            where = f"line {row_no} ({vid})"
            try:
                length = float(row["length"])
            except (TypeError, ValueError):
                raise DataFormatError(path, f"expected a number, got {row['length']!r}", where,
                                      "length") from None
            if not math.isfinite(length) or length <= 0:
                raise DataFormatError(path, f"length must be a positive finite number, got {length}",
                                      where, "length")
            if vid in out and out[vid] != length:
                raise DataFormatError(path, f"video {vid} has length {length} here but {out[vid]} in an "
                                            "earlier row or file", where, "length")
            out[vid] = length
    return out


def read_charades(path, durations: dict[str, float]) -> tuple[list[Query], DataReport]:
    """Lines ``VID start end##sentence``; durations from `read_durations_csv`.

    qid = ``"<VID>#<k>"`` with k the k-th line of that video in the file. Blank lines are not records.
    """
    path, text = _read_text(path)
    report = DataReport(dataset="charades", file=str(path))
    queries: list[Query] = []
    occurrences: Counter = Counter()
    no_duration: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        if "##" not in line:
            raise DataFormatError(path, f"expected 'VID start end##sentence', no '##' in {line!r}", where)
        head, sentence = line.split("##", 1)
        parts = head.split()
        if len(parts) != 3:
            raise DataFormatError(path, f"expected 'VID start end' before '##', got {head!r}", where)
        vid = parts[0]
        times = []
        for key, raw in zip(("start", "end"), parts[1:]):
            try:
                value = float(raw)
            except ValueError:
                raise DataFormatError(path, f"expected a number, got {raw!r}", where, key) from None
            if not math.isfinite(value):
                raise DataFormatError(path, f"expected a finite number, got {raw!r}", where, key)
            times.append(value)
        if vid not in durations:
            no_duration.append(vid)
            continue
        k = occurrences[vid]
        occurrences[vid] += 1
        report.pairs += 1
        q = _make_query(report, f"{vid}#{k}", vid, sentence, durations[vid], [tuple(times)])
        if q is not None:
            queries.append(q)
    if no_duration:
        missing = sorted(set(no_duration))
        raise DataFormatError(path, f"{len(missing)} videos ({len(no_duration)} lines) have no length in "
                                    f"the durations files, e.g. {missing[:5]}")
    return _finish(report, queries, path)
