"""mIoU per video-length interval (the paper's Figure 4): a pure function over per-query results."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

__all__ = ["length_breakdown"]


def length_breakdown(durations: Sequence[float], ious: Sequence[float], bins: Sequence[float]) -> list[dict]:
    """Group queries by video duration and average their top-1 IoU.

    Args:
        durations: per-query video duration in seconds (N values).
        ious: per-query top-1 IoU in [0, 1] (N values, same order).
        bins: strictly increasing edges e_0 < e_1 < ... < e_m (the last may be `math.inf`); bin i is the
            half-open interval [e_i, e_{i+1}).
    Returns:
        One row per bin, in order: `{"lo": e_i, "hi": e_{i+1}, "count": n, "mIoU": percent or None}`
        (None for an empty bin).
    Raises:
        ValueError: on mismatched lengths, bad edges, an IoU outside [0, 1], or a duration outside
        [e_0, e_m) (named, so that no query silently drops out of the figure).
    """
    durations = [float(d) for d in durations]
    ious = [float(v) for v in ious]
    edges = [float(b) for b in bins]
    if len(durations) != len(ious):
        raise ValueError(f"{len(durations)} durations but {len(ious)} IoUs")
    if (
        len(edges) < 2
        or any(not b > a for a, b in itertools.pairwise(edges))
        or any(math.isnan(e) for e in edges)
    ):
        raise ValueError(f"bins must be at least two strictly increasing edges, got {list(bins)}")
    sums = [0.0] * (len(edges) - 1)
    counts = [0] * (len(edges) - 1)
    for i, (d, v) in enumerate(zip(durations, ious)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"query {i}: IoU {v} is outside [0, 1]")
        if not edges[0] <= d < edges[-1]:
            raise ValueError(f"query {i}: duration {d} s is outside the bins [{edges[0]}, {edges[-1]})")
        j = bisect.bisect_right(edges, d) - 1
        sums[j] += v
        counts[j] += 1
    return [
        {
            "lo": edges[j],
            "hi": edges[j + 1],
            "count": counts[j],
            "mIoU": 100.0 * sums[j] / counts[j] if counts[j] else None,
        }
        for j in range(len(edges) - 1)
    ]
