"""Score a predictions file against an annotation file.

    python -m fsan_lightning.score --dataset {activitynet,charades,didemo,synthetic} \
        --annotations FILE --predictions FILE.jsonl [--durations CSV ...]

Predictions: one JSON object per line with `qid`, `vid`, `query`, `duration` and
`pred_relevant_windows` = [[start_s, end_s(, score)], ...] best first. A line is matched to a query by
`qid` when present and known, else by (`vid`, `query` text, compared with whitespace collapsed and case
folded). The file's order is the ranking: no NMS, no re-sorting by score.

Scoring is over the ground truth: a query with no prediction is a miss (IoU 0; DiDeMo: its annotator
moments are ranked after all 21). A second prediction for an already matched query is ignored (the
first one counts). The last line of stdout is one JSON object: the metrics in percent (`R1@0.1` ...
`R5@0.7`, `mIoU`; DiDeMo: `Rank@1`, `Rank@5`, `mIoU`) and the counts `num_queries`, `num_predictions`,
`matched`, `missing_predictions`, `unmatched_predictions`, `duplicate_predictions`. A file none of whose
predictions match exits non-zero with a message naming it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fsan_lightning.metrics.didemo import didemo_query_scores, didemo_summary, seconds_to_chunks
from fsan_lightning.metrics.grounding import grounding_ious, recall_summary
from fsan_lightning.runio import json_object_line

__all__ = ["MatchResult", "Prediction", "load_predictions", "main", "match_predictions", "score_predictions"]

DATASETS = ("activitynet", "charades", "didemo", "synthetic", "anet_sim")
# DiDeMo windows must lie on the 5 s grid; this much slack absorbs rounding in a written file.
GRID_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Prediction:
    """One line of a predictions file: `windows` is [(start_s, end_s), ...] best first."""

    line: int
    qid: str | None
    vid: str | None
    query: str | None
    windows: tuple[tuple[float, float], ...]


@dataclass
class MatchResult:
    """`by_query[i]` = the prediction matched to query i (absent: missing)."""

    by_query: dict[int, Prediction] = field(default_factory=dict)
    unmatched: int = 0
    duplicates: int = 0


def _norm_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def _parse_line(source: str, lineno: int, raw: str) -> Prediction:
    where = f"{source}, line {lineno}"
    rec = json_object_line(raw, where)
    if "pred_relevant_windows" not in rec:
        raise ValueError(f"{where}: missing field 'pred_relevant_windows'")
    qid = rec.get("qid")
    vid, query = rec.get("vid"), rec.get("query")
    if qid is None and (vid is None or query is None):
        raise ValueError(f"{where}: needs 'qid' or both 'vid' and 'query' to be matched to a query")
    if (vid is not None and not isinstance(vid, str)) or (query is not None and not isinstance(query, str)):
        raise ValueError(f"{where}: 'vid' and 'query' must be strings")
    rows = rec["pred_relevant_windows"]
    if not isinstance(rows, list):
        raise ValueError(f"{where}: 'pred_relevant_windows' must be a list of [start, end(, score)]")  # noqa: TRY004
    windows = []
    for j, row in enumerate(rows):
        ok = isinstance(row, list) and len(row) in (2, 3)
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row[:2])
        ok = ok and all(math.isfinite(v) for v in row[:2])
        ok = ok and (len(row) == 2 or row[2] is None or isinstance(row[2], (int, float)))
        if not ok:
            raise ValueError(
                f"{where}: window {j} is {row!r}; expected [start_s, end_s] or [start_s, end_s, score] "
                "with finite seconds"
            )
        windows.append((float(row[0]), float(row[1])))
    return Prediction(lineno, None if qid is None else str(qid), vid, query, tuple(windows))


def load_predictions(path: str | Path) -> list[Prediction]:
    """Read a JSONL predictions file (blank lines skipped). Raises ValueError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                out.append(_parse_line(str(path), lineno, raw))
    return out


