"""length_breakdown: mIoU per video-length bin (Figure 4)."""

import math

import pytest

from fsan_lightning.metrics import length_breakdown


def test_hand_computed_bins():
    durations = [2.0, 11.9, 12.0, 50.0, 229.9, 230.0, 700.0]
    ious = [0.4, 0.6, 1.0, 0.2, 0.0, 0.3, 0.5]
    rows = length_breakdown(durations, ious, [2, 12, 230, math.inf])
    assert [(r["lo"], r["hi"], r["count"]) for r in rows] == [(2, 12, 2), (12, 230, 3), (230, math.inf, 2)]
    assert [r["mIoU"] for r in rows] == pytest.approx([50.0, 40.0, 40.0])


def test_empty_bin_is_none():
    rows = length_breakdown([5.0], [1.0], [0, 10, 20])
    assert rows[0]["mIoU"] == 100.0 and rows[1] == {"lo": 10.0, "hi": 20.0, "count": 0, "mIoU": None}


@pytest.mark.parametrize(
    "durations, ious, bins, match",
    [
        ([5.0], [0.5, 0.5], [0, 10], "durations but"),
        ([5.0], [0.5], [10, 0], "strictly increasing"),
        ([5.0], [0.5], [0], "strictly increasing"),
        ([25.0], [0.5], [0, 10, 20], "outside the bins"),
        ([5.0], [1.5], [0, 10], "outside \\[0, 1\\]"),
    ],
)
def test_bad_input_raises(durations, ious, bins, match):
    with pytest.raises(ValueError, match=match):
        length_breakdown(durations, ious, bins)
