"""Annotation readers: real files (counts and anomalies of shared/data/*/SOURCE.md), hand-made
anomalies, the malformed corpus (tests/fixtures/malformed) and a property test of the ActivityNet reader."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsan_lightning.data.errors import DataFormatError
from fsan_lightning.data.readers import (
    didemo_vid,
    read_activitynet,
    read_annotations,
    read_charades,
    read_didemo,
    read_durations_csv,
)
from helpers import FIXTURES

HERE = FIXTURES
GOOD, BAD = HERE / "good", HERE / "malformed"


def shared_data() -> Path | None:
    env = os.environ.get("FSAN_SHARED_DATA")
    if env:
        return Path(env)
    default = Path("/work/shared/data")
    return default if default.is_dir() else None


SHARED = shared_data()
needs_shared = pytest.mark.skipif(SHARED is None, reason="set FSAN_SHARED_DATA to the shared/data folder")


def assert_query_invariants(queries):
    qids = [q.qid for q in queries]
    assert len(qids) == len(set(qids))
    for q in queries:
        assert q.sentence == q.sentence.strip() and "\n" not in q.sentence and q.sentence
        assert q.duration > 0 and q.moments
        for s, e in q.moments:
            assert 0 <= s < e <= q.duration


# ---------------------------------------------------------------- real files (SOURCE.md)

# file -> (pairs, videos, dropped, repaired); every number follows from SOURCE.md's anomaly table:
# train: 2 reversed (swapped), 2 zero-length (dropped), 29 ends past the duration by 0.01 and 232 by a
# float artefact (clipped), 5 sentences with "\n"; val_1 / val_2 the same columns.
ANET = {
    "train.json": (37421, 10009, {"zero_length": 2},
                   {"reversed_swapped": 2, "end_clipped_past_duration": 29, "end_clipped_float_artefact": 232,
                    "sentence_had_newline": 5}),
    "val_1.json": (17505, 4917, {}, {"end_clipped_past_duration": 5, "end_clipped_float_artefact": 129,
                                     "sentence_had_newline": 2}),
    "val_2.json": (17031, 4885, {}, {"end_clipped_past_duration": 1, "end_clipped_float_artefact": 110,
                                     "sentence_had_newline": 3}),
}


@needs_shared
@pytest.mark.parametrize("name", sorted(ANET))
def test_activitynet_real_files(name):
    pairs, videos, dropped, repaired = ANET[name]
    queries, report = read_annotations("activitynet", SHARED / "activitynet_captions" / name)
    assert report.pairs == pairs
    assert dict(report.dropped) == dropped
    assert dict(report.repaired) == repaired
    assert report.queries == len(queries) == pairs - sum(dropped.values())
    assert report.videos == videos
    assert_query_invariants(queries)
    by_qid = {q.qid: q for q in queries}
    if name == "train.json":
        # the two reversed moments of SOURCE.md, swapped; the zero-length ones gone
        rev = [q for q in queries if q.vid in ("v_0bosp4-pyTM", "v_rhOtqArO-3Y")]
        assert (60.71, 61.29) in [q.moments[0] for q in rev] and (150.31, 173.44) in [q.moments[0] for q in rev]
        assert not any(q.vid in ("v_N7ppHQNikv8", "v_4rKTw99bM8g") and q.moments[0][0] in (34.77, 4.97)
                       and q.moments[0][1] - q.moments[0][0] < 1e-9 for q in queries)
        assert sorted(report.examples["dropped:zero_length"]) == sorted(
            [qid for qid in report.examples["dropped:zero_length"] if qid.split("#")[0] in
             ("v_N7ppHQNikv8", "v_4rKTw99bM8g")])
        assert len(report.examples["dropped:zero_length"]) == 2
        # "v_G836MDBhEpg end 61.14, duration 61.13" is clipped to the duration
        g = [q for q in queries if q.vid == "v_G836MDBhEpg" and q.moments[0][1] == 61.13]
        assert g and g[0].duration == 61.13
    # leading spaces are stripped and non-ASCII kept
    assert any(not q.sentence.isascii() for q in queries)
    assert all(not q.sentence.startswith(" ") for q in by_qid.values())


# (pairs, videos without extension, newline sentences): SOURCE.md counts and its "leading or trailing
# whitespace" list, 8 of whose val and 7 of whose test descriptions end in "\n"
DIDEMO = {"val_data.json": (4180, 1065, 8), "test_data.json": (4021, 1004, 7)}


@needs_shared
@pytest.mark.parametrize("name", sorted(DIDEMO))
def test_didemo_real_files(name):
    pairs, videos, newlines = DIDEMO[name]
    path = SHARED / "didemo" / name
    queries, report = read_annotations("didemo", path)
    assert report.pairs == report.queries == len(queries) == pairs
    assert report.videos == videos
    assert dict(report.dropped) == {}
    assert dict(report.repaired) == {"sentence_had_newline": newlines}
    assert_query_invariants(queries)
    raw = json.loads(path.read_text())
    assert len({r["video"] for r in raw}) == {"val_data.json": 1094, "test_data.json": 1037}[name]
    counts = {}
    for q in queries:
        counts[len(q.moments)] = counts.get(len(q.moments), 0) + 1
        assert q.duration in (25.0, 30.0)
        for s, e in q.moments:
            assert s % 5 == 0 and e % 5 == 0
    # annotators per entry (SOURCE.md): val 4 -> 4165, 7 -> 15; test 4 -> 4009, 5 -> 1, 7 -> 11
    assert counts == {"val_data.json": {4: 4165, 7: 15}, "test_data.json": {4: 4009, 5: 1, 7: 11}}[name]
    # the same video under two extensions shares one feature key
    if name == "val_data.json":
        assert didemo_vid("33234611@N00_3567949618_0bee41c6f7.mov") == "33234611@N00_3567949618_0bee41c6f7"
        assert sum(q.vid == "33234611@N00_3567949618_0bee41c6f7" for q in queries) == 5
        # one video has num_segments 5 and 6 under its two names: noted, each query keeps its own
        assert len(report.notes) == 1 and "79785633@N03_7901361222_8bb0dfc88f" in report.notes[0]


@needs_shared
def test_charades_real_files():
    d = SHARED / "charades_sta"
    durations = [d / "Charades_v1_train.csv", d / "Charades_v1_test.csv"]
    assert len(read_durations_csv(durations)) == 7985 + 1863
    queries, report = read_annotations("charades", d / "charades_sta_train.txt", durations)
    # SOURCE.md: 4 reversed lines, 3 of them also start at/after the video length (dropped), so one
    # kept swap (IOL8Q); 1805 lines end past the length, 3 of them the dropped ones
    assert report.pairs == 12408
    assert dict(report.dropped) == {"start_at_or_past_duration": 3}
    assert dict(report.repaired) == {"reversed_swapped": 1, "end_clipped_past_duration": 1805 - 3}
    assert report.queries == len(queries) == 12405
    assert report.videos == 5338 - 2  # LEOL6 and AKKWU lose their only lines
    assert sorted(report.examples["dropped:start_at_or_past_duration"]) == ["AKKWU#0", "AKKWU#1", "LEOL6#0"]
    assert [q.moments[0] for q in queries if q.vid == "IOL8Q" and q.moments[0][0] == 12.0] == [(12.0, 20.9)]
    assert_query_invariants(queries)
    queries, report = read_annotations("charades", d / "charades_sta_test.txt", durations)
    assert (report.pairs, report.queries, report.videos) == (3720, 3720, 1334)
    assert dict(report.dropped) == {} and dict(report.repaired) == {"end_clipped_past_duration": 562}


# ---------------------------------------------------------------- hand-made anomalies

def test_activitynet_anomalies_hand_checked():
    queries, report = read_activitynet(GOOD / "anet_anomalies.json")
    assert report.pairs == 8
    assert dict(report.dropped) == {"zero_length": 1, "empty_sentence": 1, "start_at_or_past_duration": 1}
    assert dict(report.repaired) == {"reversed_swapped": 1, "sentence_had_newline": 1,
                                     "end_clipped_float_artefact": 1, "end_clipped_past_duration": 1,
                                     "negative_start_clipped": 1}
    got = {q.qid: (q.sentence, q.moments) for q in queries}
    d = 70.28999999999999
    assert got == {
        "v_rev#0": ("A man slices a tomato.", ((2.0, 8.5),)),
        "v_rev#1": ("Someone washes the cup", ((0.0, 20.0),)),
        "v_over#0": ("a piñata breaks", ((60.0, d),)),
        "v_over#1": ("a boy jumps", ((10.0, d),)),
        "v_over#3": ("a girl waves", ((0.0, 3.0),)),
    }
    assert report.queries == 5 and report.videos == 2
    assert isinstance(queries[1].moments[0][0], float)  # JSON ints become floats
    assert report.examples["dropped:zero_length"] == ["v_zero#0"]


def test_charades_anomalies_hand_checked():
    durations = read_durations_csv([GOOD / "charades_durations.csv"])
    assert durations == {"AO8RW": 12.5, "LEOL6": 6.25, "Y6R7T": 29.42}
    queries, report = read_charades(GOOD / "charades_anomalies.txt", durations)
    assert report.pairs == 5  # the blank line is not a record
    assert dict(report.dropped) == {"start_at_or_past_duration": 1}
    assert dict(report.repaired) == {"reversed_swapped": 1, "end_clipped_past_duration": 2}
    assert [(q.qid, q.moments[0]) for q in queries] == [
        ("AO8RW#0", (0.0, 6.9)), ("AO8RW#1", (3.0, 6.9)), ("Y6R7T#0", (20.8, 29.42)), ("Y6R7T#1", (20.8, 29.42))]
    assert queries[3].sentence == "##person start playing on their phone."  # split on the first '##'


def test_didemo_anomalies_hand_checked():
    queries, report = read_didemo(GOOD / "didemo_anomalies.json")
    assert report.pairs == 4 and report.queries == 3 and report.videos == 2
    assert dict(report.dropped) == {"empty_sentence": 1}
    assert dict(report.repaired) == {"reversed_swapped": 1, "sentence_had_newline": 1}
    q7, q8, q9 = queries
    assert (q7.qid, q7.vid, q7.sentence, q7.duration) == ("7", "12@N00_1_ab", "the man in the hat bends over", 30.0)
    assert q7.moments == ((5.0, 10.0), (5.0, 15.0), (5.0, 15.0), (0.0, 5.0))
    assert q8.vid == q7.vid and q8.moments == ((20.0, 25.0),) * 2 + ((15.0, 25.0),) + ((20.0, 25.0),) * 2
    assert (q9.vid, q9.duration, q9.moments) == ("99@N01_2_cd", 25.0, ((0.0, 25.0),) * 4)


# ---------------------------------------------------------------- malformed corpus

MALFORMED = [
    # file, reader, words the message must contain (file name is always checked)
    ("anet_truncated.json", "activitynet", ["invalid JSON", "line 1"]),
    ("anet_list_top.json", "activitynet", ["top level", "list"]),
    ("anet_missing_duration.json", "activitynet", ["v_a", "'duration'", "missing"]),
    ("anet_missing_timestamps.json", "activitynet", ["v_a", "'timestamps'", "missing"]),
    ("anet_missing_sentences.json", "activitynet", ["v_a", "'sentences'", "missing"]),
    ("anet_mismatched.json", "activitynet", ["v_a", "2 timestamps but 1 sentences"]),
    ("anet_nonnumeric_time.json", "activitynet", ["v_a", "timestamps[0]", "expected a number", "str"]),
    ("anet_nan_duration.json", "activitynet", ["v_a", "'duration'", "finite"]),
    ("anet_inf_time.json", "activitynet", ["v_a", "timestamps[0]", "finite"]),
    ("anet_negative_duration.json", "activitynet", ["v_a", "'duration'", "positive"]),
    ("anet_three_times.json", "activitynet", ["v_a", "timestamps[0]", "[start, end]"]),
    ("anet_sentence_not_string.json", "activitynet", ["v_a", "sentences[0]", "string"]),
    ("anet_record_not_object.json", "activitynet", ["v_a", "expected an object"]),
    ("anet_empty.json", "activitynet", ["file is empty"]),
    ("anet_no_videos.json", "activitynet", ["no records"]),
    ("didemo_times_out_of_range.json", "didemo", ["[0] (annotation_id 1)", "times[0]", "outside 0..5"]),
    ("didemo_times_negative.json", "didemo", ["annotation_id 1", "times[0]", "chunk index -1"]),
    ("didemo_times_not_int.json", "didemo", ["annotation_id 1", "times[0]", "integer"]),
    ("didemo_times_empty.json", "didemo", ["annotation_id 1", "'times'", "non-empty"]),
    ("didemo_missing_num_segments.json", "didemo", ["[0]", "'num_segments'", "missing"]),
    ("didemo_object_top.json", "didemo", ["top level", "dict"]),
    ("didemo_duplicate_id.json", "didemo", ["[1] (annotation_id 1)", "duplicate"]),
    ("charades_no_separator.txt", "charades", ["line 2", "no '##'"]),
    ("charades_bad_number.txt", "charades", ["line 1", "'start'", "'zero'"]),
    ("charades_two_fields.txt", "charades", ["line 1", "VID start end"]),
    ("charades_nan.txt", "charades", ["line 1", "'end'", "finite"]),
    ("charades_unknown_video.txt", "charades", ["1 videos", "ZZZZZ", "no length"]),
    ("charades_empty.txt", "charades", ["file is empty"]),
]


@pytest.mark.parametrize("name,dataset,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_fail_with_a_clear_error(name, dataset, words):
    durations = [str(GOOD / "charades_durations.csv")] if dataset == "charades" else None
    with pytest.raises(DataFormatError) as err:
        read_annotations(dataset, BAD / name, durations)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert name in msg and err.value.file.endswith(name)
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("name,words", [("durations_bad_length.csv", ["line 2 (AO8RW)", "'length'", "'abc'"]),
                                        ("durations_no_length_column.csv", ["header", "'length'", "missing column"])])
def test_malformed_durations(name, words):
    with pytest.raises(DataFormatError) as err:
        read_durations_csv([BAD / name])
    for w in words + [name]:
        assert w in str(err.value)


def test_negative_times_are_clipped_not_fatal(tmp_path):
    p = tmp_path / "neg.json"
    p.write_text(json.dumps({"v": {"duration": 10.0, "timestamps": [[-2.0, 4.0], [-3.0, -1.0]],
                                   "sentences": ["a man", "a dog"]}}))
    queries, report = read_activitynet(p)
    assert [q.moments for q in queries] == [((0.0, 4.0),)]
    assert dict(report.repaired) == {"negative_start_clipped": 1}
    assert dict(report.dropped) == {"zero_length": 1}  # [-3, -1] -> [0, -1]: nothing left


def test_unknown_dataset_and_missing_durations():
    with pytest.raises(ValueError, match="unknown dataset"):
        read_annotations("tvr", GOOD / "anet_anomalies.json")
    with pytest.raises(ValueError, match="need duration files"):
        read_annotations("charades", GOOD / "charades_anomalies.txt")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_annotations("activitynet", GOOD / "nope.json")


# ---------------------------------------------------------------- property test

moment = st.tuples(st.one_of(st.floats(-50, 300, allow_nan=False), st.integers(-50, 300)),
                   st.one_of(st.floats(-50, 300, allow_nan=False), st.integers(-50, 300)))
video = st.fixed_dictionaries({
    "duration": st.floats(0.5, 250, allow_nan=False),
    "items": st.lists(st.tuples(moment, st.sampled_from(["a man runs", " \n", " A dog\njumps ", "ñu"])),
                      min_size=1, max_size=5)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.from_regex(r"v_[a-z]{1,6}", fullmatch=True), video, min_size=1, max_size=4))
def test_activitynet_reader_properties(tmp_path, videos):
    data = {vid: {"duration": v["duration"], "timestamps": [list(m) for m, _ in v["items"]],
                  "sentences": [s for _, s in v["items"]]} for vid, v in videos.items()}
    path = tmp_path / "prop.json"
    path.write_text(json.dumps(data))
    queries, report = read_activitynet(path)
    assert report.pairs == sum(len(v["items"]) for v in videos.values())
    assert report.queries == len(queries) == report.pairs - sum(report.dropped.values())
    assert_query_invariants(queries)
    for q in queries:  # each kept moment is the clipped, ordered raw moment
        vid, i = q.qid.split("#")
        (a, b), _ = videos[vid]["items"][int(i)]
        lo, hi = min(a, b), max(a, b)
        assert q.moments[0] == (max(0.0, float(lo)), min(float(hi), q.duration))
        assert math.isclose(q.duration, videos[vid]["duration"])
