"""python -m fsan_lightning.score: matching, counting, hand-scored files of every format, failures."""

import json
import subprocess
import sys

import pytest

from fsan_lightning.score import load_predictions, main, match_predictions, score_predictions


def _write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _run(capsys, *argv):
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture
def anet(tmp_path):
    ann = tmp_path / "val_2.json"
    ann.write_text(
        json.dumps(
            {
                "v_a": {
                    "duration": 100.0,
                    "timestamps": [[0, 10], [80, 100]],
                    "sentences": ["A man runs.", " A dog\nbarks. "],
                },
                "v_b": {"duration": 50.0, "timestamps": [[10, 20]], "sentences": ["Someone cooks."]},
            }
        )
    )
    return ann


def test_activitynet_hand_scored(tmp_path, anet, capsys):
    preds = _write_jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "qid": "v_a#0",
                "vid": "v_a",
                "query": "A man runs.",
                "duration": 100.0,
                "pred_relevant_windows": [[0, 5, 0.9], [0, 10, 0.8]],
            },  # top-1 IoU 0.5, best of 5: 1.0
            {
                "vid": "v_a",
                "query": "a dog  barks.",
                "duration": 100.0,  # matched by text (case, spaces)
                "pred_relevant_windows": [[90, 120, None]],
            },  # IoU 10/40, past the end, no score
            "",
            {"qid": "v_a#0", "pred_relevant_windows": [[80, 100, 1.0]]},  # duplicate: the first one counts
            {"qid": "nope", "vid": "v_zzz", "query": "x", "pred_relevant_windows": [[0, 1]]},  # unmatched
        ],
    )  # v_b#0 has no prediction: a miss
    code, out, err = _run(
        capsys, "--dataset", "activitynet", "--annotations", str(anet), "--predictions", str(preds)
    )
    assert code == 0
    res = json.loads(out.strip().splitlines()[-1])
    third = 100 / 3
    want = {
        "R1@0.1": 2 * third,
        "R1@0.3": third,
        "R1@0.5": third,
        "R1@0.7": 0.0,
        "R5@0.1": 2 * third,
        "R5@0.3": third,
        "R5@0.5": third,
        "R5@0.7": third,
        "mIoU": 25.0,
    }
    for k, v in want.items():
        assert res[k] == pytest.approx(v, abs=1e-9), k
    assert {
        k: res[k]
        for k in (
            "num_queries",
            "num_predictions",
            "matched",
            "missing_predictions",
            "unmatched_predictions",
            "duplicate_predictions",
        )
    } == {
        "num_queries": 3,
        "num_predictions": 4,
        "matched": 2,
        "missing_predictions": 1,
        "unmatched_predictions": 1,
        "duplicate_predictions": 1,
    }
    assert "missing predictions" in err and "unmatched predictions" in err


def test_file_order_is_the_ranking_no_nms(tmp_path, anet, capsys):
    # five near-identical windows then the right one: NMS would promote [0, 10] into the top 5; we do not
    windows = [[0, 5 + 0.1 * i, 1.0 - 0.1 * i] for i in range(5)] + [[0, 10, 0.99]]
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"qid": "v_a#0", "pred_relevant_windows": windows}])
    code, out, _ = _run(
        capsys, "--dataset", "activitynet", "--annotations", str(anet), "--predictions", str(preds)
    )
    res = json.loads(out.strip().splitlines()[-1])
    assert code == 0
    assert res["R5@0.5"] == pytest.approx(100 / 3) and res["R5@0.7"] == 0.0  # best of top 5: 5.4/10
    assert res["mIoU"] == pytest.approx(100 * 0.5 / 3)


def test_didemo_hand_scored(tmp_path, capsys):
    ann = tmp_path / "test_data.json"
    ann.write_text(
        json.dumps(
            [
                {
                    "annotation_id": 10,
                    "video": "x_1.mov",
                    "description": "a b",
                    "num_segments": 6,
                    "dl_link": "",
                    "times": [[0, 0], [0, 0], [0, 1], [5, 5]],
                },
                {
                    "annotation_id": 11,
                    "video": "x_2.mp4",
                    "description": "c d",
                    "num_segments": 5,
                    "dl_link": "",
                    "times": [[1, 2], [1, 2], [1, 2], [1, 2]],
                },
            ]
        )
    )
    # chunks (0,0), (0,1), (5,5): annotator ranks 1,1,2,3 -> (1+1+2)/3; IoUs 1,1,1/2,0 -> 5/6
    preds = _write_jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "qid": 10,
                "vid": "x_1",
                "query": "a b",
                "duration": 30.0,
                "pred_relevant_windows": [[0.0, 5.0, 0.3], [0.0, 10.0, 0.2], [25.0, 30.0, 0.1]],
            },
        ],
    )  # query 11 missing: ranked after all 21, IoU 0
    code, out, _ = _run(capsys, "--dataset", "didemo", "--annotations", str(ann), "--predictions", str(preds))
    assert code == 0
    res = json.loads(out.strip().splitlines()[-1])
    assert res["Rank@1"] == 0.0 and res["Rank@5"] == 50.0
    assert res["mIoU"] == pytest.approx(100 * (5 / 6) / 2)
    assert res["missing_predictions"] == 1 and res["matched"] == 1

    off_grid = _write_jsonl(tmp_path / "off.jsonl", [{"qid": 10, "pred_relevant_windows": [[0.0, 7.5, 1.0]]}])
    code, _, err = _run(
        capsys, "--dataset", "didemo", "--annotations", str(ann), "--predictions", str(off_grid)
    )
    assert code != 0 and "off.jsonl, line 1" in err and "grid" in err


