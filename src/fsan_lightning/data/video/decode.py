"""Decode a video file with PyAV and sample frames at a fixed rate.

Sampling rule: frame k stands for the time ``t_k = (k + 0.5) / fps`` (k = 0, 1, ... while
``t_k < duration``, at least one frame) and is the last decoded frame shown at ``t_k`` (the last
one whose presentation time is <= t_k). The presentation times of the frames used are returned
(``times``): they are what the feature rows stand for. The duration is the last frame's time plus
one frame interval.

Every failure (not a media file, no video stream, a decoder error, a file much shorter than its
header says, i.e. truncated) raises `DecodeError` naming the file.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: a decoded video shorter than this share of the duration its container declares is truncated
TRUNCATION_TOLERANCE = 0.9


class DecodeError(ValueError):
    """A video file that cannot be decoded (the message names the file and the problem)."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass
class SampledVideo:
    """times float64 [T] (s), frames uint8 [T, S, S, 3] RGB, duration (s), native size and rate."""

    path: str
    times: np.ndarray
    frames: np.ndarray
    duration: float
    width: int
    height: int
    native_fps: float


def _av():
    try:
        import av
    except ImportError:
        raise ImportError('decoding videos needs PyAV: pip install -e ".[video]"') from None
    return av


def _frames(path: Path, container) -> Iterator[tuple[float, object]]:
    """(presentation time in s, av.VideoFrame) of every frame of the first video stream."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    for index, frame in enumerate(container.decode(stream)):
        t = frame.time
        yield (float(t) if t is not None else index / rate), frame


def sample_frames(path, fps: float, size: int) -> SampledVideo:
    """Decode ``path`` and return its frames sampled at ``fps``, resized to ``size`` x ``size`` RGB."""
    av = _av()
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not path.is_file():
        raise DecodeError(path, "file not found")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise DecodeError(path, f"not a readable media file ({type(err).__name__}: {err})") from None
    try:
        if not container.streams.video:
            raise DecodeError(path, "no video stream in the file")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            declared = container.duration / 1e6
        width, height = stream.codec_context.width, stream.codec_context.height
        times, frames = [], []
        prev = None  # (time, frame)
        k = 0
        first_time = None
        try:
            for t, frame in _frames(path, container):
                if first_time is None:
                    first_time = t
                while prev is not None and t > (k + 0.5) / fps:
                    times.append(prev[0])
                    frames.append(_rgb(prev[1], size))
                    k += 1
                prev = (t, frame)
        except av.error.FFmpegError as err:
            raise DecodeError(path, f"decoding failed after {len(frames)} sampled frames "
                                    f"({type(err).__name__}: {err})") from None
        if prev is None:
            raise DecodeError(path, "no frame could be decoded")
        duration = max(prev[0] + 1.0 / rate, 1e-3)
        if declared and duration < TRUNCATION_TOLERANCE * declared:
            raise DecodeError(path, f"truncated: frames up to {duration:.2f} s decoded, the file declares "
                                    f"{declared:.2f} s")
        while (k + 0.5) / fps < duration or not frames:
            times.append(prev[0])
            frames.append(_rgb(prev[1], size))
            k += 1
    finally:
        container.close()
    return SampledVideo(str(path), np.asarray(times, dtype=np.float64), np.stack(frames), float(duration),
                        int(width), int(height), rate)


def _rgb(frame, size: int) -> np.ndarray:
    return frame.to_ndarray(width=size, height=size, format="rgb24")


def probe_duration(path) -> float:
    """The duration in seconds the container declares (no decoding); DecodeError if none."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(path, "no video stream in the file")
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1e6
    except (av.error.FFmpegError, OSError) as err:
        raise DecodeError(path, f"not a readable media file ({type(err).__name__}: {err})") from None
    raise DecodeError(path, "the file declares no duration")
