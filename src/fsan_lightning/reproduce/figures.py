"""The paper's Figures 3 and 4 from a run directory.

    python -m fsan_lightning.reproduce.figures RUN_DIR [--queries 4] [--qid QID ...] [--bins 0,12,60,inf]
        [--out DIR]

Figure 3: alignment maps P (rows: the query's tokens, columns: the video's clips) of chosen test
queries, the ground truth (red) and the top-1 prediction (white, dashed) marked, the IoU in the title.
The model is the run's selected checkpoint (results.json "checkpoint", loaded weights-only) and the
data side is the run's own (recomposed from RUN_DIR/.hydra/config.yaml; run from the folder the run
was trained in, as its relative data paths are). Without ``--qid`` the queries are spread over the
test split's IoU ranking: the best, the worst and evenly spaced ones between.

Figure 4: the top-1 IoU against video length, from predictions_test.jsonl and the test annotations:
one point per video (mean over its queries), and the mIoU of each length bin as a line
(``fsan_lightning.metrics.length_breakdown``; default bins: 8 bins with about as many videos each).
Also writes the bins as ``figure4_length.csv``.

Outputs go to ``RUN_DIR/figures`` unless ``--out`` says otherwise.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsan_lightning.reproduce import runs
from fsan_lightning.runio import atomic_write_text


@dataclass(frozen=True)
class QueryResult:
    """One test query's top-1 result: IoU in [0, 1] (DiDeMo: the protocol's mean of the 3 best)."""

    qid: str
    vid: str
    duration: float
    iou: float


def read_predictions(path: Path) -> list[dict]:
    """predictions_test.jsonl -> list of records (qid, vid, duration, pred_relevant_windows)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (the run did not test a checkpoint?)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not row["pred_relevant_windows"]:
                raise ValueError("empty pred_relevant_windows")
            row["qid"] = str(row["qid"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}, line {n}: not a prediction record ({err})") from None
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no prediction")
    return rows


def test_queries(run_dir: Path) -> tuple[str, dict]:
    """(dataset, {qid: Query}) of the run's test split, read from its annotation file."""
    from fsan_lightning.data.readers import read_annotations

    split = runs.test_split_of(run_dir)
    queries, _ = read_annotations(split.dataset, split.annotations,
                                  list(split.durations) if split.durations else None)
    return split.dataset, {q.qid: q for q in queries}


def query_results(predictions: Sequence[dict], queries: dict, dataset: str) -> list[QueryResult]:
    """Top-1 IoU per predicted query, with the metric's definition (docs/metrics.md)."""
    import torch

    from fsan_lightning.metrics import didemo_query_scores, seconds_to_chunks, temporal_iou

    missing = [p["qid"] for p in predictions if p["qid"] not in queries]
    if missing:
        raise ValueError(f"{len(missing)} predicted queries are not in the test annotations, e.g. {missing[:3]}")
    out = []
    for p in predictions:
        q = queries[p["qid"]]
        windows = torch.tensor([w[:2] for w in p["pred_relevant_windows"]], dtype=torch.float64)
        if dataset == "didemo":
            ranked = seconds_to_chunks(windows)[None]
            gt = seconds_to_chunks(torch.tensor(q.moments, dtype=torch.float64))[None]
            iou = float(didemo_query_scores(ranked, gt)[1][0])
        else:
            iou = float(temporal_iou(windows[0], torch.tensor(q.moments[0], dtype=torch.float64)))
        out.append(QueryResult(qid=q.qid, vid=q.vid, duration=float(q.duration), iou=iou))
    return out


def default_bins(durations: Sequence[float], n: int = 8) -> list[float]:
    """Edges of up to ``n`` bins holding about as many distinct video lengths each, none empty.

    Inner edges lie between two consecutive distinct durations (rounded to 0.1 s when that keeps
    them strictly between); the first edge is 0 and the last is inf.
    """
    u = np.unique(np.asarray(durations, dtype=np.float64))
    if u.size == 0:
        raise ValueError("no duration to bin")
    edges = [0.0]
    for k in range(1, min(n, u.size)):
        i = round(k * u.size / n) if n <= u.size else k
        lo, hi = u[i - 1], u[i]
        edge = round(float((lo + hi) / 2), 1)
        if not lo < edge <= hi:
            edge = float((lo + hi) / 2)
        if edge > edges[-1]:
            edges.append(edge)
    return edges + [math.inf]


def parse_bins(text: str) -> list[float]:
    try:
        edges = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bins expects comma-separated seconds like 0,12,60,inf, got {text!r}") \
            from None
    return edges


def figure4(run_dir: str | Path, out_dir: str | Path | None = None, bins: Sequence[float] | None = None
            ) -> tuple[Path, list[dict], list[QueryResult]]:
    """Render Figure 4 to ``<out>/figure4_length.png`` (+ .csv). Returns (png path, bin rows, per-query results)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fsan_lightning.metrics import length_breakdown

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "figures"
    dataset, queries = test_queries(run_dir)
    results = query_results(read_predictions(run_dir / "predictions_test.jsonl"), queries, dataset)
    durations = [r.duration for r in results]
    edges = list(bins) if bins is not None else default_bins(durations)
    table = length_breakdown(durations, [r.iou for r in results], edges)

    per_video: dict[str, list[float]] = {}
    length: dict[str, float] = {}
    for r in results:
        per_video.setdefault(r.vid, []).append(r.iou)
        length[r.vid] = r.duration
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=100)
    vids = sorted(per_video)
    ax.scatter([length[v] for v in vids], [100.0 * float(np.mean(per_video[v])) for v in vids], s=12, zorder=3,
               color="tab:blue", alpha=0.5, label=f"videos ({len(vids)})")
    xs, ys = [], []
    for row in table:
        if row["mIoU"] is None:
            continue
        inside = [d for d in durations if row["lo"] <= d < row["hi"]]
        xs.append(float(np.mean(inside)))
        ys.append(row["mIoU"])
    ax.plot(xs, ys, color="red", marker="o", linewidth=2, label="mIoU per length bin")
    ax.set_xlabel("video length (s)")
    ax.set_ylabel("top-1 IoU (%)")
    ax.set_ylim(-2, 102)
    overall = 100.0 * float(np.mean([r.iou for r in results]))
    ax.set_title(f"mIoU by video length: {len(results)} test queries, mIoU {overall:.2f}", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "figure4_length.png"
    fig.savefig(png)
    plt.close(fig)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["lo_s", "hi_s", "count", "mIoU"])
    for row in table:
        w.writerow([row["lo"], row["hi"], row["count"], "" if row["mIoU"] is None else f"{row['mIoU']:.4f}"])
    atomic_write_text(out_dir / "figure4_length.csv", buf.getvalue())
    return png, table, results


def choose_queries(results: Sequence[QueryResult], n: int) -> list[str]:
    """``n`` qids spread over the IoU ranking (best first, worst last; ties by qid)."""
    if n < 1:
        raise ValueError(f"--queries must be >= 1, got {n}")
    ranked = sorted(results, key=lambda r: (-r.iou, r.qid))
    if n >= len(ranked):
        return [r.qid for r in ranked]
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, n)).astype(int))
    return [ranked[i].qid for i in picks]


def load_run_config(run_dir: str | Path):
    """The run's composed config (.hydra/config.yaml) with ``paths.output_dir`` set to the run directory."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / runs.CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (not a Hydra run directory; pass its config instead)")
    cfg = OmegaConf.load(path)
    cfg.paths.output_dir = str(run_dir)
    return cfg


def selected_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint the run selected on validation (results.json): the run directory's own file of that
    name (so a moved or copied run uses its own), else the recorded path."""
    run_dir = Path(run_dir)
    results = runs.read_json(run_dir / runs.RESULTS) if (run_dir / runs.RESULTS).is_file() else None
    if not results or not results.get("checkpoint"):
        raise FileNotFoundError(f"{run_dir / runs.RESULTS} does not name a selected checkpoint")
    ckpt = Path(results["checkpoint"])
    own = run_dir / "checkpoints" / ckpt.name  # the run directory's copy first (a moved or copied run)
    if own.is_file():
        return own
    if ckpt.is_file():
        return ckpt
    raise FileNotFoundError(f"the selected checkpoint {ckpt} does not exist (nor {own})")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def figure3(run_dir: str | Path, out_dir: str | Path | None = None, cfg=None, queries: int = 4,
            qids: Sequence[str] | None = None, results: Sequence[QueryResult] | None = None) -> list[Path]:
    """Render Figure 3 (one PNG per query) to ``<out>/figure3_<k>_<qid>.png``; returns the paths.

    cfg: the run's composed config (default: recomposed from the run directory); results: per-query
    IoUs to choose the queries from (default: computed from the run's predictions).
    """
    import torch

    from fsan_lightning import _entry as runtime
    from fsan_lightning.data.dataset import collate
    from fsan_lightning.data.text import tokenize
    from fsan_lightning.lit.checkpoint import load_module
    from fsan_lightning.viz.alignment import save_alignment_figure

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "figures"
    cfg = cfg if cfg is not None else load_run_config(run_dir)
    if not qids:
        if results is None:
            dataset, by_qid = test_queries(run_dir)
            results = query_results(read_predictions(run_dir / "predictions_test.jsonl"), by_qid, dataset)
        qids = choose_queries(results, queries)
    module = load_module(selected_checkpoint(run_dir))
    datamodule = runtime.build_datamodule(cfg, vocabulary=list(module.hparams.vocab))
    index = {q.qid: i for i, q in enumerate(datamodule.queries("test"))}
    unknown = [q for q in qids if str(q) not in index]
    if unknown:
        raise ValueError(f"queries {unknown} are not in the run's test split")
    ds = datamodule.dataset_of("test")
    batch = collate([ds[index[str(q)]] for q in qids])
    with torch.no_grad():
        ranking = module.eval_rank(batch)  # EvalRanking(windows [B, K, 3], P [B, Ns, Nv] or None, ...)
    if ranking.P is None:
        raise ValueError(f"{run_dir}: the run's model ({type(module).__name__}) gives no alignment map to draw")
    P, windows = ranking.P, ranking.windows
    paths = []
    for k, qid in enumerate(qids):
        n = int(batch["token_mask"][k].sum())
        length = int(batch["video_mask"][k].sum())
        words = tokenize(batch["query"][k], datamodule.max_tokens) or ["<unk>"]
        paths.append(save_alignment_figure(
            out_dir / f"figure3_{k:02d}_{_safe(str(qid))}.png", P[k, :n, :length].float().numpy(), words[:n],
            float(batch["duration"][k]), gt=batch["gt"][k].tolist(), pred=windows[k, 0, :2].tolist(),
            query=batch["query"][k]))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.reproduce.figures",
                                description="The paper's Figures 3 (alignment maps) and 4 (mIoU by video length).")
    p.add_argument("run_dir")
    p.add_argument("--queries", type=int, default=4, help="Figure 3: how many test queries (default 4)")
    p.add_argument("--qid", action="append", default=None, help="Figure 3: these test queries instead")
    p.add_argument("--bins", type=parse_bins, default=None, help="Figure 4: bin edges in seconds, e.g. 0,12,60,inf")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/figures)")
    args = p.parse_args(argv)
    try:
        png4, table, results = figure4(args.run_dir, args.out, args.bins)
        pngs3 = figure3(args.run_dir, args.out, queries=args.queries, qids=args.qid, results=results)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in [*pngs3, png4]:
        print(f"wrote {path}")
    for row in table:
        miou = "-" if row["mIoU"] is None else f"{row['mIoU']:.2f}"
        print(f"  [{row['lo']:g}, {row['hi']:g}) s: {row['count']} queries, mIoU {miou}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
