"""Check a user's annotation (and feature) files before training.

    python -m fsan_lightning.data.validate DATASET ANNOTATION_FILE [--features FILE]
        [--feature-key TEMPLATE] [--durations FILE ...] [--missing-features error|skip]
        [--bad-features error|skip] [--num-clips N] [--duration-tolerance R] [--feature-rate R]

Prints a human summary, then as its LAST line one JSON object
``{"queries": N, "videos": N, "dropped": {reason: count}, "repaired": {reason: count},
"missing_features": N}`` (with ``--features`` also ``"bad_features": N``, ``"feature_problems":
{kind: count}``, ``"feature_warnings": {kind: count}``). Exit status 0 when the files are usable, 1
when they are not (no query left, videos without features under ``--missing-features error``, or
videos with unusable features under ``--bad-features error``; every such video is named with its
problem), 2 on a malformed annotation file (the message names file, record and key).

With ``--features`` every feature row of every video of the file is read once, streaming
(`fsan_lightning.data.feature_check`, the same check the train entry runs before fitting): NaN/inf
(video and row named), rank, width, zero rows, fewer rows than DiDeMo chunks are problems; fewer
rows than ``--num-clips`` clips and durations that disagree with the feature length by more than
``--duration-tolerance`` are counted warnings.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import DataFormatError
from .feature_check import DURATION_TOLERANCE, check_feature_values, video_needs
from .features import DEFAULT_KEY_TEMPLATE, missing_features_message, open_feature_store
from .readers import DATASETS, DIDEMO_CHUNK_S, read_annotations

#: Nv of each dataset's config (conf/data/*.yaml), for the ``short`` warning; DiDeMo's chunks are its clips
DEFAULT_NUM_CLIPS = {"activitynet": 64, "charades": 32, "synthetic": 32, "didemo": None}


def validate(dataset: str, annotations, features=None, feature_key: str = DEFAULT_KEY_TEMPLATE,
             durations=None, missing_features: str = "error", scan_values: bool = True,
             bad_features: str = "error", num_clips: int | None = -1,
             duration_tolerance: float = DURATION_TOLERANCE, feature_rate: float | None = None
             ) -> tuple[dict, list[str], bool]:
    """Returns (summary dict, human lines, usable). Raises DataFormatError on malformed annotations.

    num_clips: Nv for the ``short`` warning (-1: the dataset's default, None: no such warning).
    scan_values is kept for older callers: the values are always read.
    """
    queries, report = read_annotations(dataset, annotations, durations)
    lines = [report.summary()]
    lines += [f"note: {n}" for n in report.notes]
    usable = report.queries > 0
    if not usable:
        lines.append("no usable query left")
    extra: dict = {}
    if features is not None:
        chunked = dataset == "didemo"
        if num_clips == -1:
            num_clips = DEFAULT_NUM_CLIPS[dataset]
        store = open_feature_store(features, feature_key)
        needs = video_needs({"annotated": queries}, DIDEMO_CHUNK_S if chunked else None)
        check = check_feature_values(store, needs, num_clips=None if chunked else num_clips,
                                     duration_tolerance=duration_tolerance, feature_rate=feature_rate,
                                     check_durations=not chunked)
        missing, broken = check.missing, check.broken
        report.missing_features = len(missing)
        gone: set[str] = set()
        if missing:
            lines.append(missing_features_message(store, missing, len(needs)))
            if missing_features == "error":
                usable = False
            else:
                gone |= set(missing)
        if broken:
            lines.append(check.broken_message("--bad-features skip"))
            if bad_features == "error":
                usable = False
            else:
                gone |= set(broken)
        for q in queries:
            if q.vid in gone:
                kind = check.problems[q.vid]["kind"]
                report.drop("missing_features" if kind == "missing" else f"bad_features_{kind}", q.qid)
        if gone:
            kept = [q for q in queries if q.vid not in gone]
            report.queries, report.videos = len(kept), len({q.vid for q in kept})
            usable = usable and report.queries > 0
        lines += [f"warning: {w}" for w in check.warning_lines()]
        rate = f", {check.rate:.3g} rows/s" if check.rate else ""
        lines.append(f"features: {store.path}, width {check.width}, {len(needs) - len(missing)} of {len(needs)} "
                     f"videos present, {check.rows} rows read in {check.seconds:.2f} s{rate}; "
                     f"{len(broken)} unusable")
        store.close()
        extra = {"bad_features": len(broken), "feature_problems": {k: v for k, v in check.problem_counts().items()
                                                                  if k != "missing"},
                 "feature_warnings": check.warning_counts()}
    summary = {"queries": report.queries, "videos": report.videos, "dropped": dict(sorted(report.dropped.items())),
               "repaired": dict(sorted(report.repaired.items())), "missing_features": report.missing_features,
               **extra}
    return summary, lines, usable


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.data.validate",
                                description="Check annotation and feature files; the last line is JSON.")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("annotations")
    p.add_argument("--features", default=None, help="HDF5 file or folder of <vid>.npy files")
    p.add_argument("--feature-key", default=DEFAULT_KEY_TEMPLATE, help="HDF5 key template with {vid}")
    p.add_argument("--durations", nargs="+", default=None, help="Charades_v1_{train,test}.csv (charades)")
    p.add_argument("--missing-features", choices=["error", "skip"], default="error")
    p.add_argument("--bad-features", choices=["error", "skip"], default="error",
                   help="videos with unusable features (NaN/inf, wrong shape): fail, or drop their queries")
    p.add_argument("--num-clips", type=int, default=-1,
                   help="Nv, for the warning on videos with fewer rows than clips (default: the dataset's config)")
    p.add_argument("--duration-tolerance", type=float, default=DURATION_TOLERANCE,
                   help="relative gap of feature length (s) and annotated duration counted as a warning "
                        "(default: %(default)s)")
    p.add_argument("--feature-rate", type=float, default=None,
                   help="feature rows per second (default: the median over the file)")
    p.add_argument("--scan-values", action="store_true", help=argparse.SUPPRESS)  # values are always read now
    args = p.parse_args(argv)
    try:
        summary, lines, usable = validate(args.dataset, args.annotations, args.features, args.feature_key,
                                          args.durations, args.missing_features, True, args.bad_features,
                                          args.num_clips, args.duration_tolerance, args.feature_rate)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    print("usable" if usable else "NOT usable")
    print(json.dumps(summary))
    return 0 if usable else 1


if __name__ == "__main__":
    sys.exit(main())
