"""Input encoders (paper Sec. 3.1): word vectors -> transformer tokens; pooled clips -> linear."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TextEncoder(nn.Module):
    """Token ids -> context-aware token features.

    Word vectors (``nn.Embedding``, row 0 = padding, frozen unless ``freeze_embeddings=False``)
    -> linear to ``d_model`` -> ``num_layers`` transformer encoder layers (0 = none).

    Args:
        vocab_size: V, rows of the word-vector matrix. word_dim: E (GloVe 50-d by default).
        d_model: output width. num_layers: transformer layers. num_heads, ffn_dim, dropout: as usual.
        freeze_embeddings: keep the word vectors fixed.
        word_residual: add a learned per-word vector of width ``d_model`` (zero at init) to the
            projected word vector: each word may then move its own direction freely, beyond the
            ``word_dim``-rank image of the (frozen) word vectors; unseen words keep the projection.
    """

    def __init__(
        self,
        vocab_size: int,
        word_dim: int,
        d_model: int,
        num_layers: int = 1,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        freeze_embeddings: bool = True,
        word_residual: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)

        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.proj = nn.Linear(word_dim, d_model)
        self.residual = None
        if word_residual:
            self.residual = nn.Embedding(vocab_size, d_model, padding_idx=0)
            nn.init.zeros_(self.residual.weight)
        self.dropout = nn.Dropout(dropout)
        self.encoder = None
        if num_layers > 0:
            layer = nn.TransformerEncoderLayer(d_model, num_heads, ffn_dim, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

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

    def forward(self, tokens: Tensor, token_mask: Tensor) -> Tensor:
        """tokens int64 [B, Ns], token_mask bool [B, Ns] (True = valid) -> float [B, Ns, d_model]."""
        x = self.proj(self.embedding(tokens))
        if self.residual is not None:
            x = x + self.residual(tokens)
        x = self.dropout(x)
        if self.encoder is not None:
            x = self.encoder(x, src_key_padding_mask=~token_mask)
        return x


class VideoEncoder(nn.Module):
    """Pooled clip features [B, Nv, Dv] -> [B, Nv, d_model] by one linear layer (+ dropout).

    Args:
        video_dim, d_model, dropout: as usual.
        projection: ``"linear"`` (a learned ``video_dim -> d_model`` map) or ``"identity"`` (the clip
            features themselves, ``d_model`` must equal ``video_dim``): the alignment then compares
            words with clips in the feature space itself, with nothing learned on the video side to
            overfit (a documented deviation, docs/model.md).
        center: subtract each video's mean feature over its valid clips before the projection.
            A feature shared by all clips of a video (camera, lighting, scene) then cannot be
            broadcast to every clip by attention, and each clip is described by how it differs
            from the rest of its video, which is what grounding needs.
    """

    def __init__(
        self, video_dim: int, d_model: int, dropout: float = 0.1, center: bool = False, projection: str = "linear"
    ) -> None:
        super().__init__()
        if projection not in ("linear", "identity"):
            raise ValueError(f"VideoEncoder: projection must be 'linear' or 'identity', got {projection!r}")
        if projection == "identity" and video_dim != d_model:
            raise ValueError(
                f"VideoEncoder: projection='identity' needs d_model == video_dim, got d_model={d_model}, "
                f"video_dim={video_dim} (set d_model to null to use the feature width)"
            )
        self.proj = nn.Linear(video_dim, d_model) if projection == "linear" else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.center = center

    def forward(self, video: Tensor, video_mask: Tensor | None = None) -> Tensor:
        """video float [B, Nv, Dv], video_mask bool [B, Nv] (needed when ``center``) -> [B, Nv, d_model]."""
        if self.center:
            if video_mask is None:
                raise ValueError("VideoEncoder: center=True needs video_mask")
            m = video_mask[..., None].to(video.dtype)
            mean = (video * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1)
            video = (video - mean) * m
        return self.dropout(self.proj(video))
