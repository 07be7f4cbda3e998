"""The description-file format of own videos, its by-video splits and data=own (no video decoding)."""
from __future__ import annotations

import json
import random

import h5py
import numpy as np
import pytest

from fsan_lightning.data.errors import DataFormatError
from fsan_lightning.data.own import own_queries, read_descriptions, split_descriptions
from fsan_lightning.lit.datamodule import GroundingDataModule

SPEC = {"name": "efficientnet-lite0", "weights_sha256": "579344248a93e230", "image_size": 96, "dim": 8,
        "fps": 2.0}


def write_lines(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def world(n=12, timestamped=6):
    recs = []
    for i in range(n):
        rec = {"video": f"videos/v{i:02d}.mp4", "sentences": [f"a red ball {i}", "a blue box"]}
        if i < timestamped:
            rec["timestamps"] = [[0.0, 4.0], [4.0, 10.0]]
        if i % 2:
            rec["duration"] = 10.0
        recs.append(rec)
    return recs


def write_features(path, vids, dim=8, spec=SPEC):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["fsan_backbone"] = json.dumps(spec)
        for vid in vids:
            ds = f.create_dataset(f"{vid}/c3d_features", data=rng.normal(size=(20, dim)).astype(np.float32))
            ds.attrs["times"] = (np.arange(20) + 0.5) / 2.0
            ds.attrs["duration"] = 10.0
            ds.attrs["complete"] = 1


def test_splits_are_by_video_deterministic_and_only_timestamped_videos_are_evaluated(tmp_path):
    recs = world()
    a = split_descriptions(read_descriptions(write_lines(tmp_path / "a.jsonl", recs)))
    random.Random(3).shuffle(recs)
    b = split_descriptions(read_descriptions(write_lines(tmp_path / "b.jsonl", recs)))
    names = {s: sorted(d.vid for d in a[s]) for s in a}
    assert names == {s: sorted(d.vid for d in b[s]) for s in b}  # independent of the file order
    assert len(names["val"]) == len(names["test"]) == 2 and len(names["train"]) == 8  # round(0.15 * 12)
    assert not set(names["val"]) & set(names["test"]) and not set(names["train"]) & set(names["val"])
    timestamped = {f"v{i:02d}" for i in range(6)}
    assert set(names["val"]) | set(names["test"]) <= timestamped


def test_split_by_hand_and_not_enough_timestamps(tmp_path):
    recs = world(timestamped=5)
    recs[1]["split"] = "train"
    recs[0]["split"] = "test"
    splits = split_descriptions(read_descriptions(write_lines(tmp_path / "d.jsonl", recs)))
    assert "v00" in [d.vid for d in splits["test"]] and "v01" in [d.vid for d in splits["train"]]
    assert sorted(d.vid for d in splits["test"] + splits["val"]) == ["v00", "v02", "v03", "v04"]
    recs = world(timestamped=1)
    with pytest.raises(DataFormatError, match="need 4 more video.*only 1 of the 12"):
        split_descriptions(read_descriptions(write_lines(tmp_path / "e.jsonl", recs)), file=tmp_path / "e.jsonl")
    recs = world()
    recs[8]["split"] = "val"
    with pytest.raises(DataFormatError, match="line 9.*'v08' is placed in val but its sentences have no timestamps"):
        split_descriptions(read_descriptions(write_lines(tmp_path / "f.jsonl", recs)), file="f.jsonl")


@pytest.mark.parametrize(("line", "match"), [
    ("{not json", "line 2: invalid JSON"),
    ('{"sentences": ["x"]}', "line 2, key 'video': expected a video file name"),
    ('{"video": "b.mp4", "sentences": []}', "line 2, key 'sentences': expected a non-empty list"),
    ('{"video": "b.mp4", "sentences": ["x", 3]}', "key 'sentences\\[1\\]': expected a string"),
    ('{"video": "b.mp4", "sentences": ["x"], "timestamps": [[1, 2], [3, 4]]}', "one \\[start, end\\] per sentence"),
    ('{"video": "b.mp4", "sentences": ["x"], "duration": -1}', "duration must be positive"),
    ('{"video": "b.mp4", "sentences": ["x"], "split": "dev"}', "key 'split': expected one of"),
    ('{"video": "dir/a.mp4", "sentences": ["x"]}', "video id 'a' already used on line 1"),
    ('{"video": "b.mp4", "sentences": ["x"], "caption": "y"}', "unknown key\\(s\\) \\['caption'\\]"),
])
def test_bad_description_lines_are_named(tmp_path, line, match):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"video": "a.mp4", "sentences": ["a man"]}) + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=f"d.jsonl, record {match}" if match.startswith("line") else match):
        read_descriptions(path)


def test_training_sentences_need_no_timestamps_and_durations_come_from_the_features(tmp_path):
    descs = read_descriptions(write_lines(tmp_path / "d.jsonl", world()))
    with pytest.raises(DataFormatError, match="line 1, key 'duration': no duration for video 'v00'.*extract"):
        own_queries(descs, "train", {}, tmp_path / "d.jsonl")
    qs, report = own_queries(descs, "train", {d.vid: 12.5 for d in descs}, tmp_path / "d.jsonl")
    assert [q.duration for q in qs[:4]] == [12.5, 12.5, 10.0, 10.0]  # the file's duration wins
    assert qs[0].moments == ((0.0, 12.5),) and report.queries == 24
    assert "12 training sentences have timestamps: unused" in report.notes[0]
    val, _ = own_queries(descs[:1], "val", {"v00": 12.5}, "d.jsonl")
    assert [q.moments for q in val] == [((0.0, 4.0),), ((4.0, 10.0),)]


def test_datamodule_own_reads_splits_durations_and_the_backbone(tmp_path):
    write_lines(tmp_path / "descriptions.jsonl", world())
    write_features(tmp_path / "features.h5", [f"v{i:02d}" for i in range(12)])
    dm = GroundingDataModule(dataset="own", data_dir=str(tmp_path), num_clips=8, val_fraction=0.15,
                             test_fraction=0.15, batch_size=4)
    dm.setup()
    assert {s: len(dm.queries(s)) for s in ("train", "val", "test")} == {"train": 16, "val": 4, "test": 4}
    assert dm.video_dim == 8 and dm.feature_provenance == SPEC
    assert all(q.duration == 10.0 for q in dm.queries("train"))
    report = dm.report_dict()
    assert report["features"]["backbone"] == SPEC and report["files"]["val"] is None
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 8, 8)
    missing = tmp_path / "m"
    missing.mkdir()
    write_lines(missing / "descriptions.jsonl", world())
    with pytest.raises(FileNotFoundError, match="feature file not found"):
        GroundingDataModule(dataset="own", data_dir=str(missing)).setup()
