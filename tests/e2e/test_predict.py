"""The predictor API and CLI on the tiny trained run: same moments as train/eval, schema, clear errors."""
from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fsan_lightning.data.text import tokenize
from fsan_lightning.lit.checkpoint import CheckpointError
from fsan_lightning.predictor import FSANPredictor, GroundingRequest, PredictError, UnknownWordsWarning
from fsan_lightning.predict import main
from helpers import assert_same_windows, read_features

FEATURES = "sub_activitynet_v1-3.c3d.hdf5"
KEYS = {"query", "duration", "pred_relevant_windows", "alignment", "tokens", "unknown_words"}


@pytest.fixture(scope="module")
def ckpt(trained_run) -> str:
    return trained_run[1]["checkpoint"]


@pytest.fixture(scope="module")
def predictor(ckpt) -> FSANPredictor:
    torch.set_num_threads(1)
    return FSANPredictor.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def test_rows(trained_run) -> list[dict]:
    run_dir = trained_run[0]
    return [json.loads(line) for line in (run_dir / "predictions_test.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def busiest_video(test_rows) -> tuple[str, list[dict]]:
    """The test video with the most queries and its rows of predictions_test.jsonl."""
    by_vid: dict[str, list[dict]] = {}
    for row in test_rows:
        by_vid.setdefault(row["vid"], []).append(row)
    vid = max(by_vid, key=lambda v: (len(by_vid[v]), v))
    return vid, by_vid[vid]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------- equality
def test_checkpoint_records_the_data_side(predictor, trained_run):
    cfg = trained_run[2]
    assert (predictor.num_clips, predictor.max_tokens) == (cfg.data.num_clips, cfg.data.max_tokens) == (16, 20)
    assert predictor.video_dim == 32 and not predictor.chunked
    assert predictor.vocab.words[:2] == ["<pad>", "<unk>"]


def test_cli_queries_file_reproduces_the_test_predictions(ckpt, trained_run, tiny_world_dir, test_rows, tmp_path,
                                                          capsys):
    run_dir = trained_run[0]
    out = tmp_path / "preds.jsonl"
    rc, _, err = run_cli(capsys, "--ckpt", ckpt, "--features", tiny_world_dir / FEATURES,
                         "--queries", run_dir / "predictions_test.jsonl", "--out", out)
    assert rc == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(test_rows) > 0
    for row, ref in zip(rows, test_rows):
        assert set(row) == {"qid", "vid", "query", "duration", "pred_relevant_windows"}
        assert (row["qid"], row["vid"], row["query"], row["duration"]) == (
            ref["qid"], ref["vid"], ref["query"], ref["duration"])
        assert_same_windows(row["pred_relevant_windows"], ref["pred_relevant_windows"])


def test_api_batches_the_queries_of_one_video(predictor, tiny_world_dir, busiest_video):
    vid, refs = busiest_video
    assert len(refs) >= 2
    feats = read_features(tiny_world_dir, vid)
    results = predictor.predict([r["query"] for r in refs], feats, refs[0]["duration"])
    assert [r["query"] for r in results] == [r["query"] for r in refs]
    for got, ref in zip(results, refs):
        assert_same_windows(got["pred_relevant_windows"], ref["pred_relevant_windows"])
    # one query alone (no padding) and batches of one row give the same moments
    single = predictor.predict(refs[1]["query"], torch.from_numpy(feats), refs[1]["duration"])
    assert isinstance(single, dict)
    assert_same_windows(single["pred_relevant_windows"], refs[1]["pred_relevant_windows"])
    small = FSANPredictor(predictor.module, num_clips=16, max_tokens=20, batch_size=1)
    for got, ref in zip(small.predict([r["query"] for r in refs], feats, refs[0]["duration"]), refs):
        assert_same_windows(got["pred_relevant_windows"], ref["pred_relevant_windows"])


def test_top_k_other_than_the_checkpoints_reranks_consistently(predictor, tiny_world_dir, busiest_video):
    vid, refs = busiest_video
    feats = read_features(tiny_world_dir, vid)
    five = predictor.predict(refs[0]["query"], feats, refs[0]["duration"], top_k=5)["pred_relevant_windows"]
    ten = predictor.predict(refs[0]["query"], feats, refs[0]["duration"], top_k=10)["pred_relevant_windows"]
    three = predictor.predict(refs[0]["query"], feats, refs[0]["duration"], top_k=3)["pred_relevant_windows"]
    # greedy NMS: a longer list starts with the shorter one
    assert len(ten) == 10 and ten[:5] == five and three == five[:3]
    everything = predictor.predict(refs[0]["query"], feats, refs[0]["duration"], top_k=10_000)
    assert len(everything["pred_relevant_windows"]) == 16 * 17 // 2  # clamped to the candidates


def test_requests_across_videos_keep_their_order(predictor, tiny_world_dir, test_rows):
    picked = [test_rows[-1], test_rows[0], test_rows[-2], test_rows[1]]
    requests = [GroundingRequest(r["vid"], r["query"], r["duration"], r["qid"]) for r in picked]
    reads = []

    def features_of(vid):
        reads.append(vid)
        return read_features(tiny_world_dir, vid)

    results = predictor.predict_requests(requests, features_of)
    assert [r["qid"] for r in results] == [r["qid"] for r in picked]
    for got, ref in zip(results, picked):
        assert got["vid"] == ref["vid"]
        assert_same_windows(got["pred_relevant_windows"], ref["pred_relevant_windows"])
    assert sorted(reads) == sorted({r["vid"] for r in picked})  # each video read once


# ---------------------------------------------------------------------------------------- schema
def test_json_output_schema(ckpt, tiny_world_dir, busiest_video, capsys):
    vid, refs = busiest_video
    duration = refs[0]["duration"]
    queries = [refs[0]["query"], "Someone is WASHING a red ball!"]
    rc, out, err = run_cli(capsys, "--ckpt", ckpt, "--features", tiny_world_dir / FEATURES, "--video-id", vid,
                           "--duration", duration, "--query", queries[0], "--query", queries[1],
                           "--top-k", 3, "--json")
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == queries
    for line, query in zip(lines, queries):
        assert set(line) == KEYS
        assert line["duration"] == duration
        assert line["tokens"] == tokenize(query, 20)
        assert len(line["pred_relevant_windows"]) == 3
        for s, e, score in line["pred_relevant_windows"]:
            assert 0.0 <= s < e <= duration + 1e-4 and isinstance(score, float)
        A = np.asarray(line["alignment"])
        assert A.shape == (len(line["tokens"]), 16)
        # P is min-max normalised per token over the valid clips
        assert np.allclose(A.min(1), 0.0, atol=1e-4) and np.allclose(A.max(1), 1.0, atol=1e-4)
    assert lines[0]["pred_relevant_windows"] == refs[0]["pred_relevant_windows"][:3]


def test_table_output_and_npy_features(ckpt, tiny_world_dir, busiest_video, tmp_path, capsys):
    vid, refs = busiest_video
    npy = tmp_path / "video.npy"
    np.save(npy, read_features(tiny_world_dir, vid))
    rc, out, err = run_cli(capsys, "--ckpt", ckpt, "--features", npy, "--duration", refs[0]["duration"],
                           "--query", refs[0]["query"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"query: {refs[0]['query']!r}")
    assert lines[1].split() == ["rank", "start", "end", "score"]
    table = [line.split() for line in lines[2:]]
    assert [int(t[0]) for t in table] == [1, 2, 3, 4, 5]
    for t, (s, e, sc) in zip(table, refs[0]["pred_relevant_windows"]):
        assert (float(t[1]), float(t[2])) == (round(s, 2), round(e, 2))
        assert float(t[3]) == pytest.approx(sc, abs=1e-4)


def test_figure_marks_the_top_moment(ckpt, tiny_world_dir, busiest_video, tmp_path, capsys):
    vid, refs = busiest_video
    base = ["--ckpt", ckpt, "--features", tiny_world_dir / FEATURES, "--video-id", vid,
            "--duration", refs[0]["duration"], "--query", refs[0]["query"]]
    rc, _, err = run_cli(capsys, *base, "--figure", tmp_path / "one.png")
    assert rc == 0, err
    assert (tmp_path / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _, err = run_cli(capsys, *base, "--query", refs[1]["query"], "--figure", tmp_path / "map.png")
    assert rc == 0, err
    assert (tmp_path / "map_1.png").is_file() and (tmp_path / "map_2.png").is_file()


def test_short_video_keeps_its_rows_as_clips(predictor):
    feats = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    result = predictor.predict("someone cleans a ball", feats, 10.0, top_k=15)
    assert result["alignment"].shape == (4, 5)
    windows = result["pred_relevant_windows"]
    assert len(windows) == 15 and all(sc is not None for _, _, sc in windows)  # the 15 valid segments
    assert sorted((s, e) for s, e, _ in windows) == [(2.0 * s, 2.0 * (e + 1)) for s in range(5) for e in range(s, 5)]


def test_didemo_checkpoint_ranks_chunk_moments(ckpt, tmp_path):
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["hyper_parameters"].update(eval_protocol="didemo", data_num_clips=6)
    path = tmp_path / "didemo.ckpt"
    torch.save(raw, path)
    pred = FSANPredictor.from_checkpoint(path)
    assert pred.chunked
    feats = np.random.default_rng(1).normal(size=(6, 32)).astype(np.float32)
    result = pred.predict("a man opens a box", feats, 20.0, top_k=21)  # 4 chunks: 10 moments, then fillers
    windows = result["pred_relevant_windows"]
    assert result["alignment"].shape == (5, 4) and len(windows) == 21
    assert sorted((s, e) for s, e, sc in windows if sc is not None) == [
        (5.0 * s, 5.0 * (e + 1)) for s in range(4) for e in range(s, 4)]
    assert [sc for _, _, sc in windows[10:]] == [None] * 11
    with pytest.raises(PredictError, match="DiDeMo"):
        pred.predict("a man opens a box", feats[:3], 20.0)


# ---------------------------------------------------------------------------------------- errors
def test_api_errors(predictor, tiny_world_dir, busiest_video):
    vid, _ = busiest_video
    feats = read_features(tiny_world_dir, vid)
    for query in ("", "   ", "?!, ..."):
        with pytest.raises(PredictError, match="empty query"):
            predictor.predict(query, feats, 30.0)
    with pytest.raises(PredictError, match="empty query"):
        predictor.predict(["a man", ""], feats, 30.0)
    for duration in (0, -3.0, float("nan"), float("inf"), "long"):
        with pytest.raises(PredictError, match="duration"):
            predictor.predict("a man", feats, duration)
    with pytest.raises(PredictError, match="width 31.*32-d"):
        predictor.predict("a man", feats[:, :31], 30.0)
    bad = feats.copy()
    bad[3, 2] = np.nan
    bad[7, 0] = np.inf
    with pytest.raises(PredictError, match="NaN or inf in 2 of .* rows \\(first row 3\\)"):
        predictor.predict("a man", bad, 30.0)
    for shape in ((0, 32), (32,)):
        with pytest.raises(PredictError, match="2-D"):
            predictor.predict("a man", np.zeros(shape, np.float32), 30.0)
    for top_k in (0, -1, 2.5, True):
        with pytest.raises(PredictError, match="top_k"):
            predictor.predict("a man", feats, 30.0, top_k=top_k)
    with pytest.raises(PredictError, match="q7.*duration"):
        predictor.predict_requests([GroundingRequest(vid, "a man", -1.0, "q7", source="q7")], lambda v: feats)


def test_all_unknown_words_still_answer_with_a_warning(predictor, tiny_world_dir, busiest_video, ckpt, capsys):
    vid, refs = busiest_video
    feats = read_features(tiny_world_dir, vid)
    with pytest.warns(UnknownWordsWarning, match="none of the words"):
        result = predictor.predict("zxqv blorft", feats, refs[0]["duration"])
    assert result["unknown_words"] == ["zxqv", "blorft"] and len(result["pred_relevant_windows"]) == 5
    known_word = predictor.vocab.words[2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownWordsWarning)  # one known word: no warning
        partly = predictor.predict(f"zxqv {known_word}", feats, refs[0]["duration"])
    assert partly["unknown_words"] == ["zxqv"] and partly["tokens"] == ["zxqv", known_word]
    rc, out, err = run_cli(capsys, "--ckpt", ckpt, "--features", tiny_world_dir / FEATURES, "--video-id", vid,
                           "--duration", refs[0]["duration"], "--query", "zxqv blorft")
    assert rc == 0 and "warning: none of the words" in err and "unknown: zxqv blorft" in out


def _evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(marker),))

    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"vocab": [], "video_dim": 1}, "x": RunsCode()}, f)
    return bad, marker


