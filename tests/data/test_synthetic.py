"""The synthetic world: real formats, determinism, caching by parameter hash, structure, learnability."""
from __future__ import annotations

import itertools
import json

import h5py
import numpy as np
import pytest

from fsan_lightning.data import synthetic as S
from fsan_lightning.baselines.prototype import max_sum_run, prototype_baseline, random_recall
from fsan_lightning.data.features import open_feature_store
from fsan_lightning.data.readers import didemo_vid, read_annotations

SMALL = {"train_videos": 12, "val_videos": 4, "test_videos": 4, "feature_dim": 24, "hidden_dim": 16, "min_rows": 20,
             "max_rows": 50}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    return {fmt: (root / fmt, S.generate(root / fmt, fmt, SMALL)) for fmt in S.FORMATS}


def test_activitynet_format(worlds):
    d, meta = worlds["activitynet"]
    store = open_feature_store(d / "sub_activitynet_v1-3.c3d.hdf5")
    for name, split in [("train.json", "train"), ("val_1.json", "val"), ("val_2.json", "test")]:
        queries, report = read_annotations("synthetic", d / name)
        assert report.queries == report.pairs == meta["splits"][split]["queries"]
        assert report.videos == meta["splits"][split]["videos"] == SMALL[f"{split}_videos"]
        assert not report.dropped
        for q in queries:
            t, dim = store.shape(q.vid)
            assert dim == 24 and 20 <= t <= 50 and q.duration == t * 1.0
            assert 0 <= q.moments[0][0] < q.moments[0][1] <= q.duration
    raw = json.loads((d / "train.json").read_text())
    first = next(iter(raw.values()))
    assert first["sentences"][1].startswith(" ")  # like the real files


def test_didemo_format(worlds):
    d, meta = worlds["didemo"]
    store = open_feature_store(d / "didemo_features.hdf5")
    queries, report = read_annotations("didemo", d / "train_data.json")
    assert report.queries == meta["splits"]["train"]["queries"] and not report.dropped
    raw = json.loads((d / "train_data.json").read_text())
    assert all(len(r["times"]) == 4 for r in raw)
    for q in queries:
        x = store.read(q.vid)
        nseg = int(q.duration / 5)
        assert x.shape == (6, 24) and nseg in (5, 6)
        assert (x[nseg:] == 0).all() and (np.abs(x[:nseg]).sum(1) > 0).all()
        assert all(s % 5 == 0 and e % 5 == 0 and e <= q.duration for s, e in q.moments)
    assert {didemo_vid(r["video"]) for r in raw} == {q.vid for q in queries}


def test_charades_format(worlds):
    d, meta = worlds["charades"]
    durations = [d / "Charades_v1_train.csv", d / "Charades_v1_test.csv"]
    store = open_feature_store(d / "charades_features.hdf5")
    for split in ("train", "val", "test"):
        queries, report = read_annotations("charades", d / f"charades_sta_{split}.txt", durations)
        assert report.pairs == meta["splits"][split]["queries"]
        assert report.queries + sum(report.dropped.values()) == report.pairs
        assert all(store.shape(q.vid) is not None for q in queries)


def test_generation_is_deterministic_and_seeded(tmp_path, worlds):
    d, _meta = worlds["activitynet"]
    S.generate(tmp_path / "again", "activitynet", SMALL)
    assert (tmp_path / "again" / "train.json").read_text() == (d / "train.json").read_text()
    with h5py.File(d / "sub_activitynet_v1-3.c3d.hdf5") as a, \
            h5py.File(tmp_path / "again" / "sub_activitynet_v1-3.c3d.hdf5") as b:
        vid = min(a)
        np.testing.assert_array_equal(a[vid]["c3d_features"][()], b[vid]["c3d_features"][()])
    S.generate(tmp_path / "other", "activitynet", {**SMALL, "seed": 1})
    assert (tmp_path / "other" / "train.json").read_text() != (d / "train.json").read_text()