def match_predictions(queries: Sequence[Any], predictions: Sequence[Prediction]) -> MatchResult:
    """Assign predictions to queries: by `qid` when the prediction has one that is known, else by
    (vid, query text). When several queries share (vid, text), successive predictions fill them in order."""
    by_qid = {str(q.qid): i for i, q in enumerate(queries)}
    by_text: dict[tuple[str, str], list[int]] = {}
    for i, q in enumerate(queries):
        by_text.setdefault((q.vid, _norm_text(q.sentence)), []).append(i)
    result = MatchResult()
    for p in predictions:
        if p.qid is not None and p.qid in by_qid:
            target = by_qid[p.qid]
        elif p.vid is not None and p.query is not None and (p.vid, _norm_text(p.query)) in by_text:
            candidates = by_text[(p.vid, _norm_text(p.query))]
            target = next((i for i in candidates if i not in result.by_query), candidates[0])
        else:
            result.unmatched += 1
            continue
        if target in result.by_query:
            result.duplicates += 1
        else:
            result.by_query[target] = p
    return result


def _padded(rows: list[list[tuple[float, float]]], fill: float) -> torch.Tensor:
    width = max(1, max((len(r) for r in rows), default=1))
    out = torch.full((len(rows), width, 2), fill, dtype=torch.float64)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
    return out


def score_predictions(
    dataset: str, queries: Sequence[Any], predictions: Sequence[Prediction], source: str = "<predictions>"
) -> dict[str, Any]:
    """Metrics (percent) over all `queries` plus the matching counts; see the module docstring.

    `queries` are `fsan_lightning.data.records.Query` records (qid, vid, sentence, duration, moments in seconds).
    Raises ValueError when nothing matches (naming `source`) or a DiDeMo window is off the 5 s grid.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if not queries:
        raise ValueError("no ground-truth queries to score")
    match = match_predictions(queries, predictions)
    if not match.by_query:
        raise ValueError(
            f"{source}: none of its {len(predictions)} predictions matches a ground-truth query "
            f"(by qid or by (vid, query)); is it for this dataset and split?"
        )
    rows = [list(match.by_query[i].windows) if i in match.by_query else [] for i in range(len(queries))]
    if dataset == "didemo":
        ranked = []
        for i, r in enumerate(rows):
            try:
                ranked.append(seconds_to_chunks(_padded([r], -1.0)[0], atol=GRID_TOLERANCE_S))
            except ValueError as err:
                p = match.by_query[i]
                raise ValueError(f"{source}, line {p.line}: {err}") from None
        width = max(t.shape[0] for t in ranked)
        ranked_t = torch.full((len(rows), width, 2), -1, dtype=torch.int64)
        for i, t in enumerate(ranked):
            ranked_t[i, : t.shape[0]] = t
        gt = seconds_to_chunks(_padded([list(q.moments) for q in queries], -1.0))
        avg_rank, avg_iou = didemo_query_scores(ranked_t, gt)
        metrics = didemo_summary(avg_rank, avg_iou)
    else:
        preds = _padded(rows, -1.0)  # a [-1, -1] row overlaps no ground truth: IoU 0, a miss
        gt = torch.tensor([q.moments[0] for q in queries], dtype=torch.float64)
        top1, best = grounding_ious(preds, gt)
        metrics = recall_summary(top1, best)
    return {
        **metrics,
        "num_queries": len(queries),
        "num_predictions": len(predictions),
        "matched": len(match.by_query),
        "missing_predictions": len(queries) - len(match.by_query),
        "unmatched_predictions": match.unmatched,
        "duplicate_predictions": match.duplicates,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fsan_lightning.score", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--annotations", required=True, help="ground-truth annotation file of the split")
    parser.add_argument("--predictions", required=True, help="JSONL predictions file")
    parser.add_argument("--durations", nargs="+", default=None, help="duration CSV file(s) (Charades)")
    args = parser.parse_args(argv)

    from fsan_lightning.data.readers import read_annotations

    try:
        queries, _report = read_annotations(args.dataset, args.annotations, durations=args.durations)
        predictions = load_predictions(args.predictions)
        if not predictions:
            raise ValueError(f"{args.predictions}: no predictions in the file")
        result = score_predictions(args.dataset, queries, predictions, source=str(args.predictions))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key in ("missing_predictions", "unmatched_predictions", "duplicate_predictions"):
        if result[key]:
            print(f"warning: {result[key]} {key.replace('_', ' ')}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
