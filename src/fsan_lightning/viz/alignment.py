"""Alignment-map figures (the paper's Figure 3): tokens x clips, ground truth and prediction marked."""
from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import numpy as np


def _figure(P: np.ndarray, tokens: Sequence[str], duration: float, gt: Sequence[float] | None,
            pred: Sequence[float] | None, query: str = "", iou: float | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = np.asarray(P, dtype=np.float32)
    n, length = P.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.12 * length + 2.5), max(2.5, 0.28 * n + 1.4)), dpi=100)
    ax.imshow(P, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(n))
    ax.set_yticklabels(tokens, fontsize=8)
    ax.set_xlabel(f"clip (of {length}; video {duration:.1f} s)")
    sec_to_clip = length / max(duration, 1e-9)
    for box, color, label in ((gt, "red", "ground truth"), (pred, "white", "prediction")):
        if box is None:
            continue
        s, e = float(box[0]) * sec_to_clip - 0.5, float(box[1]) * sec_to_clip - 0.5
        ax.add_patch(plt.Rectangle((s, -0.5), e - s, n, fill=False, edgecolor=color, linewidth=2,
                                   linestyle="-" if color == "red" else "--", label=label))
    title = query if len(query) <= 70 else query[:67] + "..."
    if iou is not None:
        title = f"{title}\nIoU {iou:.2f}"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    fig.tight_layout()
    return fig


def _iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float | None:
    if a is None or b is None:
        return None
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def alignment_figure_array(P: np.ndarray, tokens: Sequence[str], duration: float, gt=None, pred=None,
                           query: str = "") -> np.ndarray:
    """Render one alignment map (P: [n_tokens, n_clips] in [0, 1]) to an RGB uint8 array [H, W, 3]."""
    import matplotlib.pyplot as plt

    fig = _figure(P, tokens, duration, gt, pred, query, _iou(gt, pred))
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def pad_to_same_size(images: Sequence[np.ndarray], fill: int = 255) -> list[np.ndarray]:
    """RGB arrays [H_i, W_i, 3] -> the same arrays padded (bottom, right, white) to [max H, max W, 3].

    W&B shows the images of one key at one size; different sizes make it warn and display them wrong.
    """
    if not images:
        return []
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    out = []
    for im in images:
        canvas = np.full((h, w, im.shape[2]), fill, dtype=im.dtype)
        canvas[: im.shape[0], : im.shape[1]] = im
        out.append(canvas)
    return out


def save_alignment_figure(path: str | Path, P: np.ndarray, tokens: Sequence[str], duration: float, gt=None,
                          pred=None, query: str = "") -> Path:
    """Render one alignment map to a PNG file; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(P, tokens, duration, gt, pred, query, _iou(gt, pred))
    fig.savefig(path)
    plt.close(fig)
    return path
