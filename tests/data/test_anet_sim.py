"""The ActivityNet-scale world (data=anet_sim): real annotation files, simulated features, small subsets."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from fsan_lightning.data.anet_sim import (
    FEATURES_FILE,
    PARAMS_FILE,
    AnetSimConfig,
    Renderer,
    VideoSpec,
    ensure_world,
    generate,
    select_videos,
)
from fsan_lightning.data.readers import read_activitynet
from fsan_lightning.data.text import is_content, tokenize

SUBSET = 40


@pytest.fixture(scope="session")
def anet_dir(shared_data):
    return shared_data / "activitynet_captions"


@pytest.fixture(scope="session")
def small_world(anet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("anet_sim") / "subset40"
    assert ensure_world(out, anet_dir, {"subset": SUBSET})
    return out


def _features(world) -> dict[str, np.ndarray]:
    with h5py.File(world / FEATURES_FILE, "r") as f:
        return {vid: f[vid]["c3d_features"][()] for vid in f}


def _records(path) -> dict:
    return json.loads(path.read_text())


def test_annotations_are_the_real_records_and_all_usable_pairs_become_queries(small_world, anet_dir, tmp_path):
    from fsan_lightning.lit.datamodule import GroundingDataModule

    glove = tmp_path / "glove.txt"  # a tiny GloVe file: the 400k-word default costs seconds to load
    glove.write_text("man 0.1 0.2\nball -0.3 0.4\n")
    dm = GroundingDataModule("anet_sim", data_dir=small_world.parent, subset=SUBSET, annotations_dir=str(anet_dir),
                             num_clips=16, batch_size=4, glove=str(glove))
    dm.setup()
    for split, name in (("train", "train.json"), ("val", "val_1.json"), ("test", "val_2.json")):
        ours, real = _records(small_world / name), _records(anet_dir / name)
        assert ours == {v: real[v] for v in ours}  # record for record, anomalies included
        real_queries, _ = read_activitynet(anet_dir / name)
        usable = [q for q in real_queries if q.vid in ours]
        assert [q.qid for q in dm.queries(split)] == [q.qid for q in usable]
        assert dm.report[split].pairs == sum(len(r["sentences"]) for r in ours.values())
        assert dm.report[split].queries == len(usable)
    assert len(_records(small_world / "train.json")) == SUBSET


def test_every_video_has_finite_rows_at_the_configured_rate(small_world):
    feats = _features(small_world)
    durations = {}
    for name in ("train.json", "val_1.json", "val_2.json"):
        durations.update({v: r["duration"] for v, r in _records(small_world / name).items()})
    assert set(feats) == set(durations)  # one feature matrix per video, val videos once
    for vid, x in feats.items():
        assert x.dtype == np.float32 and x.shape == (max(1, round(durations[vid] * 1.875)), 500)
        assert np.isfinite(x).all()


def test_subset_is_proportional_nested_and_val_files_share_their_videos(anet_dir):
    train = _records(anet_dir / "train.json")
    val_2 = _records(anet_dir / "val_2.json")
    t100, v100 = select_videos(list(train), list(val_2), 100)
    t1000, v1000 = select_videos(list(train), list(val_2), 1000)
    assert (len(t100), len(v100), len(t1000), len(v1000)) == (100, 49, 1000, 488)  # round(N * 4885 / 10009)
    assert set(t100) < set(t1000) and set(v100) < set(v1000)  # a fixed order: smaller subsets are prefixes
    assert select_videos(list(reversed(train)), list(reversed(val_2)), 100) == (t100, v100)
    full_train, full_val = select_videos(list(train), list(val_2), None)
    assert len(full_train) == 10009 and full_val is None  # None = every video of val_1 and val_2


def test_val_1_and_val_2_annotate_the_same_videos(small_world):
    v1, v2 = _records(small_world / "val_1.json"), _records(small_world / "val_2.json")
    assert set(v1) == set(v2) and len(v1) == round(SUBSET * 4885 / 10009)
    assert not set(v1) & set(_records(small_world / "train.json"))


def test_generation_is_deterministic_and_a_video_does_not_depend_on_the_subset(small_world, anet_dir, tmp_path):
    again = tmp_path / "again"
    generate(again, anet_dir, {"subset": SUBSET}, workers=2)  # worker processes change nothing
    a, b = _features(small_world), _features(again)
    assert a.keys() == b.keys() and all(np.array_equal(a[v], b[v]) for v in a)
    for name in ("train.json", "val_1.json", "val_2.json"):
        assert (again / name).read_text() == (small_world / name).read_text()
    bigger = tmp_path / "bigger"
    generate(bigger, anet_dir, {"subset": 60})
    c = _features(bigger)
    assert set(a) < set(c) and all(np.array_equal(a[v], c[v]) for v in a)
    spec = _spec([(0.0, 20.0, "A man kicks a red ball.")])
    assert np.array_equal(Renderer(AnetSimConfig()).render(spec), Renderer(AnetSimConfig()).render(spec))
    assert not np.allclose(Renderer(AnetSimConfig()).render(spec), Renderer(AnetSimConfig(seed=1)).render(spec))


def test_cache_is_reused_and_regenerated_when_a_parameter_changes(small_world, anet_dir, tmp_path):
    out = tmp_path / "w"
    assert ensure_world(out, anet_dir, {"subset": 10}) is True
    stamp = (out / FEATURES_FILE).stat().st_mtime_ns
    assert ensure_world(out, anet_dir, {"subset": 10}) is False
    assert (out / FEATURES_FILE).stat().st_mtime_ns == stamp
    first = _features(out)
    assert ensure_world(out, anet_dir, {"subset": 10, "noise_std": 1.0}) is True
    second = _features(out)
    assert first.keys() == second.keys() and not any(np.allclose(first[v], second[v]) for v in first)
    meta = json.loads((out / PARAMS_FILE).read_text())
    assert meta["params"]["noise_std"] == 1.0 and meta["splits"]["train"]["videos"] == 10
    # an incomplete world (no parameters file: generation was interrupted) is regenerated
    (out / PARAMS_FILE).unlink()
    assert ensure_world(out, anet_dir, {"subset": 10, "noise_std": 1.0}) is True
    with pytest.raises(ValueError, match="unknown anet_sim parameters"):
        ensure_world(out, anet_dir, {"subset": 10, "noise": 1.0})
    with pytest.raises(FileNotFoundError, match="annotations_dir"):
        ensure_world(tmp_path / "x", tmp_path / "nowhere", {"subset": 10})


def _spec(sentences):
    return VideoSpec("v_test", 60.0, [(s, e, tuple(dict.fromkeys(w for w in tokenize(t) if is_content(w))))
                                      for s, e, t in sentences])


def test_features_depend_only_on_what_the_rendering_implies():
    r = Renderer(AnetSimConfig())
    base = r.render(_spec([(0.0, 20.0, "A man kicks a red ball."), (35.0, 50.0, "The dog jumps over a fence.")]))
    # function words, punctuation, case and the order of the captions are not in the video
    same = r.render(_spec([(35.0, 50.0, "then THE dog jumps over the fence"), (0.0, 20.0, "man kicks the red ball")]))
    assert np.array_equal(base, same)
    # another word in the second event changes the rows it covers; without the video-wide context
    # term, not the rows far from it; with it, those rows far less than the covered ones
    first, second = [(0.0, 20.0, "A man kicks a red ball."), (35.0, 50.0, "The dog jumps over a fence.")], \
        [(0.0, 20.0, "A man kicks a red ball."), (35.0, 50.0, "The dog jumps over a wall.")]
    secs = (np.arange(base.shape[0]) + 0.5) / 1.875
    far = (secs < 35.0 - 10 * r.cfg.edge_s) | (secs > 50.0 + 10 * r.cfg.edge_s)
    inside = (secs > 38.0) & (secs < 47.0)
    local = Renderer(AnetSimConfig(context_scale=0.0))
    a, b = local.render(_spec(first)), local.render(_spec(second))
    assert np.abs(a[far] - b[far]).max() < 1e-3
    assert np.abs(a[inside] - b[inside]).mean() > 0.05
    a, b = r.render(_spec(first)), r.render(_spec(second))
    assert np.abs(a[far] - b[far]).mean() < 0.5 * np.abs(a[inside] - b[inside]).mean()


def test_the_world_carries_signal_in_the_direction_of_the_words(small_world):
    """Each word's direction, estimated on the training captions (mean inside minus mean outside their
    moments), separates the rows inside a val_2 sentence's moment from the rows outside it more often
    than chance (0.5)."""
    feats = _features(small_world)

    def moments(name):
        for vid, rec in _records(small_world / name).items():
            x = feats[vid]
            secs = (np.arange(x.shape[0]) + 0.5) / 1.875
            for (s, e), sentence in zip(rec["timestamps"], rec["sentences"]):
                inside = (secs >= min(s, e)) & (secs <= max(s, e))
                if inside.any() and not inside.all():  # whole-video moments have no outside
                    yield x, inside, [w for w in tokenize(sentence) if is_content(w)]

    sums, counts = {}, {}
    for x, inside, words in moments("train.json"):
        d = x[inside].mean(axis=0) - x[~inside].mean(axis=0)
        for w in set(words):
            sums[w] = sums.get(w, 0) + d
            counts[w] = counts.get(w, 0) + 1
    wins, total = 0, 0
    for x, inside, words in moments("val_2.json"):
        known = [sums[w] / counts[w] for w in words if w in sums]
        if known:
            score = x @ np.mean(known, axis=0)
            wins += score[inside].mean() > score[~inside].mean()
            total += 1
    assert total >= 50
    assert wins / total > 0.62  # measured 0.70 (43 of 61); chance 0.5
