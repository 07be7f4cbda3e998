"""Input encoders (paper Sec. 3.1): word vectors -> token features; pooled clips -> clip features.

The paper's parts are :class:`TextEncoder` and :class:`VideoEncoder`; the other classes are variants
(docs/model.md, "Variants"), each replacing one of them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops


class TextEncoder(nn.Module):
    """Token ids -> context-aware token features S' (paper: GloVe -> linear -> transformer).

    Word vectors (``nn.Embedding``, row 0 = padding, frozen unless ``freeze_embeddings=False``)
    -> linear to ``d_model`` -> dropout -> ``layers`` transformer encoder layers (0 = none).

    Args:
        vocab_size: V, rows of the word-vector matrix. word_dim: E (GloVe 50-d by default).
        d_model: output width. layers, num_heads, ffn_dim, dropout: the transformer layers.
        freeze_embeddings: keep the word vectors fixed.
    """

    def __init__(self, vocab_size: int, word_dim: int, d_model: int, layers: int = 1, num_heads: int = 8,
                 ffn_dim: int = 2048, dropout: float = 0.1, freeze_embeddings: bool = True) -> None:
        super().__init__()
        self.out_dim = d_model
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.proj = nn.Linear(word_dim, d_model)
        self._build_word_extras(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder = None
        if layers > 0:
            layer = nn.TransformerEncoderLayer(d_model, num_heads, ffn_dim, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def _build_word_extras(self, vocab_size: int, d_model: int) -> None:
        """Hook for variants that add per-word parameters (built before the transformer layers)."""

    @torch.no_grad()
    def load_word_vectors(self, matrix: Tensor) -> None:
        """Copy a [V, E] word-vector matrix into the embedding (keeps its frozen/trainable state)."""
        expected = tuple(self.embedding.weight.shape)
        if tuple(matrix.shape) != expected:
            raise ValueError(
                f"load_word_vectors: matrix must be [vocab_size, word_dim] = {list(expected)}, "
                f"got {list(matrix.shape)}"
            )
        if not torch.isfinite(matrix).all():
            raise ValueError("load_word_vectors: matrix holds NaN or inf values")
        self.embedding.weight.copy_(matrix.to(self.embedding.weight))

    def word_features(self, tokens: Tensor) -> Tensor:
        """tokens int64 [B, Ns] -> projected word vectors float [B, Ns, d_model] (no context)."""
        return self.proj(self.embedding(tokens))

    def forward(self, tokens: Tensor, token_mask: Tensor) -> Tensor:
        """tokens int64 [B, Ns], token_mask bool [B, Ns] (True = valid) -> float [B, Ns, d_model]."""
        x = self.dropout(self.word_features(tokens))
        if self.encoder is not None:
            x = self.encoder(x, src_key_padding_mask=~token_mask)
        return x


class WordResidualTextEncoder(TextEncoder):
    """Variant: a learned per-word vector (zero at init) added to the projected word vector.

    Each word may move its own direction freely, beyond the ``word_dim``-rank image of the frozen
    word vectors; unseen words keep the projection. Part of the feature-space model of `make train`:
    without it val R1@0.5 fell from 34.9 to 31.3 (session 2, experiments/localization/README.md).
    """

    def _build_word_extras(self, vocab_size: int, d_model: int) -> None:
        self.residual = nn.Embedding(vocab_size, d_model, padding_idx=0)
        nn.init.zeros_(self.residual.weight)

    def word_features(self, tokens: Tensor) -> Tensor:
        return super().word_features(tokens) + self.residual(tokens)


class VideoEncoder(nn.Module):
    """Pooled clip features [B, Nv, Dv] -> V' [B, Nv, d_model] by one linear layer (+ dropout)."""

    def __init__(self, video_dim: int, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.out_dim = d_model
        self.proj = nn.Linear(video_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def prepare(self, video: Tensor, video_mask: Tensor) -> Tensor:
        """Hook for variants that transform the clips before the projection (identity here)."""
        return video

    def forward(self, video: Tensor, video_mask: Tensor) -> Tensor:
        """video float [B, Nv, Dv], video_mask bool [B, Nv] -> float [B, Nv, d_model]."""
        return self.dropout(self.proj(self.prepare(video, video_mask)))


class FeatureSpaceVideoEncoder(VideoEncoder):
    """Variant: no learned map on the video side; V' = the clip features themselves (width Dv).

    The alignment then compares words with clips in the feature space, with nothing on the video side
    to overfit: session 1's learned 500 -> 128 projection overfitted within 1-2 epochs and cost
    val R1@0.5 35.7 -> 28.9 (experiments/localization/README.md, session 2).
    """

    def __init__(self, video_dim: int, d_model: int | None = None, dropout: float = 0.1) -> None:
        if d_model not in (None, video_dim):
            raise ValueError(
                f"FeatureSpaceVideoEncoder: d_model must be the feature width {video_dim} (or null), got {d_model}"
            )
        nn.Module.__init__(self)
        self.out_dim = video_dim
        self.proj = nn.Identity()
        self.dropout = nn.Dropout(dropout)


class CentredVideoEncoder(VideoEncoder):
    """Variant: subtract each video's mean clip over its valid clips before the projection.

    A feature shared by all clips of a video (camera, lighting, scene) then cannot be broadcast to
    every clip by attention; each clip is described by how it differs from the rest of its video.
    """

    def prepare(self, video: Tensor, video_mask: Tensor) -> Tensor:
        return ops.centred(video, video_mask)


class CentredFeatureSpaceVideoEncoder(FeatureSpaceVideoEncoder):
    """Variant: :class:`FeatureSpaceVideoEncoder` on centred clips (each video's mean clip subtracted).

    Every clip carries its video's constant part (scene, actor, camera offset), so even an interaction
    whose outputs at a clip read only that clip and the sentence can learn "this video fits the sentence"
    and raise every clip of it; centring takes that part out of what the interaction reads.
    """

    def prepare(self, video: Tensor, video_mask: Tensor) -> Tensor:
        return ops.centred(video, video_mask)
