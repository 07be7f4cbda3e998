"""Ground free-text queries with a trained checkpoint.

    python -m fsan_lightning.predict --ckpt CKPT --features FILE.hdf5 --video-id VID --duration SECONDS \
        --query "a man slices a tomato" [--query ...] [--top-k 5] [--figure out.png] [--json]
    python -m fsan_lightning.predict --ckpt CKPT --features video.npy --duration 87 --query "..."
    python -m fsan_lightning.predict --ckpt CKPT --features FILE.hdf5 --queries pairs.jsonl --out preds.jsonl
    python -m fsan_lightning.predict --ckpt CKPT --video FILE.mp4 --query "..." [--figure out.png]

One video (``--query``): prints a table per query (rank, start, end, score), or with ``--json`` one
JSON object per query and line: ``query``, ``duration``, ``pred_relevant_windows``, ``alignment``
(tokens x clips, rounded to 1e-4), ``tokens``, ``unknown_words``. ``--figure out.png`` draws the
alignment map with the top moment marked (several queries: ``out_1.png``, ``out_2.png``, ...).
``--video FILE`` (instead of ``--features``) extracts the file's features with the backbone the
checkpoint records (`fsan_lightning.video_predict`; refused for a checkpoint trained on other
features), the duration is the file's, and ``--figure`` draws the map under a strip of thumbnails.

Many pairs (``--queries FILE.jsonl``, one ``{"vid", "query"[, "duration"][, "qid"]}`` per line; the
duration defaults to ``--duration``): writes ``--out`` (or prints) a predictions file that
``fsan_lightning.score`` reads, the schema of ``predictions_test.jsonl``: ``qid`` (when given),
``vid``, ``query``, ``duration``, ``pred_relevant_windows``.

Errors (unknown video, wrong feature width, empty query, duration <= 0, NaN features, a file that is
not an FSAN checkpoint or would run code when loaded) print one line ``error: ...`` and exit 1.
Lightning is imported only when the checkpoint is loaded.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from fsan_lightning.runio import json_object_line

__all__ = ["main", "read_queries_file"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint of a training run (loaded weights-only)")
    p.add_argument("--video", type=Path, help="a video file: extract its features with the checkpoint's "
                                             "recorded backbone (instead of --features; needs the [video] extra)")
    p.add_argument("--features",
                   help="features: an HDF5 file or a folder of <vid>.npy (with --video-id or --queries), or one "
                        "video's [T, D] .npy file")
    p.add_argument("--video-id", help="the video's id in --features (HDF5 / folder)")
    p.add_argument("--feature-key", default="{vid}/c3d_features",
                   help="HDF5 key template of a video's features (default: %(default)s, the ActivityNet layout)")
    p.add_argument("--duration", type=float, help="video length in seconds (with --queries: the default for "
                                                   "lines without a duration)")
    p.add_argument("--query", action="append", default=[], help="a sentence to ground (repeatable)")
    p.add_argument("--queries", type=Path, help="JSONL of {vid, query[, duration][, qid]} pairs to ground")
    p.add_argument("--out", type=Path, help="with --queries: the predictions file to write (default: stdout)")
    p.add_argument("--top-k", type=int, default=5, help="moments per query (default: %(default)s)")
    p.add_argument("--figure", type=Path, help="with --query: PNG of the alignment map, top moment marked")
    p.add_argument("--json", action="store_true", help="with --query: JSON lines instead of tables")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="queries per forward pass (default: %(default)s)")
    p.add_argument("--num-clips", type=int, help="override the checkpoint's data_num_clips (older checkpoints)")
    p.add_argument("--max-tokens", type=int, help="override the checkpoint's data_max_tokens (older checkpoints)")
    return p


def read_queries_file(path: Path, default_duration: float | None) -> list:
    """Parse a JSONL of pairs into GroundingRequests; errors name the file and the line."""
    from fsan_lightning.predictor import GroundingRequest

    if not path.is_file():
        raise FileNotFoundError(f"queries file not found: {path}")
    requests = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}, line {lineno}"
        rec = json_object_line(raw, where)
        for key in ("vid", "query"):
            if not isinstance(rec.get(key), str):
                raise ValueError(f"{where}: needs a string {key!r}")  # noqa: TRY004 (bad data)
        duration = rec.get("duration", default_duration)
        if duration is None:
            raise ValueError(f"{where}: no 'duration' on the line and no --duration given")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise ValueError(f"{where}: 'duration' must be a number, got {duration!r}")  # noqa: TRY004 (bad data)
        qid = rec.get("qid")
        requests.append(GroundingRequest(rec["vid"], rec["query"], float(duration),
                                         None if qid is None else str(qid), where))
    if not requests:
        raise ValueError(f"{path}: no queries in the file")
    return requests


def _load_one_video(args: argparse.Namespace):
    """[T, D] features of the single video of ``--query`` mode."""
    import numpy as np

    from fsan_lightning.data.features import open_feature_store

    path = Path(args.features)
    if path.suffix == ".npy" and not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"features file not found: {path}")
        if args.video_id:
            raise ValueError("--video-id selects a video in an HDF5 file or a folder; --features is one .npy")
        try:
            return np.load(path)
        except ValueError as err:
            raise ValueError(f"{path}: not a .npy array ({err})") from None
    if not args.video_id:
        raise ValueError(f"--features {path} holds many videos: pass --video-id")
    store = open_feature_store(path, args.feature_key)
    try:
        if store.shape(args.video_id) is None:
            raise ValueError(f"unknown video id {args.video_id!r}: no features at "
                             f"{store.where(args.video_id)!r} in {store.path}")
        return store.read(args.video_id)  # 2-D, rows, NaN checked here; the width by the predictor
    finally:
        store.close()


def _print_table(result: dict[str, Any]) -> None:
    unknown = result["unknown_words"]
    print(f"query: {result['query']!r}  (duration {result['duration']:.2f} s; {len(result['tokens'])} words"
          + (f", unknown: {' '.join(unknown)}" if unknown else "") + ")")
    print(f"{'rank':>4}  {'start':>9}  {'end':>9}  {'score':>9}")
    for rank, (s, e, sc) in enumerate(result["pred_relevant_windows"], start=1):
        score = "-" if sc is None else f"{sc:.4f}"
        print(f"{rank:>4}  {s:>9.2f}  {e:>9.2f}  {score:>9}")


def _json_line(result: dict[str, Any]) -> str:
    row = dict(result)
    row["alignment"] = [[round(float(v), 4) for v in r] for r in result["alignment"]]
    return json.dumps(row, allow_nan=False)


def _figure_paths(figure: Path, n: int) -> list[Path]:
    if n == 1:
        return [figure]
    return [figure.with_name(f"{figure.stem}_{i}{figure.suffix or '.png'}") for i in range(1, n + 1)]


def _run(args: argparse.Namespace) -> None:
    from fsan_lightning.predictor import FSANPredictor

    if (args.video is None) == (args.features is None):
        raise ValueError("give --features (pre-extracted) or --video FILE, not both or neither")
    if args.video is not None and (args.queries or args.video_id):
        raise ValueError("--video goes with --query (one video); --queries and --video-id go with --features")
    if bool(args.query) == bool(args.queries):
        raise ValueError("give --query (one video) or --queries FILE.jsonl (many pairs), not both or neither")
    if args.queries is not None and (args.figure or args.json or args.video_id):
        raise ValueError("--figure, --json and --video-id go with --query; --queries writes a predictions file")
    if args.queries is None and args.out is not None:
        raise ValueError("--out goes with --queries")
    if args.query and args.duration is None and args.video is None:
        raise ValueError("--duration SECONDS is needed with --query")
    requests = read_queries_file(args.queries, args.duration) if args.queries else None
    video = None
    if args.video is not None:
        from fsan_lightning.video_predict import checkpoint_backbone, video_features

        features, video = video_features(args.video, checkpoint_backbone(args.ckpt))
        args.duration = args.duration or video.duration
    else:
        features = _load_one_video(args) if args.query else None

    predictor = FSANPredictor.from_checkpoint(args.ckpt, device=args.device, num_clips=args.num_clips,
                                              max_tokens=args.max_tokens, batch_size=args.batch_size)
    if requests is None:
        results = predictor.predict(args.query, features, args.duration, top_k=args.top_k)
        for i, result in enumerate(results):
            if args.json:
                print(_json_line(result))
            else:
                if i:
                    print()
                _print_table(result)
        if args.figure:
            from fsan_lightning.viz.alignment import save_alignment_figure

            for path, result in zip(_figure_paths(args.figure, len(results)), results):
                if video is not None:
                    from fsan_lightning.video_predict import save_video_figure

                    save_video_figure(path, result, video)
                else:
                    save_alignment_figure(path, result["alignment"], result["tokens"], result["duration"],
                                          pred=result["pred_relevant_windows"][0][:2], query=result["query"])
                print(f"figure: {path}", file=sys.stderr)
        return

    from fsan_lightning.data.features import open_feature_store
    from fsan_lightning.runio import atomic_write_jsonl

    store = open_feature_store(args.features, args.feature_key)
    try:
        missing = sorted({r.vid for r in requests if store.shape(r.vid) is None})
        if missing:
            raise ValueError(f"unknown video id(s): {len(missing)} video(s) of {args.queries} have no features in "
                             f"{store.path} (first: {', '.join(missing[:5])})")
        _check_videos(store, requests, predictor.video_dim)
        results = predictor.predict_requests(requests, store.read, top_k=args.top_k)
    finally:
        store.close()
    keys = ("qid", "vid", "query", "duration", "pred_relevant_windows")
    rows = [{k: r[k] for k in keys if k in r} for r in results]
    if args.out is None:
        for row in rows:
            print(json.dumps(row, allow_nan=False))
    else:
        atomic_write_jsonl(args.out, rows)
        print(f"wrote {len(rows)} predictions to {args.out}", file=sys.stderr)


def _check_videos(store, requests, width: int) -> None:
    """Every row of every requested video, at the checkpoint's width, before the first prediction."""
    from fsan_lightning.data.errors import DataFormatError
    from fsan_lightning.data.feature_check import VideoNeed, check_feature_values

    needs = {vid: VideoNeed(1, 0.0, ()) for vid in sorted({r.vid for r in requests})}
    check = check_feature_values(store, needs, dim=width, check_durations=False)
    if check.broken:
        raise DataFormatError(store.path, check.broken_message(None))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 bad input or checkpoint, 2 bad arguments)."""
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        from fsan_lightning.predictor import UnknownWordsWarning

        warnings.simplefilter("always", UnknownWordsWarning)
        # torch's advice on a refused pickle is to load it unsafely; our error message says why not
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        warnings.showwarning = _show_warning
        try:
            _run(args)
        except (ValueError, FileNotFoundError, OSError) as err:  # CheckpointError, PredictError, DataFormatError
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