def test_charades_with_durations(tmp_path, capsys):
    ann = tmp_path / "charades_sta_test.txt"
    ann.write_text("AB12C 0.0 10.0##person opens a door.\nAB12C 12.0 20.0##person sits down.\n")
    csv = tmp_path / "Charades_v1_test.csv"
    csv.write_text("id,length\nAB12C,30.0\n")
    preds = _write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"qid": "AB12C#0", "pred_relevant_windows": [[0, 10, 1]]},
            {"qid": "AB12C#1", "pred_relevant_windows": [[10, 20, 1]]},  # 8/10
        ],
    )
    code, out, _ = _run(
        capsys,
        "--dataset",
        "charades",
        "--annotations",
        str(ann),
        "--predictions",
        str(preds),
        "--durations",
        str(csv),
    )
    res = json.loads(out.strip().splitlines()[-1])
    assert code == 0
    assert res["R1@0.7"] == 100.0 and res["R1@0.5"] == 100.0 and res["mIoU"] == pytest.approx(90.0)


def test_nothing_matches_fails_naming_the_file(tmp_path, anet, capsys):
    preds = _write_jsonl(
        tmp_path / "other_split.jsonl",
        [{"qid": "zz#0", "vid": "v_z", "query": "q", "pred_relevant_windows": [[0, 1]]}],
    )
    code, out, err = _run(
        capsys, "--dataset", "activitynet", "--annotations", str(anet), "--predictions", str(preds)
    )
    assert code != 0 and "other_split.jsonl" in err and "none of its 1 predictions" in err and out == ""


@pytest.mark.parametrize(
    "line, match",
    [
        ("{not json", "line 1: not valid JSON"),
        ('{"qid": "v_a#0"}', "missing field 'pred_relevant_windows'"),
        ('{"pred_relevant_windows": []}', "needs 'qid' or both"),
        ('{"qid": "v_a#0", "pred_relevant_windows": [[0, "x"]]}', "window 0"),
        ('{"qid": "v_a#0", "pred_relevant_windows": [[0, NaN]]}', "window 0"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_prediction_lines_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=match) as err:
        load_predictions(path)
    assert "bad.jsonl" in str(err.value)


def test_empty_window_list_is_a_miss_and_ambiguous_text_fills_in_order():
    from fsan_lightning.data.records import Query
    from fsan_lightning.score import Prediction

    qs = [
        Query("v#0", "v", "same words", 10.0, ((0.0, 5.0),)),
        Query("v#1", "v", "same words", 10.0, ((5.0, 10.0),)),
    ]
    preds = [
        Prediction(1, None, "v", "same words", ((0.0, 5.0),)),
        Prediction(2, None, "v", "Same words", ((5.0, 10.0),)),
        Prediction(3, None, "v", "same words", ()),
    ]
    m = match_predictions(qs, preds)
    assert {i: p.line for i, p in m.by_query.items()} == {0: 1, 1: 2} and m.duplicates == 1
    res = score_predictions("activitynet", qs, [Prediction(1, "v#0", None, None, ()), preds[1]])
    assert res["mIoU"] == 50.0 and res["R1@0.5"] == 50.0 and res["missing_predictions"] == 0


def test_module_entry_point_exit_codes(tmp_path, anet):
    good = _write_jsonl(tmp_path / "p.jsonl", [{"qid": "v_b#0", "pred_relevant_windows": [[10, 20, 1.0]]}])
    bad = _write_jsonl(tmp_path / "q.jsonl", [{"qid": "x", "pred_relevant_windows": []}])
    base = [
        sys.executable,
        "-m",
        "fsan_lightning.score",
        "--dataset",
        "activitynet",
        "--annotations",
        str(anet),
    ]
    ok = subprocess.run(base + ["--predictions", str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["mIoU"] == pytest.approx(100 / 3)
    fail = subprocess.run(base + ["--predictions", str(bad)], capture_output=True, text=True, check=False)
    assert fail.returncode != 0 and "q.jsonl" in fail.stderr
