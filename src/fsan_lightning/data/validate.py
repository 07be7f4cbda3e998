"""Check a user's annotation (and feature) files before training.

    python -m fsan_lightning.data.validate DATASET ANNOTATION_FILE [--features FILE]
        [--feature-key TEMPLATE] [--durations FILE ...] [--missing-features error|skip] [--scan-values]

Prints a human summary, then as its LAST line one JSON object
``{"queries": N, "videos": N, "dropped": {reason: count}, "repaired": {reason: count},
"missing_features": N}``. Exit status 0 when the files are usable, 1 when they are not (no query left,
or videos without features under ``--missing-features error``), 2 on a malformed file (the message
names file, record and key). Features are checked by shape (cheap); ``--scan-values`` also reads
every video and checks for NaN/inf.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import DataFormatError
from .features import DEFAULT_KEY_TEMPLATE, check_features, missing_features_message, open_feature_store
from .readers import DATASETS, DIDEMO_CHUNK_S, read_annotations


def validate(dataset: str, annotations, features=None, feature_key: str = DEFAULT_KEY_TEMPLATE,
             durations=None, missing_features: str = "error", scan_values: bool = False
             ) -> tuple[dict, list[str], bool]:
    """Returns (summary dict, human lines, usable). Raises DataFormatError on malformed files."""
    queries, report = read_annotations(dataset, annotations, durations)
    lines = [report.summary()]
    lines += [f"note: {n}" for n in report.notes]
    usable = report.queries > 0
    if not usable:
        lines.append("no usable query left")
    if features is not None:
        store = open_feature_store(features, feature_key)
        need: dict[str, int] = {}
        for q in queries:
            rows = round(q.duration / DIDEMO_CHUNK_S) if dataset == "didemo" else 1
            need[q.vid] = max(need.get(q.vid, 0), rows)
        missing, dim = check_features(store, need)
        report.missing_features = len(missing)
        if missing:
            lines.append(missing_features_message(store, missing, len(need)))
            if missing_features == "error":
                usable = False
            else:
                gone = set(missing)
                n_drop = sum(q.vid in gone for q in queries)
                for q in queries:
                    if q.vid in gone:
                        report.drop("missing_features", q.qid)
                report.queries -= n_drop
                report.videos -= len(missing)
                queries = [q for q in queries if q.vid not in gone]
                usable = report.queries > 0
        if scan_values:
            for vid in sorted({q.vid for q in queries}):
                store.read(vid, dim)
        lines.append(f"features: {store.path}, width {dim}, {len(need) - len(missing)} of {len(need)} "
                     f"videos present{', values checked' if scan_values else ' (shapes checked)'}")
        store.close()
    summary = {"queries": report.queries, "videos": report.videos, "dropped": dict(sorted(report.dropped.items())),
               "repaired": dict(sorted(report.repaired.items())), "missing_features": report.missing_features}
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
    p.add_argument("--scan-values", action="store_true", help="read every video and check for NaN/inf")
    args = p.parse_args(argv)
    try:
        summary, lines, usable = validate(args.dataset, args.annotations, args.features, args.feature_key,
                                          args.durations, args.missing_features, args.scan_values)
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