def test_ensure_world_regenerates_only_on_parameter_change(tmp_path):
    assert S.ensure_world(tmp_path, SMALL) is True
    stamp = (tmp_path / "train.json").stat().st_mtime_ns
    assert S.ensure_world(tmp_path, dict(SMALL)) is False
    assert (tmp_path / "train.json").stat().st_mtime_ns == stamp
    h1 = json.loads((tmp_path / S.PARAMS_FILE).read_text())["hash"]
    assert S.ensure_world(tmp_path, {**SMALL, "noise_std": 0.7}) is True
    assert json.loads((tmp_path / S.PARAMS_FILE).read_text())["hash"] != h1


def test_bad_parameters():
    with pytest.raises(ValueError, match="unknown synthetic world parameters"):
        S.SyntheticConfig.from_dict({"noise": 1})
    with pytest.raises(ValueError, match="min_rows"):
        S.SyntheticConfig.from_dict({"min_rows": 5})
    with pytest.raises(ValueError, match="format"):
        S.generate("/tmp/never", "tvr", SMALL)


def test_world_structure():
    """Events: inside the video, disjoint, distinct factor triples sharing factors with the first;
    the sentence names the event's object and verb; moment lengths like ActivityNet's."""
    cfg = S.SyntheticConfig()
    world = S.World(cfg)
    rng = np.random.default_rng(0)
    fractions, shared = [], 0
    for i in range(150):
        rows = int(rng.integers(cfg.min_rows, cfg.max_rows + 1))
        v = world.make_video(rng, f"v{i}", rows)
        assert v.features.shape == (rows, 500) and np.isfinite(v.features).all()
        evs = v.events
        assert cfg.min_events <= len(evs) <= cfg.max_events
        triples = [(e.verb, e.obj, e.attr) for e in evs]
        assert len(set(triples)) == len(triples)
        for a, b in itertools.pairwise(evs):
            assert a.end <= b.start
        assert evs[0].start >= 0 and evs[-1].end <= rows
        shared += any(sum(x == y for x, y in zip(triples[0], t)) in (1, 2) for t in triples[1:])
        for k, e in enumerate(evs):
            fractions.append((e.end - e.start) / rows)
            text = S.describe(rng, v, k, cfg).lower()
            assert S.OBJECTS[e.obj] in text and any(f in text.split() for f in S.VERBS[e.verb])
    assert shared / 150 > 0.7
    assert 0.15 < np.median(fractions) < 0.35


