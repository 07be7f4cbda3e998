"""Toy own-video world: short videos of coloured shapes moving, one described segment each.

    python -m fsan_lightning.data.video.toy OUT_DIR [--videos 24] [--seed 0] [--timestamps-every 3]

writes ``OUT_DIR/videos/toy_NNN.mp4`` and ``OUT_DIR/descriptions.jsonl`` (the format of
`fsan_lightning.data.own`). Each video is 2-4 segments of distinct "actions" (a shape of one colour
moving over a dark background: ``a red circle moves``), each described by one sentence. Every
``timestamps_every``-th video also gets timestamps (evaluation only), so that validation and test
can be scored; training never reads them. Written with PyAV (MPEG-4 part 2 in .mp4), the frames of
each segment are uniform in colour content, so the features of different segments provably differ.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

#: (colour name, RGB)
COLOURS = (("red", (230, 30, 30)), ("green", (30, 200, 40)), ("blue", (40, 60, 230)),
           ("yellow", (240, 220, 30)), ("white", (245, 245, 245)))
SHAPES = ("circle", "square", "bar")
VERBS = ("moves", "slides", "drifts")
BACKGROUND = (40, 40, 40)


def shape_frame(size: int, colour, shape: str, phase: float) -> np.ndarray:
    """uint8 [size, size, 3]: one shape of ``colour`` at horizontal position ``phase`` in [0, 1]."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy, r = (0.25 + 0.5 * phase) * size, 0.5 * size, 0.22 * size
    if shape == "circle":
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif shape == "square":
        m = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    else:
        m = (abs(xx - cx) <= 1.6 * r) & (abs(yy - cy) <= 0.35 * r)
    img[m] = colour
    return img


def write_video(path, frames, fps: int = 8) -> Path:
    """Write uint8 RGB frames [T, H, W, 3] (H, W even) as an MPEG-4 .mp4 with PyAV."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 400_000
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_world(out_dir, videos: int = 24, seed: int = 0, size: int = 96, fps: int = 8,
               timestamps_every: int = 3) -> Path:
    """Write the videos and descriptions.jsonl into out_dir; returns the description file."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    actions = [(c, rgb, s) for c, rgb in COLOURS for s in SHAPES]
    lines = []
    for v in range(videos):
        n_seg = int(rng.integers(2, 5))
        picks = rng.choice(len(actions), size=n_seg, replace=False)
        lengths = rng.integers(3 * fps, 7 * fps, size=n_seg)  # 3-7 s per segment
        frames, sentences, stamps, t = [], [], [], 0
        for a, n in zip(picks, lengths):
            colour, rgb, shape = actions[a]
            frames += [shape_frame(size, rgb, shape, (i / max(1, n - 1))) for i in range(int(n))]
            sentences.append(f"a {colour} {shape} {VERBS[int(rng.integers(len(VERBS)))]}")
            stamps.append([round(t / fps, 3), round((t + int(n)) / fps, 3)])
            t += int(n)
        name = f"toy_{v:03d}"
        write_video(out_dir / "videos" / f"{name}.mp4", np.stack(frames), fps)
        rec = {"video": f"videos/{name}.mp4", "sentences": sentences}
        if timestamps_every and v % timestamps_every == 0:
            rec["timestamps"] = stamps
        lines.append(json.dumps(rec))
    desc = out_dir / "descriptions.jsonl"
    desc.write_text("\n".join(lines) + "\n")
    return desc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.data.video.toy", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timestamps-every", type=int, default=3)
    args = p.parse_args(argv)
    desc = make_world(args.out_dir, args.videos, args.seed, timestamps_every=args.timestamps_every)
    print(f"wrote {args.videos} videos and {desc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
