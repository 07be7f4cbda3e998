"""Features of own videos into one HDF5 file in the ActivityNet layout, resumably.

Layout: one float32 dataset ``[T, D]`` per video at ``key_template.format(vid=...)`` (default
``<vid>/c3d_features``), with attributes ``times`` (float64 [T], the presentation time in seconds of
each row's frame), ``duration`` (s), ``source`` (the video file), ``complete`` (1 once written). The
file's root attribute ``fsan_backbone`` is the JSON `BackboneSpec` (backbone, weights hash, frame
size, width, frames per second); ``fsan_key_template`` the key template. A file made with other
settings is refused rather than mixed.

Resuming: a video whose dataset is complete is skipped; a partial one (a run killed while writing)
is deleted and extracted again. The file is flushed after each video.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..features import DEFAULT_KEY_TEMPLATE
from ..provenance import BACKBONE_ATTR, KEY_TEMPLATE_ATTR
from .backbone import BackboneSpec, FrameEncoder
from .decode import DecodeError, SampledVideo, sample_frames


class FeatureFileMismatch(ValueError):
    """The output file already holds features made with other settings."""


@dataclass(frozen=True)
class VideoItem:
    """One video to extract: its id (the feature key) and its file."""

    vid: str
    path: Path


@dataclass
class ExtractReport:
    """What one extraction run did (written as JSON next to the feature file)."""

    out: str
    backbone: dict
    extracted: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"out": self.out, "backbone": self.backbone, "videos": len(self.extracted) + len(
            self.skipped_existing) + len(self.failed), "extracted": self.extracted,
            "skipped_existing": self.skipped_existing, "failed": self.failed, "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames / self.seconds, 2) if self.seconds > 0 else None}


def encode_frames(encoder: FrameEncoder, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """uint8 [T, S, S, 3] -> float32 [T, D], ``batch_size`` frames per forward pass."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    out = [encoder(frames[a:a + batch_size]).numpy() for a in range(0, len(frames), batch_size)]
    return np.concatenate(out).astype(np.float32)


def extract_video(path, encoder: FrameEncoder, fps: float, batch_size: int = 32
                  ) -> tuple[np.ndarray, SampledVideo]:
    """Features float32 [T, D] of one video file and the sampled video (times, frames, duration)."""
    video = sample_frames(path, fps, encoder.image_size)
    return encode_frames(encoder, video.frames, batch_size), video


def _check_settings(f, spec: BackboneSpec, key_template: str, path) -> None:
    recorded = f.attrs.get(BACKBONE_ATTR)
    if recorded is None:
        if len(f.keys()):
            raise FeatureFileMismatch(f"{path} already holds data not written by fsan_lightning.extract "
                                      "(no fsan_backbone attribute); write to a new file")
        f.attrs[BACKBONE_ATTR] = json.dumps(spec.to_dict(), sort_keys=True)
        f.attrs[KEY_TEMPLATE_ATTR] = key_template
        return
    old = json.loads(recorded)
    if old != spec.to_dict() or f.attrs.get(KEY_TEMPLATE_ATTR) != key_template:
        raise FeatureFileMismatch(
            f"{path} holds features made with {old} (key {f.attrs.get(KEY_TEMPLATE_ATTR)!r}); this run uses "
            f"{spec.to_dict()} (key {key_template!r}): write to a new file or use the same settings")


def read_backbone_spec(path) -> BackboneSpec | None:
    """The `BackboneSpec` recorded in a feature file (None if the file has none, e.g. C3D features)."""
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get(BACKBONE_ATTR)
    return None if raw is None else BackboneSpec.from_dict(json.loads(raw))


def extract_many(items: Sequence[VideoItem], out, encoder: FrameEncoder, fps: float = 1.0,
                 key_template: str = DEFAULT_KEY_TEMPLATE, batch_size: int = 32, progress: bool = True,
                 log: Callable[[str], None] = print) -> ExtractReport:
    """Extract every item into ``out`` (created or appended to); failures are reported and skipped.

    Raises FeatureFileMismatch before any work when ``out`` was made with other settings, and
    ValueError for duplicate video ids.
    """
    import h5py

    if "{vid}" not in key_template:
        raise ValueError(f"key template {key_template!r} must contain '{{vid}}'")
    seen: dict[str, Path] = {}
    for it in items:
        if it.vid in seen:
            raise ValueError(f"two videos have the id {it.vid!r}: {seen[it.vid]} and {it.path}")
        seen[it.vid] = it.path
    spec = encoder.spec(fps)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ExtractReport(out=str(out), backbone=spec.to_dict())
    started = time.perf_counter()
    with h5py.File(out, "a") as f:
        _check_settings(f, spec, key_template, out)
        bar = _progress(len(items), progress)
        try:
            for it in items:
                key = key_template.format(vid=it.vid)
                if key in f and int(f[key].attrs.get("complete", 0)) == 1:
                    report.skipped_existing.append(it.vid)
                    bar.update(1)
                    continue
                if key in f:
                    del f[key]  # a partial write of a killed run
                try:
                    feats, video = extract_video(it.path, encoder, fps, batch_size)
                except DecodeError as err:
                    report.failed.append({"vid": it.vid, "file": str(it.path), "error": err.problem})
                    log(f"error: {err} (skipped)")
                    bar.update(1)
                    continue
                ds = f.create_dataset(key, data=feats)
                ds.attrs["times"] = video.times
                ds.attrs["duration"] = video.duration
                ds.attrs["source"] = str(it.path)
                ds.attrs["complete"] = 1
                f.flush()
                report.extracted.append(it.vid)
                report.frames += len(feats)
                bar.update(1)
                bar.set_postfix_str(f"{it.vid}: {len(feats)} frames")
        finally:
            bar.close()
    report.seconds = time.perf_counter() - started
    return report


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="extract", disable=not enabled, dynamic_ncols=True)


def video_times(path, vid: str, key_template: str | None = None) -> tuple[np.ndarray, float]:
    """(times [T], duration) recorded for one video of a feature file."""
    import h5py

    with h5py.File(path, "r") as f:
        key = (key_template or f.attrs.get(KEY_TEMPLATE_ATTR) or DEFAULT_KEY_TEMPLATE).format(vid=vid)
        ds = f[key]
        return np.asarray(ds.attrs["times"], dtype=np.float64), float(ds.attrs["duration"])
