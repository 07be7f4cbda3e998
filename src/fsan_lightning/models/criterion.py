"""FSAN training objective (Eq. 13): triplet matching loss + SC-weighted inner/outer SAP losses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from .. import ops
from .fsan import FSAN, FSANOutput

_CHOICES = {
    "mask_shared": ("both", "negative", "none"),
    "sap_weights_from": ("sc", "grounding"),
    "sap_tokens": ("all", "content"),
    "match_fn": ("cosine", "sigmoid", "tanh", "identity"),
    "match_on": ("raw", "P", "centred"),
    "outer_form": ("complement", "printed"),
    "weight_form": ("softmax", "raw"),
}


class FSANCriterion(nn.Module):
    """``L = l1 * Lt + sap_weight * (l2 * Li + l3 * Lo)`` on a training batch.

    The positive sentence, the negative sentence (and, with ``negative_video``, the positive
    sentence on another sample's video) run through the network as one concatenated batch.

    Args:
        margin: delta of the triplet loss (Eq. 6).
        l1, l2, l3: loss weights (paper: 1/3 each); ``sap_weight`` (forward) multiplies l2 and l3.
        sap_loss: False = Table 4 row 2: ``l1 = 1``, ``l2 = l3 = 0`` (Li, Lo still reported, no grad).
        tau: temperature of the softmax weights over SC (Decision 3); smaller = sharper.
        mask_shared: Decision 5: words in both sentences are masked out of ``"both"`` scores, of the
            ``"negative"`` score only (as printed), or ``"none"``.
        negative_video: add ``max(0, margin - S(V, S) + S(V-, S))`` with V- the video of another
            sample in the batch (roll by one, skipping same-``vid`` pairs; batch key ``vid``).
        negative_video_weight: weight of that term inside Lt.
        match_fn: ``g`` applied to the raw scores before Eq. 7: ``"cosine"`` (the unscaled cosine in
            [-1, 1]; needs ``align_form="cosine"``), ``"sigmoid"`` / ``"tanh"`` of A, ``"identity"``.
        match_on: Decision 1: ``"raw"`` (g(A)), ``"P"`` (printed; the score is then constant 1) or
            ``"centred"`` (g(A) minus its mean over the token's valid clips, then the max: a word wins
            the margin only where it stands out inside the video, not by whole-video similarity,
            which the cross-modal attention otherwise offers as a shortcut; a documented deviation).
        outer_form: Decision 2: ``"complement"`` (``-log(1 - m_j)``) or ``"printed"`` (``-log m_j``).
        weight_form: Decision 3: ``"softmax"`` of SC / tau (detached) or ``"raw"`` SC (detached).
        eps: floor inside the logs of Eqs. 9 and 11.
        unknown_id: token id never counted as a shared word (None = none).
        mlp_sap_triplet: with ``grounding_head="mlp"``, keep the triplet loss on the alignment map
            next to the head's MIL triplet loss (the head's score = max over segments of
            sigmoid(logit)).
        mlp_mil_temperature: the MLP head's MIL video score (``ops.mil_pool`` of sigmoid(logit) over
            the instances: the valid segments, or the valid clips when the head's ``mode="clip"``):
            None for the hard max (as first built); t > 0 for the smooth maximum
            ``t * log(mean exp(sigmoid(logit) / t))`` (a documented deviation: the hard max gives
            the whole gradient to the single most discriminative instance).
        match_temperature: None for Eq. 7's max over clips; t > 0 for the smooth maximum
            ``t * log(mean_j exp(g(A_ij) / t))`` (``ops.matching_score``): a documented deviation that
            spreads each word's gradient over the clips near its maximum (measured on the synthetic
            world: experiments/localization/README.md).
    """

    def __init__(
        self,
        margin: float = 0.2,
        l1: float = 1 / 3,
        l2: float = 1 / 3,
        l3: float = 1 / 3,
        sap_loss: bool = True,
        tau: float = 0.05,
        mask_shared: str = "both",
        negative_video: bool = False,
        negative_video_weight: float = 1.0,
        match_fn: str = "cosine",
        match_on: str = "raw",
        outer_form: str = "complement",
        weight_form: str = "softmax",
        eps: float = 1e-6,
        unknown_id: int | None = 1,
        mlp_sap_triplet: bool = True,
        mlp_mil_temperature: float | None = None,
        match_temperature: float | None = None,
        sap_weights_from: str = "sc",
        sap_tokens: str = "all",
    ) -> None:
        super().__init__()
        for name, value in (
            ("mask_shared", mask_shared),
            ("match_fn", match_fn),
            ("match_on", match_on),
            ("outer_form", outer_form),
            ("weight_form", weight_form),
            ("sap_weights_from", sap_weights_from),
            ("sap_tokens", sap_tokens),
        ):
            if value not in _CHOICES[name]:
                raise ValueError(f"FSANCriterion: {name} must be one of {_CHOICES[name]}, got {value!r}")
        if min(l1, l2, l3) < 0:
            raise ValueError(f"FSANCriterion: loss weights must be >= 0, got l1={l1}, l2={l2}, l3={l3}")
        if tau <= 0 or eps <= 0:
            raise ValueError(f"FSANCriterion: tau and eps must be > 0, got tau={tau}, eps={eps}")
        self.margin = margin
        self.l1, self.l2, self.l3 = (l1, l2, l3) if sap_loss else (1.0, 0.0, 0.0)
        self.sap_loss = sap_loss
        self.tau = tau
        self.mask_shared = mask_shared
        self.negative_video = negative_video
        self.negative_video_weight = negative_video_weight
        self.match_fn = match_fn
        self.match_on = match_on
        self.outer_form = outer_form
        self.weight_form = weight_form
        self.eps = eps
        self.unknown_id = unknown_id
        self.mlp_sap_triplet = mlp_sap_triplet
        if mlp_mil_temperature is not None and mlp_mil_temperature <= 0:
            raise ValueError(
                f"FSANCriterion: mlp_mil_temperature must be > 0 or None, got {mlp_mil_temperature}"
            )
        self.mlp_mil_temperature = mlp_mil_temperature
        if match_temperature is not None and match_temperature <= 0:
            raise ValueError(f"FSANCriterion: match_temperature must be > 0 or None, got {match_temperature}")
        self.match_temperature = match_temperature
        self.sap_weights_from = sap_weights_from
        self.sap_tokens = sap_tokens

    def forward(self, net: FSAN, batch: Mapping[str, Any], sap_weight: float = 1.0) -> dict[str, Tensor]:
        """Compute the losses.

        Args:
            net: an :class:`FSAN`.
            batch: training batch (docs/architecture.md): ``video`` [B, Nv, Dv], ``video_mask`` [B, Nv],
                ``tokens``/``token_mask``/``content_mask`` [B, Ns], ``neg_tokens``/``neg_token_mask``/
                ``neg_content_mask`` [B, Ns'], ``vid`` (list of B str, for ``negative_video``).
            sap_weight: multiplier of l2 and l3 (the LightningModule's warm-up ramp).

        Returns:
            scalar tensors: ``loss``, ``loss_triplet``, ``loss_inner``, ``loss_outer`` and detached
            diagnostics ``triplet_sentence``, ``triplet_video``, ``triplet_mlp``, ``score_pos``,
            ``score_neg``, ``usable_fraction`` (samples left with tokens after shared-word masking).
        """
        video, vm = batch["video"], batch["video_mask"]
        B = video.shape[0]
        Ns = max(batch["tokens"].shape[1], batch["neg_tokens"].shape[1])
        tok, tm = _pad(batch["tokens"], Ns), _pad(batch["token_mask"], Ns)
        ntok, ntm = _pad(batch["neg_tokens"], Ns), _pad(batch["neg_token_mask"], Ns)
        content = batch.get("content_mask")
        content = None if content is None else _pad(content, Ns)

        videos, vmasks, toks, tmasks = [video, video], [vm, vm], [tok, ntok], [tm, ntm]
        if self.negative_video:
            if "vid" not in batch:
                raise ValueError("FSANCriterion: negative_video=True needs the batch key 'vid'")
            nv_idx, nv_ok = ops.negative_video_indices(batch["vid"])
            nv_idx, nv_ok = nv_idx.to(video.device), nv_ok.to(video.device)
            videos.append(video[nv_idx])
            vmasks.append(vm[nv_idx])
            toks.append(tok)
            tmasks.append(tm)
        out = net(torch.cat(videos), torch.cat(vmasks), torch.cat(toks), torch.cat(tmasks))
        pos, neg = out.select(slice(0, B)), out.select(slice(B, 2 * B))

        shared, neg_shared = ops.shared_token_masks(
            tok, tm, ntok, ntm, ignore_ids=() if self.unknown_id is None else (self.unknown_id,)
        )
        pos_tm = tm & ~shared if self.mask_shared == "both" else tm
        neg_tm = ntm & ~neg_shared if self.mask_shared in ("both", "negative") else ntm
        s_pos = self._match(pos, pos_tm, vm)
        s_neg = self._match(neg, neg_tm, vm)
        usable = pos_tm.any(dim=1) & neg_tm.any(dim=1)
        lt_sentence = _masked_mean(ops.triplet_loss(s_pos, s_neg, self.margin), usable)
        lt_video = lt_sentence.new_zeros(())
        lt_mlp = lt_sentence.new_zeros(())
        if self.negative_video:
            nv = out.select(slice(2 * B, 3 * B))
            s_full = self._match(pos, tm, vm)
            lt_video = _masked_mean(
                ops.triplet_loss(s_full, self._match(nv, tm, vm[nv_idx]), self.margin), nv_ok
            )
        if pos.segment_logits is not None:
            every = torch.ones_like(usable)
            t = self.mlp_mil_temperature
            mil_pos = _mil(net, pos, tm, vm, t)
            lt_mlp = _masked_mean(ops.triplet_loss(mil_pos, _mil(net, neg, ntm, vm, t), self.margin), every)
            if self.negative_video:
                mil_nv = _mil(net, nv, tm, vm[nv_idx], t)
                lt_mlp_video = _masked_mean(ops.triplet_loss(mil_pos, mil_nv, self.margin), nv_ok)
                lt_mlp = lt_mlp + self.negative_video_weight * lt_mlp_video
            lt = lt_mlp
            if self.mlp_sap_triplet:
                lt = lt + lt_sentence + self.negative_video_weight * lt_video
        else:
            lt = lt_sentence + self.negative_video_weight * lt_video

        with torch.set_grad_enabled(torch.is_grad_enabled() and self.sap_loss):
            li, lo = self._sap_losses(net, pos, tm, vm, content)
        if self.sap_loss:
            loss = self.l1 * lt + sap_weight * (self.l2 * li + self.l3 * lo)
        else:
            loss = lt
        return {
            "loss": loss,
            "loss_triplet": lt,
            "loss_inner": li,
            "loss_outer": lo,
            "triplet_sentence": lt_sentence.detach(),
            "triplet_video": lt_video.detach(),
            "triplet_mlp": lt_mlp.detach(),
            "score_pos": _masked_mean(s_pos, usable).detach(),
            "score_neg": _masked_mean(s_neg, usable).detach(),
            "usable_fraction": usable.float().mean(),
        }

    def _g(self, out: FSANOutput) -> Tensor:
        if self.match_fn == "cosine":
            if out.cosine is None:
                raise ValueError("FSANCriterion: match_fn='cosine' needs the network's align_form='cosine'")
            return out.cosine
        if self.match_fn == "sigmoid":
            return torch.sigmoid(out.A)
        if self.match_fn == "tanh":
            return torch.tanh(out.A)
        return out.A

    def _match(self, out: FSANOutput, token_mask: Tensor, video_mask: Tensor) -> Tensor:
        """Eq. 7 on g(A) (or on P for ``match_on="P"``, on centred g(A) for ``"centred"``) -> [B]."""
        t = self.match_temperature
        if self.match_on == "P":
            return ops.matching_score(out.P, token_mask, video_mask, temperature=t)
        g = self._g(out)
        if self.match_on == "centred":
            valid = video_mask[:, None, :].to(g.dtype)
            g = g - (g * valid).sum(dim=2, keepdim=True) / valid.sum(dim=2, keepdim=True).clamp(min=1)
        return ops.matching_score(g, token_mask, video_mask, temperature=t)

    def _sap_losses(
        self, net: FSAN, pos: FSANOutput, tm: Tensor, vm: Tensor, content: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Li, Lo (Eqs. 9-12) on the positive pair, weighted by detached segment weights."""
        min_mask = net.min_token_mask(tm, content)
        if self.sap_weights_from == "grounding":
            # the network's grounding rule on the detached map (never the MLP head's logits)
            detached = replace(pos, P=pos.P.detach(), segment_logits=None)
            sc = net.segment_scores(detached, tm, vm, content_mask=content)
        else:
            sc = ops.segment_scores(pos.P.detach(), tm, vm, min_token_mask=min_mask)
        w = ops.segment_weights(sc, vm, self.tau, self.weight_form)
        inner_tm = tm
        if self.sap_tokens == "content":
            if content is None:
                raise ValueError("FSANCriterion: sap_tokens='content' needs the batch's content_mask")
            has = (content & tm).any(dim=1, keepdim=True)
            inner_tm = torch.where(has, content & tm, tm)
            min_mask = inner_tm
        lin = ops.inner_loss_map(pos.P, inner_tm, vm, self.eps)
        lout = ops.outer_loss_map(pos.P, tm, vm, self.eps, form=self.outer_form, min_token_mask=min_mask)
        return ops.weighted_segment_loss(w, lin).mean(), ops.weighted_segment_loss(w, lout).mean()


def _pad(x: Tensor, n: int) -> Tensor:
    """Right-pad the last dim of [B, N] to n with 0 / False."""
    if x.shape[1] >= n:
        return x
    return torch.cat([x, x.new_zeros((x.shape[0], n - x.shape[1]))], dim=1)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [B] over mask [B]; 0 (still attached to the graph) when the mask is empty."""
    x = torch.where(mask, x, torch.zeros_like(x))
    return x.sum() / mask.sum().clamp(min=1).to(x.dtype)


def _mil(
    net: FSAN, out: FSANOutput, token_mask: Tensor, video_mask: Tensor, temperature: float | None
) -> Tensor:
    """Video-level score of the MLP head -> [B]: ``ops.mil_pool`` (hard max for ``temperature=None``,
    else the smooth maximum) of sigmoid(logit) over the valid segments, or over the valid clips
    (``net.head.clip_logits``) when the head's ``mode="clip"``."""
    head = net.head
    if head is not None and head.mode == "clip":
        logits = head.clip_logits(out.video_features, video_mask, out.text_features, token_mask)
        return ops.mil_pool(torch.sigmoid(logits), video_mask, temperature)
    return ops.mil_pool(torch.sigmoid(out.segment_logits), ops.segment_mask(video_mask), temperature)
