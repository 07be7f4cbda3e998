"""FSAN (paper Fig. 2): text/video encoders -> interaction (ICIM) -> alignment map -> grounder.

The network is assembled from parts (:func:`fsan_lightning.models.build.build_fsan` builds the
paper's form and its variants from a config). Each part is replaceable on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from .heads import HeadOutput


@dataclass
class FSANOutput:
    """What :class:`FSAN` returns; every tensor is batch-first and 0 on padded tokens/clips.

    Attributes:
        A: float [B, Ns, Nv] raw alignment scores. P: float [B, Ns, Nv] min-max map, in [0, 1].
        text_features: float [B, Ns, d] S''. video_features: float [B, Nv, d] V''.
        video_mask: bool [B, Nv] the clips the output was computed on.
        cosine: float [B, Ns, Nv] the unscaled cosine (cosine alignments), else None.
        segment_logits: float [B, Nv, Nv] the head's segment logits, -inf invalid (with a head), else None.
        instance_logits, instance_mask: the head's MIL instances [B, *I] (with a head), else None.
        base_A, base_P, base_cosine: the alignment map of the features before the interaction
            (:class:`TwoStageFSAN`), else None.
        token_weights: float [B, Ns] the words' weights in the grounders' token means (a network with a
            :class:`~.salience.WordSalience`), else None (equal weights).
    """

    A: Tensor
    P: Tensor
    text_features: Tensor
    video_features: Tensor
    video_mask: Tensor
    cosine: Tensor | None = None
    segment_logits: Tensor | None = None
    instance_logits: Tensor | None = None
    instance_mask: Tensor | None = None
    base_A: Tensor | None = None
    base_P: Tensor | None = None
    base_cosine: Tensor | None = None
    token_weights: Tensor | None = None

    def select(self, index: slice | Tensor) -> FSANOutput:
        """The same output restricted to the samples ``index`` (a slice or an index tensor)."""
        return replace(self, **{f.name: _take(getattr(self, f.name), index) for f in fields(self)})


def _take(x: Tensor | None, index: slice | Tensor) -> Tensor | None:
    return None if x is None else x[index]


class FSAN(nn.Module):
    """Fine-grained Semantic Alignment Network, assembled from its parts.

    Args:
        text_encoder: token ids -> S' [B, Ns, d] (:class:`~.encoders.TextEncoder` or a variant).
        video_encoder: clip features -> V' [B, Nv, d] (:class:`~.encoders.VideoEncoder` or a variant).
        interaction: (S', V', masks) -> (S'', V'') (:class:`~.icim.ICIM` or a variant).
        alignment: (S'', V'', masks) -> (A, P, cosine) (:class:`~.alignment.AlignmentMap` or a variant).
        grounder: (P, masks, content_mask) -> segment scores (:class:`~.grounders.SCGrounder`, ...).
        head: None (ground on P, the paper) or an MLP head on V'' (Table 4 row 1), whose segment
            logits then replace the grounder's scores.
        salience: None (the paper: the grounders average the words equally) or a
            :class:`~.salience.WordSalience`, whose per-word weights the grounders' token means use
            (``FSANOutput.token_weights``); it never enters the training losses.
    """

    def __init__(self, text_encoder: nn.Module, video_encoder: nn.Module, interaction: nn.Module,
                 alignment: nn.Module, grounder, head: nn.Module | None = None,
                 salience: nn.Module | None = None) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.video_encoder = video_encoder
        self.interaction = interaction
        self.alignment = alignment
        self.grounder = grounder
        self.head = head
        self.salience = salience

    @property
    def vocab_size(self) -> int:
        return self.text_encoder.embedding.num_embeddings

    def load_word_vectors(self, matrix: Tensor) -> None:
        """Copy the [vocab_size, word_dim] word-vector matrix into the text encoder."""
        self.text_encoder.load_word_vectors(matrix)

    def forward(self, video: Tensor, video_mask: Tensor, tokens: Tensor, token_mask: Tensor) -> FSANOutput:
        """Run the network.

        Args:
            video: float [B, Nv, Dv]. video_mask: bool [B, Nv], a non-empty valid prefix.
            tokens: int64 [B, Ns] ids (0 = padding). token_mask: bool [B, Ns], >= 1 valid token.
        """
        S, V = self._encode(video, video_mask, tokens, token_mask)
        return self._align(*self.interaction(S, V, token_mask, video_mask), token_mask, video_mask,
                           token_weights=self._token_weights(tokens, token_mask))

    def _token_weights(self, tokens: Tensor, token_mask: Tensor) -> Tensor | None:
        """The salience's weights float [B, Ns] (1 on padding), or None without a salience part."""
        if self.salience is None:
            return None
        return torch.where(token_mask, self.salience(torch.where(token_mask, tokens, 0)), 1.0)

    def _encode(self, video: Tensor, video_mask: Tensor, tokens: Tensor, token_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Checked inputs -> the encoders' S' [B, Ns, d] and V' [B, Nv, d]."""
        check_inputs(video, video_mask, tokens, token_mask, self.vocab_size)
        tokens = torch.where(token_mask, tokens, torch.zeros_like(tokens))  # padding ids may be anything
        return self.text_encoder(tokens, token_mask), self.video_encoder(video, video_mask)

    def _align(self, S: Tensor, V: Tensor, token_mask: Tensor, video_mask: Tensor, **extra) -> FSANOutput:
        """Alignment map and head on the interacted features S'' [B, Ns, d], V'' [B, Nv, d]."""
        A, P, cosine = self.alignment(S, V, token_mask, video_mask)
        head: HeadOutput | None = self.head(V, video_mask, S, token_mask) if self.head is not None else None
        return FSANOutput(
            A=A, P=P, text_features=S, video_features=V, video_mask=video_mask, cosine=cosine,
            segment_logits=None if head is None else head.segment_logits,
            instance_logits=None if head is None else head.instance_logits,
            instance_mask=None if head is None else head.instance_mask, **extra,
        )

    def segment_scores(self, out: FSANOutput, token_mask: Tensor, content_mask: Tensor | None = None) -> Tensor:
        """Scores used for grounding -> float [B, Nv, Nv], -inf invalid: the head's logits when there
        is a head, else the grounder on ``out.P`` (``content_mask`` bool [B, Ns] for content-word rules)."""
        if out.segment_logits is not None:
            return out.segment_logits
        if getattr(self.grounder, "reads_features", False):
            return self.grounder.ground_output(self.alignment, out, token_mask, content_mask)
        return self.grounder(out.P, token_mask, out.video_mask, content_mask, out.token_weights)


class TwoStageFSAN(FSAN):
    """Variant: also the alignment map of the features *before* the interaction (``base_*`` outputs).

    Made for blocking the whole-video shortcut of issue 19 ("FSAN that learns"): a matching score on the
    base map (``loss.matching.kind: base``) trains the encoders and the alignment but never the
    interaction, which is then trained only by losses that are local by construction (the SAP terms,
    e.g. weighted by the base map's segments: ``loss.sap.weights_from: base``). The interaction reads
    the encoders' features detached, so the losses on the interacted map train the interaction (and the
    head) only, and the base stays what the matching made it. Grounding reads the interacted map P.
    """

    def forward(self, video: Tensor, video_mask: Tensor, tokens: Tensor, token_mask: Tensor) -> FSANOutput:
        S, V = self._encode(video, video_mask, tokens, token_mask)
        base_A, base_P, base_cosine = self.alignment(S, V, token_mask, video_mask)
        S2, V2 = self.interaction(S.detach(), V.detach(), token_mask, video_mask)
        return self._align(S2, V2, token_mask, video_mask, base_A=base_A, base_P=base_P, base_cosine=base_cosine,
                           token_weights=self._token_weights(tokens, token_mask))


class AttachedTwoStageFSAN(TwoStageFSAN):
    """Variant: :class:`TwoStageFSAN` whose interaction reads the encoders' features attached, and whose base
    map reads them with the interaction's positional encodings (as `make train`'s FSAN with 0 ICIM layers
    does), so a gated interaction starts with its map equal to the base map.

    With ``loss.matching.kind: base`` the matching still never trains the interaction (issue 19's
    whole-video route is blocked), while a loss on the interacted map (the self-training term) trains the
    interaction *and* the words through it: the words keep what that term taught `make train`'s model
    (experiments/localization/README.md, session 8), and the interaction is trained by it alone.
    """

    _bypassed = False
    interacts_on_rows = True  # forward's ``interact``: the interaction on some samples only

    @contextmanager
    def interaction_bypassed(self) -> Iterator[None]:
        """Within: the interacted outputs are the base map's (the interaction is skipped), e.g. for a
        teacher that reads the base map with the grounder of the interacted one."""
        self._bypassed = True
        try:
            yield
        finally:
            self._bypassed = False

    def forward(self, video: Tensor, video_mask: Tensor, tokens: Tensor, token_mask: Tensor,
                interact: Tensor | None = None) -> FSANOutput:
        """As :meth:`FSAN.forward`, plus ``interact``: None (the interaction runs on every sample) or bool [B],
        the samples it runs on; the others' interacted outputs (A, P, cosine, features, head) are their
        base map's, as under :meth:`interaction_bypassed`. For a training pass whose losses read the
        interacted map of some samples only (:meth:`~.criterion.FSANCriterion.interacted_passes`): the
        interaction is most of a step's cost. The interacted samples' outputs are those of a full pass."""
        S, V = self._encode(video, video_mask, tokens, token_mask)
        base_S, base_V = self.interaction.unchanged(S, V, token_mask, video_mask)
        weights = self._token_weights(tokens, token_mask)
        if interact is not None:
            if interact.dtype != torch.bool or tuple(interact.shape) != (video.shape[0],):
                raise ValueError(f"AttachedTwoStageFSAN: interact must be bool [B={video.shape[0]}], "
                                 f"got {interact.dtype} {tuple(interact.shape)}")
            rows = interact.nonzero().flatten()
            if len(rows) == len(interact):
                interact = None
        if self._bypassed or (interact is not None and len(rows) == 0):  # the interacted map is the base map
            out = self._align(base_S, base_V, token_mask, video_mask, token_weights=weights)
            return replace(out, base_A=out.A, base_P=out.P, base_cosine=out.cosine)
        base_A, base_P, base_cosine = self.alignment(base_S, base_V, token_mask, video_mask)
        if interact is None:
            S2, V2 = self.interaction(S, V, token_mask, video_mask)
        else:
            S2_rows, V2_rows = self.interaction(S[rows], V[rows], token_mask[rows], video_mask[rows])
            S2, V2 = base_S.index_put((rows,), S2_rows), base_V.index_put((rows,), V2_rows)
        return self._align(S2, V2, token_mask, video_mask, base_A=base_A, base_P=base_P, base_cosine=base_cosine,
                           token_weights=weights)


def check_inputs(video: Tensor, video_mask: Tensor, tokens: Tensor, token_mask: Tensor, vocab_size: int) -> None:
    """Raise ValueError naming the samples whose shapes, masks or token ids FSAN cannot take."""
    if video.dim() != 3 or tokens.dim() != 2:
        raise ValueError(f"FSAN: need video [B, Nv, Dv] and tokens [B, Ns], got {tuple(video.shape)}, {tuple(tokens.shape)}")
    B, Nv, _ = video.shape
    if tuple(video_mask.shape) != (B, Nv) or tuple(token_mask.shape) != tuple(tokens.shape) or tokens.shape[0] != B:
        raise ValueError(
            f"FSAN: mask shapes do not match: video {tuple(video.shape)}, video_mask {tuple(video_mask.shape)}, "
            f"tokens {tuple(tokens.shape)}, token_mask {tuple(token_mask.shape)}"
        )
    if video_mask.dtype != torch.bool or token_mask.dtype != torch.bool:
        raise ValueError("FSAN: video_mask and token_mask must be bool (True = valid)")
    no_token = ~token_mask.any(dim=1)
    lengths = video_mask.sum(dim=1)
    prefix = torch.arange(Nv, device=video_mask.device)[None, :] < lengths[:, None]
    no_clip = (lengths == 0) | (prefix != video_mask).any(dim=1)
    bad_ids = ((tokens < 0) | (tokens >= vocab_size)) & token_mask
    problems = torch.stack([no_token.any(), no_clip.any(), bad_ids.any()]).tolist()
    if problems[0]:
        raise ValueError(f"FSAN: sample(s) {_indices(no_token)} have no valid token")
    if problems[1]:
        raise ValueError(f"FSAN: sample(s) {_indices(no_clip)} have no valid clip or a video_mask that is not a prefix")
    if problems[2]:
        raise ValueError(f"FSAN: token ids outside [0, {vocab_size}) in sample(s) {_indices(bad_ids.any(dim=1))}")


def _indices(flags: Tensor) -> list[int]:
    return flags.nonzero().flatten().tolist()
