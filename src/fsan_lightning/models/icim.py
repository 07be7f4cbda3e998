"""Iterative Cross-modal Interaction Module (paper Sec. 3.2, Eqs. 1-4) and its variants."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops


def _zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """x [B, N, d] with the rows where mask [B, N] is False set to 0."""
    return torch.where(mask[..., None], x, torch.zeros_like(x))


class AttentionBlock(nn.Module):
    """``x' = LN(MA(x, y) + x)``; ``x'' = LN(FFN(x') + x')`` (Eqs. 3, 4).

    With ``y = x`` it is the inner-modal (self-attention) block. Padded keys are masked, and every
    operation is per position otherwise, so padding never changes a valid output.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self._build_norm("norm1", d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )
        self._build_norm("norm2", d_model)
        self.dropout = nn.Dropout(dropout)

    def _build_norm(self, name: str, d_model: int) -> None:
        setattr(self, name, nn.LayerNorm(d_model))

    def attend(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        """Multi-head attention of x [B, Nx, d] over context [B, Ny, d] (mask bool [B, Ny], True = valid)."""
        h, _ = self.attn(x, context, context, key_padding_mask=~context_mask, need_weights=False)
        return h

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        """x [B, Nx, d] attends to context [B, Ny, d]; context_mask bool [B, Ny] True = valid."""
        x = self.norm1(x + self.dropout(self.attend(x, context, context_mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class GatedAttentionBlock(AttentionBlock):
    """Variant: ``x' = x + a * MA(x, y)``, ``x'' = x' + b * FFN(x')``, learned scalars a, b from 0, no LN.

    The block starts as the identity, so its input features (e.g. clips in their feature space)
    survive; the post-norm form collapsed the token features within ~10 steps on the synthetic world.
    Over 500-d clips it reached val R1@0.5 23.1 at best and diverged to NaN by epoch 14
    (experiments/localization/README.md, session 2).
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__(d_model, num_heads, ffn_dim, dropout)
        self.gate_attn = nn.Parameter(torch.zeros(()))
        self.gate_ffn = nn.Parameter(torch.zeros(()))

    def _build_norm(self, name: str, d_model: int) -> None:
        setattr(self, name, None)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        x = x + self.gate_attn * self.dropout(self.attend(x, context, context_mask))
        return x + self.gate_ffn * self.dropout(self.ffn(x))


class ICIMLayer(nn.Module):
    """One ICIM layer: cross-modal attention both ways (from the previous outputs), then self-attention.

    Args:
        block: the attention block class. cross_attn: include the S<-V and V<-S blocks (Table 4 row 3).
        inner_attn: include the per-modality self-attention blocks (row 4). Both False = identity.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float, cross_attn: bool = True,
                 inner_attn: bool = True, block: type[AttentionBlock] = AttentionBlock) -> None:
        super().__init__()
        args = (d_model, num_heads, ffn_dim, dropout)
        self.cross_text = block(*args) if cross_attn else None
        self.cross_video = block(*args) if cross_attn else None
        self.self_text = block(*args) if inner_attn else None
        self.self_video = block(*args) if inner_attn else None

    def forward(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """S [B, Ns, d], V [B, Nv, d], masks bool (True = valid) -> (S'', V'') of the same shapes."""
        if self.cross_text is not None:
            S, V = self.cross_text(S, V, clip_mask), self.cross_video(V, S, token_mask)
        if self.self_text is not None:
            S, V = self.self_text(S, S, token_mask), self.self_video(V, V, clip_mask)
        return S, V


class TextSideICIMLayer(nn.Module):
    """Variant layer: only the words are enhanced, ``S <- V`` then ``S <- S``; the clips pass unchanged.

    Args: as :class:`ICIMLayer` (``cross_attn``: the S<-V block; ``inner_attn``: the S<-S block).
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float, cross_attn: bool = True,
                 inner_attn: bool = True, block: type[AttentionBlock] = AttentionBlock) -> None:
        super().__init__()
        args = (d_model, num_heads, ffn_dim, dropout)
        self.cross_text = block(*args) if cross_attn else None
        self.self_text = block(*args) if inner_attn else None

    def forward(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """S [B, Ns, d], V [B, Nv, d] -> (S'', V) of the same shapes."""
        if self.cross_text is not None:
            S = self.cross_text(S, V, clip_mask)
        if self.self_text is not None:
            S = self.self_text(S, S, token_mask)
        return S, V


class ICIM(nn.Module):
    """Learnable positional encodings added to each modality, then ``layers`` ICIM layers (Eqs. 1-4).

    Args:
        d_model, layers (paper: 6), num_heads, ffn_dim, dropout (paper: 0.1).
        max_tokens, max_clips: sizes of the positional tables (longer inputs raise).
        cross_attn, inner_attn: the Table 4 switches (rows 3 and 4).
    """

    block: type[AttentionBlock] = AttentionBlock
    layer: type[nn.Module] = ICIMLayer

    def __init__(self, d_model: int, layers: int = 6, num_heads: int = 8, ffn_dim: int = 2048,
                 dropout: float = 0.1, max_tokens: int = 64, max_clips: int = 256, cross_attn: bool = True,
                 inner_attn: bool = True) -> None:
        super().__init__()
        self.text_pos = nn.Parameter(torch.randn(max_tokens, d_model) * 0.02)
        self.video_pos = nn.Parameter(torch.randn(max_clips, d_model) * 0.02)
        self.layers = nn.ModuleList(
            self._build_layer(d_model, num_heads, ffn_dim, dropout, cross_attn, inner_attn) for _ in range(layers)
        )

    def _build_layer(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float, cross_attn: bool,
                     inner_attn: bool) -> nn.Module:
        return self.layer(d_model, num_heads, ffn_dim, dropout, cross_attn, inner_attn, self.block)

    def positioned(self, S: Tensor, V: Tensor) -> tuple[Tensor, Tensor]:
        """S [B, Ns, d], V [B, Nv, d] plus their positional encodings (ValueError past the tables)."""
        Ns, Nv = S.shape[1], V.shape[1]
        if Ns > self.text_pos.shape[0] or Nv > self.video_pos.shape[0]:
            raise ValueError(
                f"ICIM: got {Ns} tokens and {Nv} clips; max_tokens={self.text_pos.shape[0]}, "
                f"max_clips={self.video_pos.shape[0]} (raise them in the model config)"
            )
        return S + self.text_pos[:Ns], V + self.video_pos[:Nv]

    def unchanged(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """What the interaction outputs with every block the identity: S [B, Ns, d], V [B, Nv, d] plus their
        positional encodings, padded positions zeroed."""
        S, V = self.positioned(S, V)
        return _zero_padding(S, token_mask), _zero_padding(V, clip_mask)

    def forward(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """S [B, Ns, d], V [B, Nv, d] -> enhanced (S'', V''); padded positions are zeroed."""
        S, V = self.positioned(S, V)
        for layer in self.layers:
            S, V = layer(S, V, token_mask, clip_mask)
        return _zero_padding(S, token_mask), _zero_padding(V, clip_mask)


class GatedICIM(ICIM):
    """Variant: ICIM of :class:`GatedAttentionBlock` s (starts as the identity)."""

    block = GatedAttentionBlock


class TextSideICIM(GatedICIM):
    """Variant: gated ICIM layers that enhance only the words (:class:`TextSideICIMLayer`).

    Every ICIM form that rewrites the clips learned to write a whole-video signature into them
    (experiments/localization/README.md); here the clips keep their features, and each word can adapt
    to this video's look of what it names (the synthetic world draws a per-video appearance of every
    factor) by attending to the clips, then to the other words.
    """

    layer = TextSideICIMLayer


class BottleneckGatedICIM(GatedICIM):
    """Variant: gated ICIM layers at a narrow ``width``, between a down- and an up-projection per modality.

    ``S'' = S + up_s(ICIM_w(down_s(S)) - down_s(S))`` (likewise for V), the positional encodings added at
    the full width first, as :class:`ICIM` adds them. The gated layers start as the identity, so the
    whole module does. On `make train`'s model the interaction runs at the clip feature width (500 on
    the ActivityNet-scale world: 10M parameters in 2 layers and ~150 s an epoch of the interaction
    alone on 2 CPU cores, experiments/localization/README.md, session 11); at width 128 it has ~10x
    fewer parameters and flops, and the words and clips keep their feature space.

    Args: as :class:`ICIM` (``d_model``: the width of S and V), plus ``width`` (the layers' width;
        ``num_heads`` must divide it).
    """

    def __init__(self, d_model: int, layers: int = 2, num_heads: int = 8, ffn_dim: int = 2048,
                 dropout: float = 0.1, max_tokens: int = 64, max_clips: int = 256, cross_attn: bool = True,
                 inner_attn: bool = True, width: int = 128) -> None:
        if width < 1 or width % num_heads:
            raise ValueError(f"BottleneckGatedICIM: width={width} must be positive and divisible by "
                             f"num_heads={num_heads}")
        super().__init__(d_model, 0, num_heads, ffn_dim, dropout, max_tokens, max_clips, cross_attn, inner_attn)
        self.width = int(width)
        self.layers = nn.ModuleList(
            self._build_layer(width, num_heads, ffn_dim, dropout, cross_attn, inner_attn) for _ in range(layers)
        )
        # the up-projections have no bias: an unchanged narrow stream (gates at 0) adds exactly nothing
        self.down_text, self.up_text = nn.Linear(d_model, width), nn.Linear(width, d_model, bias=False)
        self.down_video, self.up_video = nn.Linear(d_model, width), nn.Linear(width, d_model, bias=False)

    def forward(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """S [B, Ns, d], V [B, Nv, d] -> (S'', V'') of the same shapes; padded positions are zeroed."""
        S, V = self.positioned(S, V)
        s, v = self.down_text(S), self.down_video(V)
        s2, v2 = s, v
        for layer in self.layers:
            s2, v2 = layer(s2, v2, token_mask, clip_mask)
        return (_zero_padding(S + self.up_text(s2 - s), token_mask),
                _zero_padding(V + self.up_video(v2 - v), clip_mask))


class WindowedGatedAttentionBlock(GatedAttentionBlock):
    """Gated self-attention of each clip over the clips at most ``window`` positions away (and itself).

    A padded clip attends only to itself, so no row is empty and padding stays finite.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float, window: int = 2) -> None:
        super().__init__(d_model, num_heads, ffn_dim, dropout)
        if window < 1:
            raise ValueError(f"WindowedGatedAttentionBlock: window must be >= 1, got {window}")
        self.window = int(window)

    def attend(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        B, N, _ = x.shape
        pos = torch.arange(N, device=x.device)
        band = (pos[:, None] - pos[None, :]).abs() <= self.window
        allowed = (band[None] & context_mask[:, None, :]) | torch.eye(N, dtype=torch.bool, device=x.device)[None]
        blocked = (~allowed).repeat_interleave(self.attn.num_heads, dim=0)  # [B * heads, N, N]
        h, _ = self.attn(x, context, context, attn_mask=blocked, need_weights=False)
        return h


class LocalICIMLayer(nn.Module):
    """Variant layer whose every output at a clip depends only on that clip's neighbourhood and the sentence:
    ``V <- S`` (each clip reads the words), ``S <- S``, then ``V <- V`` within ``window`` clips. There is no
    ``S <- V`` block, so no summary of the video reaches the words or, through them, the clips.

    Args: as :class:`ICIMLayer` (``cross_attn``: the V<-S block; ``inner_attn``: the S<-S and windowed
        V<-V blocks), plus ``window``.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float, cross_attn: bool = True,
                 inner_attn: bool = True, block: type[AttentionBlock] = GatedAttentionBlock, window: int = 2) -> None:
        super().__init__()
        args = (d_model, num_heads, ffn_dim, dropout)
        self.cross_video = block(*args) if cross_attn else None
        self.self_text = block(*args) if inner_attn else None
        self.self_video = WindowedGatedAttentionBlock(*args, window=window) if inner_attn else None

    def forward(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """S [B, Ns, d], V [B, Nv, d] -> (S'', V'') of the same shapes."""
        if self.cross_video is not None:
            V = self.cross_video(V, S, token_mask)
        if self.self_text is not None:
            S, V = self.self_text(S, S, token_mask), self.self_video(V, V, clip_mask)
        return S, V


class LocalICIM(GatedICIM):
    """Variant: gated ICIM layers that keep the evidence local (:class:`LocalICIMLayer`).

    Every ICIM form with a ``S <- V`` path learned a whole-video shortcut here: the alignment of a word
    and a clip came to depend on the rest of the video, so the matching loss was won without localizing
    (experiments/localization/README.md). Here ``A[i, j]`` is a function of the sentence and of clips
    ``j - L*window .. j + L*window`` only (L layers): the matching score can rise only where the video
    shows the words, and a clip reading the words can tell how many of them it shows (an event sharing
    two of the three described factors reads fewer), which Eq. 7's per-word maxima cannot.

    Args: as :class:`ICIM`, plus ``window`` (clips each side in the clip self-attention).
    """

    layer = LocalICIMLayer

    def __init__(self, d_model: int, layers: int = 2, num_heads: int = 8, ffn_dim: int = 2048,
                 dropout: float = 0.1, max_tokens: int = 64, max_clips: int = 256, cross_attn: bool = True,
                 inner_attn: bool = True, window: int = 2) -> None:
        self.window = int(window)  # read by _build_layer inside ICIM.__init__
        super().__init__(d_model, layers, num_heads, ffn_dim, dropout, max_tokens, max_clips, cross_attn, inner_attn)

    def _build_layer(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float, cross_attn: bool,
                     inner_attn: bool) -> nn.Module:
        return self.layer(d_model, num_heads, ffn_dim, dropout, cross_attn, inner_attn, self.block, self.window)


class CentredLocalICIM(LocalICIM):
    """Variant: :class:`LocalICIM` reading centred clips, its update added to the clips as they came.

    ``V'' = V + (LocalICIM(S, V - mean(V)) - (V - mean(V)))``: every clip still carries its video's
    constant part (scene, actor, camera), and a clip that reads the sentence could learn "this video
    fits" from that part alone and raise every clip of the video; the interaction here sees only how
    each clip differs from the rest of its video, while the alignment keeps the clips' own features.
    """

    def forward(self, S: Tensor, V: Tensor, token_mask: Tensor, clip_mask: Tensor) -> tuple[Tensor, Tensor]:
        """S [B, Ns, d], V [B, Nv, d] -> (S'', V + update); padded positions are zeroed."""
        centred = ops.centred(V, clip_mask)
        S2, V2 = super().forward(S, centred, token_mask, clip_mask)
        return S2, _zero_padding(V + V2 - centred, clip_mask)


class _Unpositioned:
    """Mixin for an ICIM class: its positional encodings are fixed zeros (buffers, not parameters).

    With them, a clip's score carries ``<text_pos_i, video_pos_j>``, a learned prior of where in a video a
    word stands, shared by every video; without them, attention without windows is equivariant to a
    permutation of the clips, so a clip's output depends on its content, the video's set of clips and
    the sentence only. The sibling contrast (`SiblingTerms`) on `make train`'s model was learned through
    the positional route alone (held-out 0.105 with the tables, 0.176 with them zeroed;
    experiments/localization/README.md, session 5).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        text, video = self.text_pos.shape, self.video_pos.shape
        del self.text_pos, self.video_pos
        self.register_buffer("text_pos", torch.zeros(text), persistent=False)
        self.register_buffer("video_pos", torch.zeros(video), persistent=False)


class UnpositionedICIM(_Unpositioned, ICIM):
    """Variant: :class:`ICIM` without positional encodings."""


class UnpositionedGatedICIM(_Unpositioned, GatedICIM):
    """Variant: :class:`GatedICIM` without positional encodings."""


class UnpositionedLocalICIM(_Unpositioned, LocalICIM):
    """Variant: :class:`LocalICIM` without positional encodings (its windows still give local order)."""