def test_cli(tmp_path, capsys):
    assert S.main([str(tmp_path), "--format", "charades", "--seed", "3", "--set", "train_videos=5",
                   "--set", "val_videos=2", "--set", "test_videos=2", "--set", "feature_dim=8",
                   "--set", "max_rows=40"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["format"] == "charades" and out["splits"]["train"]["videos"] == 5
    meta = json.loads((tmp_path / S.PARAMS_FILE).read_text())
    assert meta["params"]["seed"] == 3 and meta["params"]["feature_dim"] == 8


def test_baseline_helpers():
    assert max_sum_run(np.array([-1.0, 2.0, 3.0, -10.0, 4.0])) == (1, 2)
    assert max_sum_run(np.array([-3.0, -1.0, -2.0])) == (1, 1)
    # 2 clips of a 10 s video, gt [0, 5]: segments (0,0)=[0,5] IoU 1, (0,1) IoU .5, (1,1) IoU 0
    assert random_recall(2, 10.0, (0.0, 5.0), 0.5) == pytest.approx(2 / 3)
    assert random_recall(2, 10.0, (0.0, 5.0), 0.7) == pytest.approx(1 / 3)


def test_world_is_learnable_by_a_weak_baseline(tmp_path):
    """Word prototypes from video-level means ground clearly better than random (reduced world)."""
    S.generate(tmp_path, "activitynet", {"train_videos": 250, "val_videos": 60, "test_videos": 1, "feature_dim": 128,
                                             "max_rows": 120})
    train, _ = read_annotations("synthetic", tmp_path / "train.json")
    val, _ = read_annotations("synthetic", tmp_path / "val_1.json")
    res = prototype_baseline(train, {"val": val}, open_feature_store(tmp_path / "sub_activitynet_v1-3.c3d.hdf5"), 32)
    assert res["val"]["R1@0.5"] > 1.5 * res["val"]["random_R1@0.5"]
    assert res["val"]["R1@0.3"] > 1.3 * res["val"]["random_R1@0.3"]


@pytest.mark.slow
def test_default_world_baseline(tmp_path):
    """The numbers in docs/data.md: the default world, composition beats any single word class."""
    S.generate(tmp_path, "activitynet", {})
    names = {"train": "train.json", "val": "val_1.json", "test": "val_2.json"}
    q = {s: read_annotations("synthetic", tmp_path / n)[0] for s, n in names.items()}
    assert 1350 <= len(q["train"]) <= 1650 and 350 <= len(q["val"]) <= 450 and 350 <= len(q["test"]) <= 450
    store = open_feature_store(tmp_path / "sub_activitynet_v1-3.c3d.hdf5")
    evals = {"val": q["val"], "test": q["test"]}
    full = prototype_baseline(q["train"], evals, store, 64)
    nouns = prototype_baseline(q["train"], evals, store, 64, keep_words=set(S.OBJECTS))
    for split in evals:
        assert full[split]["R1@0.5"] > 2.5 * full[split]["random_R1@0.5"]
        assert full[split]["R1@0.3"] > 1.8 * full[split]["random_R1@0.3"]
        assert full[split]["R1@0.5"] < 60  # not trivially separable
    def total(res):
        return sum(res[s][k] for s in evals for k in ("R1@0.3", "R1@0.5"))

    assert total(full) > total(nouns)


def test_independent_split_streams_fix_val_and_test_and_nest_train(tmp_path):
    generate = S.generate
    base = {"val_videos": 3, "test_videos": 3, "min_rows": 40, "max_rows": 60, "feature_dim": 16,
            "split_streams": "independent"}
    small, large = tmp_path / "small", tmp_path / "large"
    generate(small, params={**base, "train_videos": 4})
    generate(large, params={**base, "train_videos": 9})
    for name in ("val_1.json", "val_2.json"):
        assert json.loads((small / name).read_text()) == json.loads((large / name).read_text())
    a, b = json.loads((small / "train.json").read_text()), json.loads((large / "train.json").read_text())
    assert len(a) == 4 and len(b) == 9 and all(b[vid] == ann for vid, ann in a.items())  # nested
    feats = "sub_activitynet_v1-3.c3d.hdf5"
    with h5py.File(small / feats) as fa, h5py.File(large / feats) as fb:
        for vid in [*a, "v_syn_test00002"]:
            assert np.array_equal(fa[vid]["c3d_features"][()], fb[vid]["c3d_features"][()])
    # the shared stream (the default) changes val with train_videos: why the option exists
    generate(tmp_path / "shared", params={**base, "split_streams": "shared", "train_videos": 4})
    generate(tmp_path / "shared9", params={**base, "split_streams": "shared", "train_videos": 9})
    assert (tmp_path / "shared" / "val_1.json").read_text() != (tmp_path / "shared9" / "val_1.json").read_text()


def test_fields_added_later_keep_the_recorded_worlds_hash(tmp_path):
    """The embedded world's hash as cached before `repeat_fraction` existed; the field at its default is
    neither written nor hashed, and the files are the same."""
    assert S.params_hash(S.SyntheticConfig(), "activitynet") == "5a0e4b46f3636653"
    assert "repeat_fraction" not in S.SyntheticConfig().to_dict()
    explicit = S.SyntheticConfig.from_dict({"repeat_fraction": 0.0})
    assert S.params_hash(explicit, "didemo") == S.params_hash(S.SyntheticConfig(), "didemo")
    a = S.generate(tmp_path / "a", "activitynet", SMALL)
    b = S.generate(tmp_path / "b", "activitynet", {**SMALL, "repeat_fraction": 0.0})
    assert a == b
    for name in ("train.json", "val_1.json", "val_2.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert S.params_hash(S.SyntheticConfig.from_dict({"repeat_fraction": 0.5}), "activitynet") != "5a0e4b46f3636653"


def test_repeated_events_differ_only_in_their_order_words():
    """repeat_fraction: that share of videos shows one factor triple twice; the two sentences name the
    same event words and say which occurrence; the rest of the world is as before."""
    cfg = S.SyntheticConfig.from_dict({"repeat_fraction": 0.5, "feature_dim": 8, "hidden_dim": 8})
    world = S.World(cfg)
    rng = np.random.default_rng(1)
    repeated = 0
    for i in range(200):
        v = world.make_video(rng, f"v{i}", int(rng.integers(cfg.min_rows, cfg.max_rows + 1)))
        occ = [e.occurrence for e in v.events]
        assert sorted(occ) in (sorted([0] * len(occ)), sorted([0] * (len(occ) - 2) + [1, 2]))
        if 1 not in occ:
            assert len({(e.verb, e.obj, e.attr) for e in v.events}) == len(v.events)
            continue
        repeated += 1
        first, second = v.events[occ.index(1)], v.events[occ.index(2)]
        assert first.end <= second.start and (first.verb, first.obj, first.attr) == (second.verb, second.obj, second.attr)
        others = [(e.verb, e.obj, e.attr) for e in v.events if not e.occurrence]
        assert len(set(others)) == len(others) and (first.verb, first.obj, first.attr) not in others
        texts = {k: S.describe(rng, v, v.events.index(e), cfg).lower().rstrip(".").replace(",", "").split()
                 for k, e in ((1, first), (2, second))}
        for words in texts.values():  # the event's own words, the adjective always (the twin shares verb and object)
            assert S.OBJECTS[first.obj] in words and S.ATTRIBUTES[first.attr] in words
            assert any(f in words for f in S.VERBS[first.verb])
        assert "first" in texts[1] and not {"second", "later"} & set(texts[1])
        assert {"second", "later"} & set(texts[2]) and "first" not in texts[2]
    assert 0.4 < repeated / 200 < 0.6


def test_repeat_fraction_is_checked():
    for bad in ({"repeat_fraction": 1.5}, {"repeat_fraction": -0.1}, {"repeat_fraction": 0.5, "min_events": 1,
                                                                       "max_events": 1}):
        with pytest.raises(ValueError, match="repeat_fraction"):
            S.SyntheticConfig.from_dict(bad)


def test_repeated_events_are_listed_beside_the_annotations(tmp_path):
    S.generate(tmp_path, "activitynet", {**SMALL, "repeat_fraction": 1.0})
    twins = json.loads((tmp_path / S.REPEATS_FILE).read_text())
    assert set(twins) == {"train.json", "val_1.json", "val_2.json"}
    for name, pairs in twins.items():
        queries = {q.qid: q for q in read_annotations("synthetic", tmp_path / name)[0]}
        videos = {q.vid for q in queries.values()}
        assert len({q.split("#")[0] for q in pairs}) == len(videos)  # every video repeats one event
        for a, b in pairs.items():
            assert pairs[b] == a and a != b and queries[a].vid == queries[b].vid
            first, second = sorted((a, b), key=lambda q: queries[q].moments[0][0])
            assert "first" in queries[first].sentence.lower() and "first" not in queries[second].sentence.lower()
    S.generate(tmp_path, "activitynet", SMALL)  # regenerated without repeats: the list goes
    assert not (tmp_path / S.REPEATS_FILE).exists()
    for fmt in ("didemo", "charades"):
        with pytest.raises(ValueError, match="activitynet format only"):
            S.generate(tmp_path / fmt, fmt, {**SMALL, "repeat_fraction": 0.5})
