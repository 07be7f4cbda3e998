"""``predict --video``: a video file's features, made exactly as the checkpoint's training features.

The checkpoint records how its training features were extracted (`lit.callbacks.FeatureProvenance`:
backbone, weights hash, frame size, width, frames per second). A video given to ``predict --video``
is decoded and embedded with those settings; a checkpoint without the record (trained on features
from elsewhere, e.g. C3D) or one whose backbone differs from the installed one is refused with a
message saying why, never silently fed features of another kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsan_lightning.data.video.backbone import BackboneSpec

__all__ = ["VideoMismatchError", "VideoRecipe", "checkpoint_backbone", "video_features"]


class VideoMismatchError(ValueError):
    """The checkpoint cannot ground a video file (no backbone recorded, or another backbone)."""


@dataclass(frozen=True)
class VideoRecipe:
    """How a checkpoint's training features were made: the backbone, and the PCA if any.

    projection: None, or (x_mean float32 [D], U float32 [D, dim]) applied as ``(x - x_mean) @ U``.
    """

    spec: BackboneSpec
    projection: tuple[np.ndarray, np.ndarray] | None = None


def checkpoint_backbone(ckpt_path) -> VideoRecipe:
    """The feature extraction a checkpoint was trained on; VideoMismatchError if it records none."""
    from fsan_lightning.lit.callbacks import FeatureProvenance
    from fsan_lightning.lit.checkpoint import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    record = ckpt.get(FeatureProvenance.CHECKPOINT_KEY)
    if not record:
        raise VideoMismatchError(
            f"{ckpt_path} records no feature extractor: it was trained on features not made by "
            "python -m fsan_lightning.extract, so the features of a video file would not match its own. "
            "Use --features with features of the same kind, or train on extracted features (data=own)")
    try:
        spec = BackboneSpec.from_dict(record)
    except ValueError as err:
        raise VideoMismatchError(f"{ckpt_path}: {err}") from None
    video_dim = int(ckpt["hyper_parameters"]["video_dim"])
    projection = ckpt.get(FeatureProvenance.PROJECTION_KEY)
    width = int(record["pca_dim"]) if "pca_dim" in record else spec.dim
    if "pca_dim" in record and (not projection or tuple(projection["U"].shape) != (spec.dim, width)):
        raise VideoMismatchError(f"{ckpt_path} records PCA-reduced features ({width}-d) but not their projection")
    if video_dim != width:
        raise VideoMismatchError(f"{ckpt_path} was trained on {video_dim}-d features but records {width}-d "
                                 f"{spec.name} features: --video cannot make them")
    if projection:
        return VideoRecipe(spec, (projection["x_mean"].numpy(), projection["U"].numpy()))
    return VideoRecipe(spec)


def video_features(path, recipe: VideoRecipe, batch_size: int = 32):
    """(features float32 [T, D], `SampledVideo`) of one file, extracted (and reduced) as recorded.

    Raises VideoMismatchError when the installed backbone is not the recorded one (name or weights
    hash) or is not installed, and `DecodeError` (a ValueError) for a file that cannot be decoded.
    """
    from fsan_lightning.data.video.backbone import BackboneError, load_backbone
    from fsan_lightning.data.video.extractor import extract_video

    spec = recipe.spec
    try:
        encoder = load_backbone(spec.name, spec.image_size)
    except BackboneError as err:
        raise VideoMismatchError(f"the checkpoint's features were made with {spec.name}: {err}") from None
    if encoder.weights_sha256 != spec.weights_sha256:
        raise VideoMismatchError(
            f"the checkpoint's features were made with {spec.name} weights {spec.weights_sha256}, the installed "
            f"weights are {encoder.weights_sha256}: install the weights it was trained with")
    feats, video = extract_video(Path(path), encoder, spec.fps, batch_size)
    if recipe.projection is not None:  # the PCA of the training features (data/video/reduce.py)
        mean, u = recipe.projection
        feats = (feats.astype(np.float64) - mean) @ u
    return np.asarray(feats, dtype=np.float32), video


def clip_thumbnails(video, duration: float, num_clips: int) -> list[np.ndarray]:
    """For each of ``num_clips`` equal clips of the video, the sampled frame nearest its centre."""
    centres = (np.arange(num_clips) + 0.5) * duration / num_clips
    idx = np.abs(video.times[None, :] - centres[:, None]).argmin(1)
    return [video.frames[i] for i in idx]


def save_video_figure(path, result: dict, video) -> Path:
    """The alignment map of one `Grounding` under thumbnails of its clips (`viz.strip`)."""
    from fsan_lightning.viz.strip import save_strip_figure

    P = result["alignment"]
    thumbs = clip_thumbnails(video, result["duration"], P.shape[1])
    return save_strip_figure(path, P, result["tokens"], result["duration"], thumbs,
                             pred=result["pred_relevant_windows"][0][:2], query=result["query"])
