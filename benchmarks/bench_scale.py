"""`make bench-scale`: the pipeline at ActivityNet size, on the full anet_sim world (real annotations).

    python -m benchmarks.bench_scale [--workers N] [--passes 2] [--skip-train] [--subset 1000]
        [--out benchmarks/results/scale_latest.json]

1. generation: builds (or finds cached) the full world, ``.data_cache/anet_sim/full`` (10,009 training
   videos, 4,917 validation videos, 6.6 GB of features), with ``--workers`` rendering processes;
2. text: reading train.json, building the vocabulary and tokenising all 37,421 training sentences;
3. loader: an epoch of the framework's data path (`GroundingDataset` + `EpochSampler` + `collate`,
   batch 128, Nv 64, one process, one thread) over ``--loader-samples`` training queries drawn from
   all of them (default 8,192; their videos spread over the whole file), against plain h5py reads of
   the same rows in the same order, alternating passes (benchmarks/bench_data.py at full size);
4. validation: the data module's setup (reading every split and checking the features of all 14,926
   videos) and one validation pass over val_1 (17,505 queries: forward, segment scores, top-5 with
   NMS, metrics) of an untrained `model=fsan_synthetic`, with the per-read data check (shape and
   finiteness of every feature matrix) and without it;
5. memory: peak RSS of a one-epoch training run (`experiment=anet_sim_cpu trainer.max_epochs=1
   test=false`) at full size against the ``--subset`` (default 1000 training videos, 10%) world, each
   in its own process.

Every figure is a ratio of two measurements of the same run (the machine may be shared: the load
average is recorded beside them). Results: JSON to ``--out`` and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, git_commit, load_average, machine_info, median, using_threads

FULL_DIR = REPO / ".data_cache" / "anet_sim"
RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def generation(workers: int, annotations_dir: str | None, subset: int | None = None) -> dict:
    from fsan_lightning.data import anet_sim

    out = anet_sim.world_dir(FULL_DIR, {"subset": subset})
    t0 = time.perf_counter()
    generated = anet_sim.ensure_world(out, annotations_dir, {"subset": subset}, workers=workers)
    seconds = time.perf_counter() - t0
    meta = json.loads((out / anet_sim.PARAMS_FILE).read_text())
    log(f"  generation: {'generated' if generated else 'cached'}; {meta['videos']} videos, "
        f"{meta['feature_rows']} rows, {meta['feature_bytes'] / 1e9:.2f} GB in {meta['seconds']} s "
        f"({meta.get('workers', 1)} workers)")
    return {"generated_now": generated, "check_or_generate_s": round(seconds, 1), "generation_s": meta["seconds"],
            "generation_workers": meta.get("workers", 1), "videos": meta["videos"],
            "feature_rows": meta["feature_rows"], "feature_gb": round(meta["feature_bytes"] / 1e9, 2),
            "splits": meta["splits"], "hash": meta["hash"], "loadavg": load_average()}


def text(world: Path) -> dict:
    from fsan_lightning.data.readers import read_annotations
    from fsan_lightning.data.text import Vocab, is_content, tokenize

    t0 = time.perf_counter()
    queries, _ = read_annotations("anet_sim", world / "train.json")
    t1 = time.perf_counter()
    vocab = Vocab.build((q.sentence for q in queries), 1, 20)
    t2 = time.perf_counter()
    for q in queries:  # what GroundingDataset does per query
        words = tokenize(q.sentence, 20) or ["<unk>"]
        vocab.encode(words)
        [is_content(w) for w in words]
    t3 = time.perf_counter()
    log(f"  text: {len(queries)} sentences, {len(vocab)} words: read {t1 - t0:.2f} s, vocabulary "
        f"{t2 - t1:.2f} s, tokenise {t3 - t2:.2f} s")
    return {"sentences": len(queries), "words": len(vocab), "read_s": round(t1 - t0, 3),
            "vocab_s": round(t2 - t1, 3), "tokenise_s": round(t3 - t2, 3), "loadavg": load_average()}


def loader(world: Path, passes: int, samples: int | None) -> dict:
    """bench_data's comparison on the full world, over ``samples`` training queries drawn uniformly
    (seeded) from all 37k (their videos spread over the whole feature file), or all of them."""
    import random

    from . import bench_data

    class Sampled(bench_data.Pipeline):
        def __init__(self, world_dir, batch):
            super().__init__(world_dir, batch)
            if samples is not None and samples < len(self.queries):
                self.queries = random.Random(0).sample(self.queries, samples)
                self.order = [i for i, _ in bench_data.EpochSampler(self._dataset(), shuffle=True, seed=self.seed)]

    real = bench_data.Pipeline
    bench_data.Pipeline = Sampled
    try:
        with using_threads(1):
            res = bench_data._run(world, 128, passes, log)
    finally:
        bench_data.Pipeline = real
    res["loadavg_end"] = load_average()
    return res


class _Unchecked:
    """A feature store that reads without the shape / finiteness check (the baseline of figure 4)."""

    def __init__(self, store):
        self.store = store

    def read(self, vid, dim=None):
        import numpy as np

        return np.asarray(self.store._load(vid), dtype=np.float32)


def validation(world_root: Path, subset: int | None = None, annotations_dir: str | None = None) -> dict:
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_module

    from fsan_lightning._entry import build_datamodule, build_module

    with initialize_config_module(config_module="fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "experiment=anet_sim_cpu", f"data.subset={'null' if subset is None else subset}",
            f"data.data_dir={world_root}", "paths.output_dir=/tmp/bench_scale", "data.eval_batch_size=256"]
            + ([f"data.annotations_dir={annotations_dir}"] if annotations_dir else []))
    t0 = time.perf_counter()
    dm = build_datamodule(cfg)
    setup_s = time.perf_counter() - t0
    from fsan_lightning.data.features import check_features

    need = {q.vid: 1 for split in ("train", "val", "test") for q in dm.queries(split)}
    t0 = time.perf_counter()
    check_features(dm._store, need)
    check_s = time.perf_counter() - t0
    module = build_module(cfg, dm)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    ds = dm.dataset_of("val")
    times = {}
    for label in ("checked", "unchecked", "checked_again"):
        ds.store = _Unchecked(dm._store) if label == "unchecked" else dm._store
        t0 = time.perf_counter()
        metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
        times[label] = time.perf_counter() - t0
    ds.store = dm._store
    checked = (times["checked"] + times["checked_again"]) / 2
    log(f"  validation: setup {setup_s:.1f} s (feature check {check_s:.1f} s), pass over {len(ds)} queries "
        f"{checked:.1f} s checked, {times['unchecked']:.1f} s unchecked")
    return {"queries": len(ds), "setup_s": round(setup_s, 2), "setup_feature_check_s": round(check_s, 2),
            "pass_checked_s": [round(times["checked"], 2), round(times["checked_again"], 2)],
            "pass_unchecked_s": round(times["unchecked"], 2),
            "checked_over_unchecked": round(checked / times["unchecked"], 3),
            "val_mIoU_untrained": round(float(metrics.get("val/mIoU", float("nan"))), 3),
            "loadavg": load_average()}


def train_rss(subset: int | None, world_root: Path, annotations_dir: str | None = None) -> dict:
    """Peak RSS (MiB) of a one-epoch training run in its own process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rss.json"
        overrides = ["experiment=anet_sim_cpu", f"data.subset={'null' if subset is None else subset}",
                     f"data.data_dir={world_root}", "trainer.max_epochs=1", "test=false", "logger=csv",
                     "callbacks.progress_bar=null", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={tmp}/run"] + ([f"data.annotations_dir={annotations_dir}"]
                                                   if annotations_dir else [])
        code = ("import json, resource, runpy, sys, time\n"
                f"sys.argv = ['fsan_lightning.train'] + {overrides!r}\n"
                "t0 = time.time()\n"
                "try:\n    runpy.run_module('fsan_lightning.train', run_name='__main__')\n"
                "except SystemExit as e:\n    assert not e.code, e.code\n"
                f"json.dump({{'rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
                f"'seconds': time.time() - t0}}, open({str(out)!r}, 'w'))\n")
        env = {**os.environ, "WANDB_MODE": "disabled",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"training run (subset={subset}) failed: {proc.stderr[-3000:]}")
        res = json.loads(out.read_text())
    log(f"  train 1 epoch, subset={subset}: peak RSS {res['rss_mib']:.0f} MiB, {res['seconds']:.0f} s")
    return {"subset": subset, "peak_rss_mib": round(res["rss_mib"], 1), "seconds": round(res["seconds"], 1),
            "loadavg": load_average()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=1, help="rendering processes for the full world")
    p.add_argument("--annotations-dir", default=None)
    p.add_argument("--passes", type=int, default=2, help="alternating loader / raw passes (medians)")
    p.add_argument("--loader-samples", type=int, default=8192,
                   help="training queries of the loader figure (0 = all 37,421)")
    p.add_argument("--subset", type=int, default=1000, help="the small world of the memory figure")
    p.add_argument("--skip-train", action="store_true", help="no memory figure (the two training runs)")
    p.add_argument("--skip-validation", action="store_true")
    p.add_argument("--smoke", type=int, default=None, metavar="N",
                   help="check the wiring on subset N instead of the full world (numbers mean nothing; no memory figure)")
    p.add_argument("--out", default=str(RESULTS / "scale_latest.json"))
    args = p.parse_args(argv)
    started = time.time()
    res = {"command": "python -m benchmarks.bench_scale " + " ".join(argv or sys.argv[1:]),
           "commit": git_commit(), "machine": machine_info(), "loadavg_start": load_average(),
           "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    log("[1/5] generation")
    res["generation"] = generation(args.workers, args.annotations_dir, args.smoke)
    world = FULL_DIR / ("full" if args.smoke is None else f"subset{args.smoke}")
    log("[2/5] text")
    res["text"] = text(world)
    log("[3/5] loader vs raw h5py")
    res["loader"] = loader(world, args.passes, args.loader_samples or None)
    if not args.skip_validation:
        log("[4/5] validation pass")
        res["validation"] = validation(FULL_DIR, args.smoke, args.annotations_dir)
    if not args.skip_train and args.smoke is None:
        log("[5/5] peak RSS of a training epoch")
        small = train_rss(args.subset, FULL_DIR, args.annotations_dir)
        full = train_rss(None, FULL_DIR, args.annotations_dir)
        res["memory"] = {"small": small, "full": full,
                         "growth": round(full["peak_rss_mib"] / small["peak_rss_mib"] - 1, 4)}
    res["seconds"] = round(time.time() - started, 1)
    res["loadavg_end"] = load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(render(res))
    log(f"wrote {out}")
    return 0


def render(res: dict) -> str:
    g, t, ld = res["generation"], res["text"], res["loader"]
    rows = [("generation of the full world (s, workers)", f"{g['generation_s']} s, {g['generation_workers']}", ""),
            ("features (videos, rows, GB)", f"{g['videos']}, {g['feature_rows']}, {g['feature_gb']}", ""),
            ("read + vocabulary + tokenise 37k sentences (s)",
             f"{t['read_s']} + {t['vocab_s']} + {t['tokenise_s']}", ""),
            (f"loader / raw h5py (samples/s, 1 process, 1 thread, {ld['samples']} samples)",
             f"{ld['pipeline_over_raw']:.1%} ({ld['pipeline_samples_per_s']:.0f} vs {ld['raw_samples_per_s']:.0f})",
             ">= 50%")]
    if "validation" in res:
        v = res["validation"]
        rows.append(("validation pass, 17.5k queries (s): checked / unchecked",
                     f"{median(v['pass_checked_s']):.1f} / {v['pass_unchecked_s']:.1f} "
                     f"({v['checked_over_unchecked']:.2f} x)", ""))
        rows.append(("data module setup incl. feature check of all videos (s)",
                     f"{v['setup_s']} ({v['setup_feature_check_s']} check)", ""))
    if "memory" in res:
        m = res["memory"]
        rows.append(("peak RSS of a training epoch, full vs 10% subset (MiB)",
                     f"{m['full']['peak_rss_mib']:.0f} vs {m['small']['peak_rss_mib']:.0f} ({m['growth']:+.1%})",
                     "<= +10%"))
    lines = [f"Commit `{res['commit']}`, `{res['command']}`, {res['started_utc']}, {res['seconds']} s; "
             f"load average {res['loadavg_start']} at start, {res['loadavg_end']} at the end.", "",
             "| figure | value | goal |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
