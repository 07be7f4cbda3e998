"""FSAN: encoders -> ICIM -> semantic alignment map (+ optional MLP grounding head)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from .. import ops
from .alignment import AlignmentMap
from .encoders import TextEncoder, VideoEncoder
from .heads import MLPGroundingHead
from .icim import ICIM


@dataclass
class FSANOutput:
    """What :class:`FSAN` returns; every tensor is batch-first and 0 on padded tokens/clips.

    Attributes:
        A: float [B, Ns, Nv] raw alignment scores (``scale * cosine`` or scaled dot product).
        P: float [B, Ns, Nv] min-max map over the valid clips of each token, in [0, 1].
        text_features: float [B, Ns, d] S'' after ICIM. video_features: float [B, Nv, d] V''.
        cosine: float [B, Ns, Nv] the unscaled cosine (``align_form="cosine"``), else None.
        segment_logits: float [B, Nv, Nv] MLP head logits, -inf invalid (``grounding_head="mlp"``), else None.
    """

    A: Tensor
    P: Tensor
    text_features: Tensor
    video_features: Tensor
    cosine: Tensor | None = None
    segment_logits: Tensor | None = None

    def select(self, index: slice | Tensor) -> FSANOutput:
        """The same output restricted to the samples ``index`` (a slice or an index tensor)."""
        return replace(self, **{f.name: _take(getattr(self, f.name), index) for f in fields(self)})


def _take(x: Tensor | None, index: slice | Tensor) -> Tensor | None:
    return None if x is None else x[index]


class FSAN(nn.Module):
    """Fine-grained Semantic Alignment Network.

    Args:
        vocab_size, word_dim: size of the word-vector matrix (from the data side; GloVe 50-d default).
        video_dim: clip feature width Dv (paper: 500).
        d_model: hidden width (paper: 512); None = ``video_dim`` (needed by ``video_projection="identity"``).
        text_layers: transformer layers of the text encoder (0 = projection only).
        icim_layers: ICIM layers (paper: 6). num_heads, ffn_dim, dropout: attention heads, FFN width,
            dropout of every transformer block (paper dropout: 0.1).
        max_tokens, max_clips: positional-encoding table sizes.
        cross_attn, inner_attn: ICIM ablation switches (Table 4 rows 3, 4).
        grounding_head: ``"sap"`` (SC on the alignment map, Eq. 8) or ``"mlp"`` (Decision 4, Table 4 row 1).
        freeze_embeddings: keep the word vectors fixed.
        word_residual: a learned per-word vector added to the projected word vector (zero at init).
        icim_residual: ``"postnorm"`` (Eqs. 3-4) or ``"gated"``: zero-initialised gated residuals
            without LayerNorm, so that ICIM starts as the identity (a documented deviation).
        video_projection: ``"linear"`` (paper) or ``"identity"``: no learned map on the video side.
        align_projection: ``"linear"`` (paper's ``W_s``, ``W_v``) or ``"identity"`` (none).
            The last three are documented deviations: with ``identity`` on both and no ICIM, words
            are learned as directions in the clip feature space itself (docs/model.md).
        align_dim: width ``d_l`` of ``W_s``, ``W_v`` (None = ``d_model``).
        align_form: ``"cosine"`` or ``"dot"`` (see :class:`AlignmentMap`).
        score_scale, learn_score_scale: scale of A and whether it is learned.
        sc_min_tokens: tokens entering SC's minimum ``m_j``: ``"all"`` (DESIGN) or ``"content"``
            (content words only, DESIGN "Known risk"; needs ``content_mask``).
        mlp_hidden: width of the MLP head.
        mlp_mode, mlp_segment_rule, mlp_condition: the MLP head's ``mode`` (``"segment"``: every
            segment pooled and scored, as first built; ``"clip"``: clips scored, segments from the
            clip logits), ``segment_rule`` (``"maxsum"`` | ``"contrast"``, clip mode) and
            ``condition`` (``"none"`` | ``"product"``: clip features times the sentence's mean S'');
            see :class:`MLPGroundingHead`.
        grounding_rule: how the ``"sap"`` head ranks segments at inference: ``"sc"`` (Eq. 8) or
            ``"maxsum"`` (centred window sums of the token-mean map, :func:`ops.maxsum_segment_scores`;
            a documented deviation). The SAP losses' weights always use SC.
        maxsum_threshold: alpha of the ``"maxsum"`` rule: clips enter a segment when they lie alpha
            standard deviations (of the video's token-mean map) above its mean (0 = the plain rule).
        grounding_tokens: tokens averaged into the grounding score (SC's ``pos`` or the max-sum
            map): ``"all"`` (DESIGN) or ``"content"`` (needs ``content_mask``).
    """

    def __init__(
        self,
        vocab_size: int,
        word_dim: int,
        video_dim: int,
        d_model: int | None = 512,
        text_layers: int = 1,
        icim_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        max_tokens: int = 64,
        max_clips: int = 256,
        cross_attn: bool = True,
        inner_attn: bool = True,
        grounding_head: str = "sap",
        freeze_embeddings: bool = True,
        align_dim: int | None = None,
        align_form: str = "cosine",
        score_scale: float = 10.0,
        learn_score_scale: bool = False,
        sc_min_tokens: str = "all",
        mlp_hidden: int = 256,
        grounding_rule: str = "sc",
        grounding_tokens: str = "all",
        video_center: bool = False,
        word_residual: bool = False,
        icim_residual: str = "postnorm",
        maxsum_threshold: float = 0.0,
        video_projection: str = "linear",
        align_projection: str = "linear",
        mlp_mode: str = "segment",
        mlp_segment_rule: str = "maxsum",
        mlp_condition: str = "none",
    ) -> None:
        super().__init__()
        if grounding_head not in ("sap", "mlp"):
            raise ValueError(f"FSAN: grounding_head must be 'sap' or 'mlp', got {grounding_head!r}")
        if sc_min_tokens not in ("all", "content"):
            raise ValueError(f"FSAN: sc_min_tokens must be 'all' or 'content', got {sc_min_tokens!r}")
        if grounding_rule not in ("sc", "maxsum"):
            raise ValueError(f"FSAN: grounding_rule must be 'sc' or 'maxsum', got {grounding_rule!r}")
        if grounding_tokens not in ("all", "content"):
            raise ValueError(f"FSAN: grounding_tokens must be 'all' or 'content', got {grounding_tokens!r}")
        if d_model is None:
            d_model = video_dim
        if d_model % num_heads:
            raise ValueError(f"FSAN: d_model={d_model} must be divisible by num_heads={num_heads}")
        self.vocab_size = vocab_size
        self.grounding_head = grounding_head
        self.sc_min_tokens = sc_min_tokens
        self.grounding_rule = grounding_rule
        self.grounding_tokens = grounding_tokens
        if maxsum_threshold < 0:
            raise ValueError(f"FSAN: maxsum_threshold must be >= 0, got {maxsum_threshold}")
        self.maxsum_threshold = float(maxsum_threshold)
        self.text_encoder = TextEncoder(
            vocab_size, word_dim, d_model, text_layers, num_heads, ffn_dim, dropout, freeze_embeddings,
            word_residual=word_residual,
        )
        self.video_encoder = VideoEncoder(video_dim, d_model, dropout, center=video_center, projection=video_projection)
        self.icim = ICIM(
            d_model, icim_layers, num_heads, ffn_dim, dropout, max_tokens, max_clips, cross_attn, inner_attn,
            residual=icim_residual,
        )
        self.alignment = AlignmentMap(
            d_model, align_dim or d_model, align_form, score_scale, learn_score_scale, projection=align_projection
        )
        self.head = (
            MLPGroundingHead(d_model, mlp_hidden, dropout, mlp_mode, mlp_segment_rule, mlp_condition)
            if grounding_head == "mlp"
            else None
        )

    def load_word_vectors(self, matrix: Tensor) -> None:
        """Copy the [vocab_size, word_dim] word-vector matrix into the text encoder."""
        self.text_encoder.load_word_vectors(matrix)

    def forward(self, video: Tensor, video_mask: Tensor, tokens: Tensor, token_mask: Tensor) -> FSANOutput:
        """Run the network.

        Args:
            video: float [B, Nv, Dv]. video_mask: bool [B, Nv], a non-empty valid prefix.
            tokens: int64 [B, Ns] ids (0 = padding). token_mask: bool [B, Ns], >= 1 valid token.

        Returns:
            :class:`FSANOutput`.
        """
        self._check_inputs(video, video_mask, tokens, token_mask)
        tokens = torch.where(token_mask, tokens, torch.zeros_like(tokens))  # padding ids may be anything
        S = self.text_encoder(tokens, token_mask)
        V = self.video_encoder(video, video_mask)
        S, V = self.icim(S, V, token_mask, video_mask)
        A, P, cosine = self.alignment(S, V, token_mask, video_mask)
        logits = self.head(V, video_mask, S, token_mask) if self.head is not None else None
        return FSANOutput(A=A, P=P, text_features=S, video_features=V, cosine=cosine, segment_logits=logits)

    def min_token_mask(self, token_mask: Tensor, content_mask: Tensor | None) -> Tensor | None:
        """Tokens entering SC's minimum under ``sc_min_tokens`` (None = all valid tokens)."""
        if self.sc_min_tokens == "all":
            return None
        if content_mask is None:
            raise ValueError("FSAN: sc_min_tokens='content' needs the batch's content_mask")
        return content_mask & token_mask

    def sap_segment_scores(
        self, out: FSANOutput, token_mask: Tensor, video_mask: Tensor, content_mask: Tensor | None = None
    ) -> Tensor:
        """SC (Eq. 8) on ``out.P`` whatever the head -> float [B, Nv, Nv], -inf invalid."""
        return ops.segment_scores(
            out.P, token_mask, video_mask, min_token_mask=self.min_token_mask(token_mask, content_mask)
        )

    def segment_scores(
        self,
        out: FSANOutput,
        token_mask: Tensor | Mapping[str, Tensor],
        video_mask: Tensor | None = None,
        content_mask: Tensor | None = None,
    ) -> Tensor:
        """Scores used for grounding: ``grounding_rule`` on P (``"sap"``) or the MLP head's logits (``"mlp"``).

        Args:
            out: the forward output. token_mask: bool [B, Ns], or a batch dict holding
                ``token_mask``, ``video_mask`` and (optionally) ``content_mask``.
            video_mask: bool [B, Nv]. content_mask: bool [B, Ns] (needed for ``sc_min_tokens="content"``).

        Returns:
            float [B, Nv, Nv], -inf on invalid cells.
        """
        if isinstance(token_mask, Mapping):
            batch = token_mask
            token_mask, video_mask = batch["token_mask"], batch["video_mask"]
            content_mask = batch.get("content_mask", content_mask)
        if video_mask is None:
            raise ValueError("FSAN.segment_scores: video_mask is required")
        if out.segment_logits is not None:
            return out.segment_logits
        score_tokens = None
        if self.grounding_tokens == "content":
            if content_mask is None:
                raise ValueError("FSAN: grounding_tokens='content' needs the batch's content_mask")
            score_tokens = content_mask & token_mask
        if self.grounding_rule == "maxsum":
            return ops.maxsum_segment_scores(
                out.P, token_mask, video_mask, score_token_mask=score_tokens, threshold=self.maxsum_threshold
            )
        return ops.segment_scores(
            out.P,
            token_mask,
            video_mask,
            min_token_mask=self.min_token_mask(token_mask, content_mask),
            pos_token_mask=score_tokens,
        )

    def _check_inputs(self, video: Tensor, video_mask: Tensor, tokens: Tensor, token_mask: Tensor) -> None:
        if video.dim() != 3 or tokens.dim() != 2:
            shapes = f"{tuple(video.shape)}, {tuple(tokens.shape)}"
            raise ValueError(f"FSAN: need video [B, Nv, Dv] and tokens [B, Ns], got {shapes}")
        B, Nv, _ = video.shape
        if (
            tuple(video_mask.shape) != (B, Nv)
            or tuple(token_mask.shape) != tuple(tokens.shape)
            or tokens.shape[0] != B
        ):
            raise ValueError(
                f"FSAN: mask shapes do not match: video {tuple(video.shape)}, "
                f"video_mask {tuple(video_mask.shape)}, tokens {tuple(tokens.shape)}, "
                f"token_mask {tuple(token_mask.shape)}"
            )
        if video_mask.dtype != torch.bool or token_mask.dtype != torch.bool:
            raise ValueError("FSAN: video_mask and token_mask must be bool (True = valid)")
        no_token = ~token_mask.any(dim=1)
        lengths = video_mask.sum(dim=1)
        prefix = torch.arange(Nv, device=video_mask.device)[None, :] < lengths[:, None]
        no_clip = (lengths == 0) | (prefix != video_mask).any(dim=1)
        bad_ids = ((tokens < 0) | (tokens >= self.vocab_size)) & token_mask
        problems = torch.stack([no_token.any(), no_clip.any(), bad_ids.any()]).tolist()
        if problems[0]:
            raise ValueError(f"FSAN: sample(s) {_indices(no_token)} have no valid token")
        if problems[1]:
            raise ValueError(
                f"FSAN: sample(s) {_indices(no_clip)} have no valid clip or a video_mask that is not a prefix"
            )
        if problems[2]:
            raise ValueError(
                f"FSAN: token ids outside [0, {self.vocab_size}) in sample(s) {_indices(bad_ids.any(dim=1))}"
            )


def _indices(flags: Tensor) -> list[int]:
    return flags.nonzero().flatten().tolist()
