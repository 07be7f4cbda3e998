"""The alignment map under a strip of video thumbnails, so a person sees where a query landed."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def save_strip_figure(path: str | Path, P: np.ndarray, tokens: Sequence[str], duration: float,
                      thumbnails: Sequence[np.ndarray], pred: Sequence[float] | None = None,
                      query: str = "") -> Path:
    """Write a PNG: thumbnails [L images, each uint8 H x W x 3] over the clips of P [n_tokens, L].

    Both panels share the time axis (seconds, 0..duration); the top moment ``pred`` = (start_s,
    end_s) is outlined in both.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = np.asarray(P, dtype=np.float32)
    n, length = P.shape
    if len(thumbnails) != length:
        raise ValueError(f"{len(thumbnails)} thumbnails for {length} clips")
    width = max(6.0, 0.6 * length + 2.0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 1.6 + max(1.6, 0.28 * n + 0.8)), dpi=100,
                                      sharex=True, gridspec_kw={"height_ratios": [1.2, max(1.0, 0.25 * n)]})
    step = duration / length
    for k, img in enumerate(thumbnails):
        top.imshow(img, extent=(k * step, (k + 1) * step, 0, 1), aspect="auto", interpolation="bilinear")
    top.set_xlim(0, duration)
    top.set_ylim(0, 1)
    top.set_yticks([])
    bottom.imshow(P, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest",
                  extent=(0, duration, n - 0.5, -0.5))
    bottom.set_yticks(range(n))
    bottom.set_yticklabels(tokens, fontsize=8)
    bottom.set_xlabel(f"seconds ({length} clips of {step:.2f} s)")
    if pred is not None:
        s, e = float(pred[0]), float(pred[1])
        for ax, (y0, h) in ((top, (0, 1)), (bottom, (-0.5, n))):
            ax.add_patch(plt.Rectangle((s, y0), e - s, h, fill=False, edgecolor="red", linewidth=2.5))
        title = f"{query if len(query) <= 70 else query[:67] + '...'}\ntop moment {s:.1f}-{e:.1f} s"
    else:
        title = query
    top.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