@pytest.mark.parametrize("case", ["unknown_video", "wrong_width", "empty_query", "zero_duration",
                                  "negative_duration", "nan_features", "not_fsan", "not_a_checkpoint",
                                  "crafted_pickle", "unknown_video_in_file", "bad_queries_line"])
def test_cli_errors_exit_1_without_traceback(case, ckpt, tiny_world_dir, busiest_video, tmp_path, capsys):
    vid, _ = busiest_video
    h5 = tiny_world_dir / FEATURES
    args = {"--ckpt": ckpt, "--features": h5, "--video-id": vid, "--duration": 30.0, "--query": "a man washes a ball"}
    expect = {
        "unknown_video": "unknown video id 'v_nope'", "wrong_width": "width 31", "empty_query": "empty query",
        "zero_duration": "duration", "negative_duration": "duration", "nan_features": "NaN or inf",
        "not_fsan": "not an FSAN checkpoint", "not_a_checkpoint": "cannot read checkpoint",
        "crafted_pickle": "weights-only", "unknown_video_in_file": "unknown video id.*v_gone",
        "bad_queries_line": "line 2.*needs a string 'query'",
    }[case]
    marker = None
    if case == "unknown_video":
        args["--video-id"] = "v_nope"
    elif case in ("wrong_width", "nan_features"):
        feats = read_features(tiny_world_dir, vid)
        feats = feats[:, :31] if case == "wrong_width" else feats
        if case == "nan_features":
            feats = feats.copy()
            feats[0, 0] = np.nan
        np.save(tmp_path / "f.npy", feats)
        args["--features"] = tmp_path / "f.npy"
        del args["--video-id"]
    elif case == "empty_query":
        args["--query"] = "  "
    elif case == "zero_duration":
        args["--duration"] = 0
    elif case == "negative_duration":
        args["--duration"] = -5
    elif case == "not_fsan":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.ckpt")
        args["--ckpt"] = tmp_path / "other.ckpt"
    elif case == "not_a_checkpoint":
        (tmp_path / "notes.ckpt").write_text("hello")
        args["--ckpt"] = tmp_path / "notes.ckpt"
    elif case == "crafted_pickle":
        args["--ckpt"], marker = _evil_checkpoint(tmp_path)
    elif case in ("unknown_video_in_file", "bad_queries_line"):
        lines = [{"vid": vid, "query": "a man", "duration": 20.0},
                 {"vid": "v_gone", "query": "a man", "duration": 20.0} if case == "unknown_video_in_file"
                 else {"vid": vid, "duration": 20.0}]
        (tmp_path / "q.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        for key in ("--video-id", "--query"):
            del args[key]
        args["--queries"] = tmp_path / "q.jsonl"
    argv = [str(x) for kv in args.items() for x in kv]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(expect, err), err
    if marker is not None:
        assert not marker.exists()


def test_api_refuses_bad_checkpoints(tmp_path, ckpt):
    bad, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="weights-only"):
        FSANPredictor.from_checkpoint(bad)
    assert not marker.exists()
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    for key in ("data_num_clips", "data_max_tokens"):
        del raw["hyper_parameters"][key]
    old = tmp_path / "old.ckpt"
    torch.save(raw, old)
    with pytest.raises(CheckpointError, match="data_num_clips.*--num-clips"):
        FSANPredictor.from_checkpoint(old)
    rebuilt = FSANPredictor.from_checkpoint(old, num_clips=16, max_tokens=20)
    assert (rebuilt.num_clips, rebuilt.max_tokens) == (16, 20)


def test_cli_as_a_module_refuses_a_crafted_pickle(tmp_path):
    """The real command line: one line on stderr, exit 1, and the pickle's code never ran."""
    bad, marker = _evil_checkpoint(tmp_path)
    npy = tmp_path / "v.npy"
    np.save(npy, np.zeros((8, 32), np.float32))
    proc = subprocess.run([sys.executable, "-m", "fsan_lightning.predict", "--ckpt", str(bad), "--features",
                           str(npy), "--duration", "8", "--query", "a man"], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: refusing to load") and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_importing_the_cli_and_the_predictor_does_not_import_lightning():
    code = ("import sys, fsan_lightning.predict, fsan_lightning.predictor; "
            "assert 'pytorch_lightning' not in sys.modules, 'lightning imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
