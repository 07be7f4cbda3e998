"""Decoding and feature extraction of video files: registry sample files and self-written videos."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from fsan_lightning import extract as extract_cli
from fsan_lightning.data.video.backbone import (
    BackboneError,
    EfficientNetLite0,
    check_state_dict,
    load_backbone,
)
from fsan_lightning.data.video.decode import DecodeError, sample_frames
from fsan_lightning.data.video.extractor import (
    FeatureFileMismatch,
    VideoItem,
    encode_frames,
    extract_many,
    video_times,
)
from helpers import colour_video, sample_video

RED, BLUE, GREEN = (220, 20, 20), (20, 40, 220), (20, 200, 40)


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return load_backbone("efficientnet-lite0", image_size=96)


def test_weights_fit_the_architecture_exactly_and_classify_a_real_frame():
    enc = load_backbone()  # strict, weights-only
    assert enc.dim == 1280 and len(enc.weights_sha256) == 16
    video = sample_frames(sample_video("carphone_pristine.mp4"), fps=1.0, size=224)
    with torch.inference_mode():
        x = (torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        probs = enc.net(x).softmax(-1)
    # a man in a suit talking in a car: ImageNet 457 "bow tie" on every frame, confidently (with the
    # symmetric padding of a mismatched architecture the mean confidence drops to 0.39)
    assert (probs.argmax(-1) == 457).all()
    assert probs.max(-1).values.mean() > 0.55


def test_a_state_dict_that_does_not_fit_is_refused():
    state = EfficientNetLite0().state_dict()
    check_state_dict(state, "w.pth")
    bad = dict(state)
    bad.pop("_fc.bias")
    with pytest.raises(BackboneError, match="w.pth.*1 missing.*_fc.bias"):
        check_state_dict(bad, "w.pth")
    bad = dict(state)
    bad["_conv_head.weight"] = torch.zeros(1280, 320, 3, 3)
    with pytest.raises(BackboneError, match="shapes differ.*_conv_head.weight"):
        check_state_dict(bad, "w.pth")


SAMPLES = (("bikes.mp4", 10.0, (640, 272)), ("carphone_distorted.mp4", 4.004, (176, 144)),
           pytest.param("bigbuckbunny.mp4", 5.28, (1280, 720), marks=pytest.mark.slow))  # 720p: 1.5 s


@pytest.mark.parametrize(("name", "duration", "size"), SAMPLES)
def test_sample_files_decode_with_known_durations_and_times(name, duration, size):
    w, h = size
    v = sample_frames(sample_video(name), fps=2.0, size=32)
    assert v.duration == pytest.approx(duration, abs=1e-3)
    assert (v.width, v.height) == (w, h)
    k = np.arange(len(v.times))
    assert len(v.times) == int(np.ceil(duration * 2.0 - 0.5)), name
    # each row is the last frame shown at (k + 0.5) / fps: within one native frame before it
    assert np.all(v.times <= (k + 0.5) / 2.0 + 1e-9) and np.all(v.times > (k + 0.5) / 2.0 - 1.0 / v.native_fps)
    assert v.frames.shape == (len(k), 32, 32, 3) and v.frames.dtype == np.uint8


def test_segments_of_known_colours_give_distinct_features(tmp_path, encoder):
    path = colour_video(tmp_path / "rgb.mp4", [RED, BLUE, GREEN], seconds_each=2.0)
    feats, video = extract_many_one(path, encoder, tmp_path)
    assert feats.shape == (12, 1280) and feats.dtype == np.float32
    # frame pts: the frames at 0.25, 0.75, ... s of the 8 fps file (the last one shown at (k + 0.5) / 2)
    np.testing.assert_allclose(video[0], (np.arange(12) + 0.5) / 2.0, atol=1e-6)
    assert video[1] == pytest.approx(6.0)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    cos = unit @ unit.T
    seg = np.arange(12) // 4
    same, diff = cos[seg[:, None] == seg[None, :]], cos[seg[:, None] != seg[None, :]]
    assert same.min() > 0.99 and diff.max() < 0.9 and same.min() - diff.max() > 0.1


def extract_many_one(path, encoder, tmp_path):
    out = tmp_path / "one.h5"
    report = extract_many([VideoItem("v", path)], out, encoder, fps=2.0, progress=False)
    assert report.extracted == ["v"]
    with h5py.File(out) as f:
        feats = f["v/c3d_features"][()]
    return feats, video_times(out, "v")


def test_the_same_frame_gives_the_same_feature(tmp_path, encoder):
    frames = sample_frames(sample_video("bikes.mp4"), fps=0.5, size=96).frames
    a = encode_frames(encoder, frames, batch_size=2)
    b = encode_frames(encoder, frames[::-1].copy(), batch_size=5)[::-1]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # batching and order do not matter
    again = sample_frames(sample_video("bikes.mp4"), fps=0.5, size=96).frames
    np.testing.assert_array_equal(frames, again)  # decoding is deterministic


def test_bad_files_are_reported_and_skipped_and_a_rerun_skips_finished_videos(tmp_path, encoder):
    good = colour_video(tmp_path / "good.mp4", [RED, BLUE], seconds_each=1.0)
    truncated = tmp_path / "truncated.mp4"
    data = colour_video(tmp_path / "full.mp4", [GREEN, RED], seconds_each=2.0).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    out = tmp_path / "feats.h5"
    rc = extract_cli.main([str(good), str(truncated), str(text), str(sample_video("carphone_distorted.mp4")),
                           "--out", str(out), "--fps", "2", "--image-size", "96", "--no-progress"])
    assert rc == 1
    report = json.loads((tmp_path / "feats.h5.report.json").read_text())
    assert report["extracted"] == ["good", "carphone_distorted"]
    failed = {f["vid"]: f for f in report["failed"]}
    assert set(failed) == {"truncated", "notes"}
    assert failed["notes"]["file"] == str(text) and "not a readable media file" in failed["notes"]["error"]
    with h5py.File(out) as f:
        assert sorted(f) == ["carphone_distorted", "good"]
        assert f["good/c3d_features"].shape == (4, 1280)
        assert json.loads(f.attrs["fsan_backbone"])["fps"] == 2.0
        first = f["carphone_distorted/c3d_features"][()]
    # rerun: finished videos are skipped, the bad ones are tried (and reported) again
    rc = extract_cli.main([str(good), str(sample_video("carphone_distorted.mp4")), "--out", str(out), "--fps", "2",
                           "--image-size", "96", "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "feats.h5.report.json").read_text())
    assert report["skipped_existing"] == ["good", "carphone_distorted"] and report["extracted"] == []
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["carphone_distorted/c3d_features"][()], first)


def test_a_partial_video_is_redone_and_other_settings_are_refused(tmp_path, encoder):
    good = colour_video(tmp_path / "good.mp4", [RED, BLUE], seconds_each=1.0)
    out = tmp_path / "feats.h5"
    extract_many([VideoItem("good", good)], out, encoder, fps=2.0, progress=False)
    with h5py.File(out, "a") as f:  # as if killed while writing: no "complete" mark
        del f["good/c3d_features"].attrs["complete"]
    report = extract_many([VideoItem("good", good)], out, encoder, fps=2.0, progress=False)
    assert report.extracted == ["good"] and report.skipped_existing == []
    with pytest.raises(FeatureFileMismatch, match="fps.*write to a new file"):
        extract_many([VideoItem("good", good)], out, encoder, fps=1.0, progress=False)
    with pytest.raises(ValueError, match="two videos have the id 'good'"):
        extract_many([VideoItem("good", good), VideoItem("good", good)], tmp_path / "x.h5", encoder, progress=False)


def test_decode_errors_name_the_file(tmp_path):
    with pytest.raises(DecodeError, match="missing.mp4: file not found"):
        sample_frames(tmp_path / "missing.mp4", 1.0, 32)
    (tmp_path / "x.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(DecodeError, match="x.mp4: not a readable media file"):
        sample_frames(tmp_path / "x.mp4", 1.0, 32)


def test_cli_collects_folders_lists_and_description_files(tmp_path):
    a = colour_video(tmp_path / "vids" / "a.mp4", [RED], seconds_each=0.5)
    colour_video(tmp_path / "vids" / "b.mp4", [BLUE], seconds_each=0.5)
    (tmp_path / "vids" / "readme.txt").write_text("x")
    (tmp_path / "list.txt").write_text("vids/b.mp4\n# a comment\n\n")
    (tmp_path / "d.jsonl").write_text(json.dumps({"video": "vids/a.mp4", "id": "alpha", "sentences": ["x"]}) + "\n")
    items = extract_cli.collect_videos([tmp_path / "vids", tmp_path / "list.txt", tmp_path / "d.jsonl"])
    assert [(i.vid, i.path.name) for i in items] == [("a", "a.mp4"), ("b", "b.mp4"), ("b", "b.mp4"),
                                                    ("alpha", "a.mp4")]
    assert items[-1].path == a
    assert extract_cli.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "o.h5")]) == 2
