"""FSAN's training objective as named terms (Eq. 13): ``loss = sum_k weight_k * term_k``.

A term object reads a :class:`~.training_pass.TrainingPass` and returns one or more named scalar
terms (and detached statistics); :class:`FSANCriterion` weighs them with a dict. Eq. 13 is
``{"triplet": 1/3, "inner": 1/3, "outer": 1/3}``; Table 4's "w/o loss on SAP" is a weights dict
without ``inner`` and ``outer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .. import ops
from .fsan import FSANOutput
from .grounders import SCGrounder
from .matching import MatchingScore
from .self_training import TEACHERS
from .training_pass import TrainingPass

Terms = tuple[dict[str, Tensor], dict[str, Tensor]]

PASSES = frozenset({"pos", "neg", "neg_video", "bind", "sib"})
"""The passes of a :class:`~.training_pass.TrainingPass` (its fields of type FSANOutput)."""


def _matched(matching: MatchingScore, passes: frozenset[str], wanted: frozenset[str]) -> frozenset[str]:
    """The passes of ``wanted`` whose interacted map a term scoring them with ``matching`` reads, given
    the ``passes`` the training pass has (a term without its pass returns no value and reads nothing)."""
    return wanted if matching.reads_interacted and wanted <= passes else frozenset()


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [B] over mask [B]; 0 (still attached to the graph) when the mask is empty."""
    x = torch.where(mask, x, torch.zeros_like(x))
    return x.sum() / mask.sum().clamp(min=1).to(x.dtype)


class TripletTerms:
    """``triplet`` (Eq. 6 on the negative sentence) and ``triplet_video`` (on the negative video).

    Decision 5: words in both sentences are masked out of ``"both"`` scores (default), of the
    ``"negative"`` score only (as printed) or ``"none"``. A sample left without tokens is dropped
    from the mean (statistic ``usable_fraction``). The negative-video term scores the whole sentence
    on V- against V (WSTAN's negative video; Decision 1 of docs/decisions.md).

    Args:
        matching: the matching score (Eq. 7). margin: delta. unknown_id: id never counted as shared.
    """

    names = ("triplet", "triplet_video")

    def __init__(self, matching: MatchingScore, margin: float = 0.2, mask_shared: str = "both",
                 unknown_id: int | None = 1) -> None:
        if mask_shared not in ("both", "negative", "none"):
            raise ValueError(f"TripletTerms: mask_shared must be 'both', 'negative' or 'none', got {mask_shared!r}")
        self.matching, self.margin, self.mask_shared, self.unknown_id = matching, margin, mask_shared, unknown_id

    def interacted_passes(self, passes: frozenset[str]) -> frozenset[str]:
        """The passes whose outputs after the interaction (A, P, cosine, features, head) this term reads,
        given the passes the training pass has (:meth:`FSANCriterion.interacted_passes`)."""
        return _matched(self.matching, passes, frozenset({"pos", "neg"})) | _matched(
            self.matching, passes, frozenset({"pos", "neg_video"}))

    def __call__(self, tp: TrainingPass) -> Terms:
        tm, ntm = tp.token_mask, tp.neg_token_mask
        shared, neg_shared = ops.shared_token_masks(
            tp.tokens, tm, tp.neg_tokens, ntm, ignore_ids=() if self.unknown_id is None else (self.unknown_id,)
        )
        pos_tm = tm & ~shared if self.mask_shared == "both" else tm
        neg_tm = ntm & ~neg_shared if self.mask_shared in ("both", "negative") else ntm
        s_pos, s_neg = self.matching(tp.pos, pos_tm), self.matching(tp.neg, neg_tm)
        usable = pos_tm.any(dim=1) & neg_tm.any(dim=1)
        terms = {"triplet": _masked_mean(ops.triplet_loss(s_pos, s_neg, self.margin), usable)}
        if tp.neg_video is not None:
            s_full, s_nv = self.matching(tp.pos, tm), self.matching(tp.neg_video, tm)
            terms["triplet_video"] = _masked_mean(ops.triplet_loss(s_full, s_nv, self.margin), tp.neg_video_ok)
        stats = {"score_pos": _masked_mean(s_pos, usable).detach(), "score_neg": _masked_mean(s_neg, usable).detach(),
                 "usable_fraction": usable.float().mean()}
        return terms, stats


class BindingTerms:
    """``triplet_binding``: the sentence S against its binding negative S~ on the same video V.

    S~ is S with one content word swapped for a word of another sentence of V
    (`fsan_lightning.data.negatives`), so every word of S~ occurs in V and only a score that needs the
    words at the same clips can tell them apart: Eq. 7 takes each word's maximum on its own and scores
    both alike (the term stays at the margin, experiments/localization/README.md). The default score is
    :class:`~.matching.JointMatchingScore`. No word is masked (S and S~ share all words but one, and
    those words are the test). Samples without a binding negative are dropped from the mean.

    Args:
        matching: the score of (V, S) and (V, S~). margin: delta.
    """

    names = ("triplet_binding",)

    def __init__(self, matching: MatchingScore, margin: float = 0.2) -> None:
        self.matching, self.margin = matching, margin

    def interacted_passes(self, passes: frozenset[str]) -> frozenset[str]:
        """See :meth:`TripletTerms.interacted_passes`."""
        return _matched(self.matching, passes, frozenset({"pos", "bind"}))

    def __call__(self, tp: TrainingPass) -> Terms:
        if tp.bind is None:
            return {}, {}
        s_pos, s_bind = self.matching(tp.pos, tp.token_mask), self.matching(tp.bind, tp.bind_token_mask)
        loss = _masked_mean(ops.triplet_loss(s_pos, s_bind, self.margin), tp.bind_ok)
        stats = {"binding_gap": _masked_mean(s_pos - s_bind, tp.bind_ok).detach()}
        return {"triplet_binding": loss}, stats


class SwappedWordTerms(BindingTerms):
    """Variant of :class:`BindingTerms`: the swapped word alone, at the sentence's moment.

    ``a_j`` = the detached softmax over V's valid clips of the sentence's per-clip token mean of
    ``g(A)`` / ``temperature`` (the moment the whole sentence matches); the term is the hinge
    ``max(0, margin - sum_j a_j (g(A)[w, j] - g(A~)[w', j]))`` for the swapped position(s): at the
    moment of S, its own word must beat the word taken from another moment of the video. The sentence
    form divides that contrast by the number of tokens (one word of ten moves a mean by a tenth), so its
    hinge never leaves the linear part (experiments/localization/README.md).

    Args:
        matching: gives ``g`` (its ``temperature`` is not used). margin: delta. temperature: of ``a``.
    """

    def __init__(self, matching: MatchingScore, margin: float = 0.2, temperature: float = 0.1) -> None:
        super().__init__(matching, margin)
        if temperature <= 0:
            raise ValueError(f"SwappedWordTerms: temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def __call__(self, tp: TrainingPass) -> Terms:
        if tp.bind is None:
            return {}, {}
        g, g_bind = self.matching.g(tp.pos), self.matching.g(tp.bind)
        tm, vm = tp.token_mask, tp.pos.video_mask
        swapped = tm & tp.bind_token_mask & (tp.tokens != tp.bind_tokens)
        ok = tp.bind_ok & swapped.any(dim=1)
        with torch.no_grad():
            per_clip = torch.where(tm[:, :, None], g, torch.zeros_like(g)).sum(1) / tm.sum(1, keepdim=True).clamp(min=1)
            a = torch.softmax(torch.where(vm, per_clip / self.temperature, -torch.inf), dim=1)  # [B, Nv]
        gap = ((g - g_bind) * a[:, None, :]).sum(dim=2)  # [B, Ns]
        gap = (gap * swapped).sum(dim=1) / swapped.sum(dim=1).clamp(min=1)
        loss = _masked_mean(torch.relu(self.margin - gap), ok)
        return {"triplet_binding": loss}, {"binding_gap": _masked_mean(gap, ok).detach()}


class SiblingTerms:
    """``sibling``: the sentence S and a sibling S' (another sentence of the same video V) must each beat
    the other somewhere in V, at the same clips.

    ``d(S, S') = max_j (mean_i g_S[i, j] - mean_k g_S'[k, j])`` (:func:`ops.sentence_contrast_score`,
    smooth maximum at the matching's ``temperature``) over the words of each that the other lacks; the
    term is ``(max(0, margin - d(S, S')) + max(0, margin - d(S', S))) / 2``. Scores of one video's clips
    share what is constant in the video, so a whole-video signature raises both means alike and cannot
    lower the term; a map that is high wherever the video is (the shortcut of every interaction measured
    in experiments/localization/) satisfies at most one of the two hinges. Samples without a sibling, or
    left without words after masking, are dropped from the mean. With V <- S attention S' reads V
    conditioned on S' (its own pass), as at test time.

    Args:
        matching: gives ``g`` and the smooth maximum's ``temperature``. margin: delta.
        mask_shared: drop the words that both sentences contain (Decision 5's reason: they cannot differ).
        tokens: ``"all"`` or ``"content"`` (content words only: the template's order and subject words,
            "then", "the guy", stay out of the contrast).
        window: clips the contrast is averaged over (:func:`ops.sentence_contrast_score`): with 1, maps that
            are merely noisy satisfy both hinges.
        unknown_id: id never counted as shared.
    """

    names = ("sibling",)

    def __init__(self, matching: MatchingScore, margin: float = 0.2, mask_shared: bool = True,
                 tokens: str = "all", window: int = 1, unknown_id: int | None = 1) -> None:
        if tokens not in ("all", "content"):
            raise ValueError(f"SiblingTerms: tokens must be 'all' or 'content', got {tokens!r}")
        self.matching, self.margin, self.mask_shared, self.unknown_id = matching, margin, bool(mask_shared), unknown_id
        self.tokens, self.window = tokens, int(window)

    def interacted_passes(self, passes: frozenset[str]) -> frozenset[str]:
        """See :meth:`TripletTerms.interacted_passes`."""
        return _matched(self.matching, passes, frozenset({"pos", "sib"}))

    def __call__(self, tp: TrainingPass) -> Terms:
        if tp.sib is None:
            return {}, {}
        tm, stm = tp.token_mask, tp.sib_token_mask
        if self.mask_shared:
            shared, sib_shared = ops.shared_token_masks(
                tp.tokens, tm, tp.sib_tokens, stm, ignore_ids=() if self.unknown_id is None else (self.unknown_id,))
            tm, stm = tm & ~shared, stm & ~sib_shared
        if self.tokens == "content":
            if tp.content_mask is None or tp.sib_content_mask is None:
                raise ValueError("SiblingTerms: tokens='content' needs the content masks of both sentences")
            tm, stm = tm & tp.content_mask, stm & tp.sib_content_mask
        g, g_sib, vm, t = self.matching.g(tp.pos), self.matching.g(tp.sib), tp.pos.video_mask, self.matching.temperature
        forward = ops.sentence_contrast_score(g, tm, g_sib, stm, vm, temperature=t, window=self.window)
        backward = ops.sentence_contrast_score(g_sib, stm, g, tm, vm, temperature=t, window=self.window)
        usable = tp.sib_ok & tm.any(dim=1) & stm.any(dim=1)
        hinge = (torch.relu(self.margin - forward) + torch.relu(self.margin - backward)) / 2
        stats = {"sibling_gap": _masked_mean((forward + backward) / 2, usable).detach(),
                 "sibling_usable": usable.float().mean()}
        return {"sibling": _masked_mean(hinge, usable)}, stats


class SAPTerms:
    """``inner`` (Eqs. 9-10) and ``outer`` (Eqs. 11-12, Decision 2) on the positive pair's P.

    Both are weighted over the segments by the detached softmax of a grounding rule's scores / tau
    (Decision 3; ``weight_form="raw"`` uses the scores as printed).

    Args:
        tau: softmax temperature. eps: floor inside the logs. weight_form: ``"softmax"`` | ``"raw"``.
        outer_form: ``"complement"`` (``-log(1 - m_j)``, binding) | ``"printed"`` (``-log m_j``).
        tokens: tokens in Li and in Lo's minimum: ``"all"`` | ``"content"`` (a sample with no content
            word keeps all its tokens).
        weights_rule: the grounding rule that weighs the segments (default SC over all tokens, Eq. 8).
        weights_on: the map the rule reads: ``"own"`` (P itself, detached) or ``"base"`` (the map before
            the interaction, :class:`~.fsan.TwoStageFSAN`: self-training of the interaction against the
            base map's segments).
    """

    names = ("inner", "outer")
    ramped = True  # the LightningModule's warm-up multiplies these terms

    def __init__(self, tau: float = 0.05, eps: float = 1e-6, weight_form: str = "softmax",
                 outer_form: str = "complement", tokens: str = "all", weights_rule=None,
                 weights_on: str = "own") -> None:
        if tau <= 0 or eps <= 0:
            raise ValueError(f"SAPTerms: tau and eps must be > 0, got tau={tau}, eps={eps}")
        for key, value, choices in (("weight_form", weight_form, ("softmax", "raw")),
                                    ("outer_form", outer_form, ("complement", "printed")),
                                    ("tokens", tokens, ("all", "content")),
                                    ("weights_on", weights_on, ("own", "base"))):
            if value not in choices:
                raise ValueError(f"SAPTerms: {key} must be one of {choices}, got {value!r}")
        self.tau, self.eps, self.weight_form, self.outer_form, self.tokens = tau, eps, weight_form, outer_form, tokens
        self.weights_rule = weights_rule if weights_rule is not None else SCGrounder()
        self.weights_on = weights_on

    def interacted_passes(self, passes: frozenset[str]) -> frozenset[str]:
        """P of the positive pair (see :meth:`TripletTerms.interacted_passes`)."""
        return frozenset({"pos"})

    def __call__(self, tp: TrainingPass) -> Terms:
        P, tm, vm, content = tp.pos.P, tp.token_mask, tp.pos.video_mask, tp.content_mask
        teacher = P if self.weights_on == "own" else tp.pos.base_P
        if teacher is None:
            raise ValueError("SAPTerms: weights_on='base' needs a network with a base map (net kind two_stage)")
        w = ops.segment_weights(self.weights_rule(teacher.detach(), tm, vm, content), vm, self.tau, self.weight_form)
        inner_tm, min_mask = tm, None
        if self.tokens == "content":
            if content is None:
                raise ValueError("SAPTerms: tokens='content' needs the batch's content_mask")
            has = (content & tm).any(dim=1, keepdim=True)
            inner_tm = min_mask = torch.where(has, content & tm, tm)
        lin = ops.inner_loss_map(P, inner_tm, vm, self.eps)
        lout = ops.outer_loss_map(P, tm, vm, self.eps, form=self.outer_form, min_token_mask=min_mask)
        return {"inner": ops.weighted_segment_loss(w, lin).mean(),
                "outer": ops.weighted_segment_loss(w, lout).mean()}, {}


class SelfTrainingTerms:
    """``self_training``: a variant of the SAP terms, raising the map inside (and lowering it outside) a
    better teacher's moment than the model's own top segment (docs/model.md, "SAP as self-training").

    The sentence's clip map (the content-word mean of the cosine map, or of A for an alignment without one,
    weighted by the network's word salience when it has one, as the grounders read it) is scored by
    :func:`ops.moment_cross_entropy` against the batch's pseudo-moment: the top segment that
    :class:`~.self_training.SiblingPseudoMoments` found for this training sentence at the start of the epoch,
    reading all the sentences of its video jointly. Like Eqs. 9-12 it needs no timestamps; unlike them its
    teacher is not the map it trains. It trains from epoch ``start_epoch`` on (the map must localize before
    it teaches; not ramped); off with Table 4's ``sap_loss=false``. Without pseudo-moments in the batch
    (validation, or an epoch before ``start_epoch``) it returns no term.

    Args:
        temperature: of the clip softmax (> 0). joint: :class:`SiblingPseudoMoments`'s sibling weight.
        start_epoch: the first epoch (0-based) whose batches carry pseudo-moments (>= 0).
        teacher: ``"sibling"`` (:class:`SiblingPseudoMoments`, on the map the grounder reads) or
            ``"base_sibling"`` (:class:`~.self_training.BaseMapSiblingPseudoMoments`, on the map before the
            interaction; an ``attached_two_stage`` network); ``"sibling_masked"`` / ``"base_sibling_masked"``:
            the same with the siblings' words that the sentence also contains left out of their maps
            (:class:`~.self_training.MaskedSiblingPseudoMoments`); ``"sibling_gated"`` / ``"base_sibling_gated"``:
            siblings weighed down by how much their maps look like the sentence's own
            (:class:`~.self_training.GatedSiblingPseudoMoments`).
    """

    names = ("self_training",)

    def __init__(self, temperature: float = 0.05, joint: float = 1.0, start_epoch: int = 5,
                 teacher: str = "sibling") -> None:
        if temperature <= 0 or start_epoch < 0:
            raise ValueError(f"SelfTrainingTerms: need temperature > 0 and start_epoch >= 0, got {temperature}, "
                             f"{start_epoch}")
        if teacher not in TEACHERS:
            raise ValueError(f"SelfTrainingTerms: teacher must be one of {sorted(TEACHERS)}, got {teacher!r}")
        self.temperature, self.start_epoch = float(temperature), int(start_epoch)
        self.teacher = TEACHERS[teacher](joint)

    def loss(self, out: FSANOutput, token_mask: Tensor, content_mask: Tensor | None, pseudo_moment: Tensor) -> Tensor:
        """The term (a scalar) of the output on (V, S): token_mask / content_mask bool [B, Ns],
        pseudo_moment bool [B, Nv'] (Nv' >= Nv; the clips past Nv are ignored)."""
        M = out.cosine if out.cosine is not None else out.A
        return _moment_term(M, out, token_mask, content_mask, pseudo_moment, self.temperature)

    def interacted_passes(self, passes: frozenset[str]) -> frozenset[str]:
        """The positive pair's map (see :meth:`TripletTerms.interacted_passes`). Read only in the epochs whose
        batches carry pseudo-moments, but declared always: the declaration cannot see the batch."""
        return frozenset({"pos"})

    def __call__(self, tp: TrainingPass) -> Terms:
        if tp.pseudo_moment is None:
            return {}, {}
        return {"self_training": self.loss(tp.pos, tp.token_mask, tp.content_mask, tp.pseudo_moment)}, {}


def _moment_term(M: Tensor, out: FSANOutput, token_mask: Tensor, content_mask: Tensor | None,
                 pseudo_moment: Tensor, temperature: float) -> Tensor:
    """Mean over the batch of :func:`ops.moment_cross_entropy` of the sentence map (the content-word mean of
    M [B, Ns, Nv], weighted by ``out.token_weights``) against pseudo_moment bool [B, Nv'] (Nv' >= Nv)."""
    scores = ops.token_mean(M, token_mask, content_mask, token_weights=out.token_weights)
    moment = pseudo_moment[:, : scores.shape[1]]
    return ops.moment_cross_entropy(scores, moment, out.video_mask, temperature).mean()


class BaseMapSelfTrainingTerms:
    """``self_training_base``: variant of :class:`SelfTrainingTerms` on the map *before* the interaction (a
    two-stage network's ``base_cosine``, or ``base_A`` without one), against the same pseudo-moments.

    With ``self_training`` on the interacted map, both maps learn the teacher's moments: the base map as
    `make train`'s map does with the term (experiments/localization/README.md, session 8), the interaction on
    top of it. It reads the pseudo-moments that ``self_training`` makes, so it needs a positive
    ``self_training`` weight (checked by :func:`~.build.build_criterion`) and a two-stage network (checked by
    :func:`~.build.check_compatible`); off with ``sap_loss=false``.
    Without pseudo-moments in the batch, or without a base map (a one-stage network, weight 0), no term.

    Args:
        temperature: of the clip softmax (> 0; :func:`~.build.build_criterion` passes ``self_training``'s).
    """

    names = ("self_training_base",)

    def __init__(self, temperature: float = 0.05) -> None:
        if temperature <= 0:
            raise ValueError(f"BaseMapSelfTrainingTerms: need temperature > 0, got {temperature}")
        self.temperature = float(temperature)

    def interacted_passes(self, passes: frozenset[str]) -> frozenset[str]:
        """None: the base map, the video mask and the word weights are the same before and after the
        interaction (see :meth:`TripletTerms.interacted_passes`)."""
        return frozenset()

    def __call__(self, tp: TrainingPass) -> Terms:
        out = tp.pos
        M = out.base_cosine if out.base_cosine is not None else out.base_A
        if tp.pseudo_moment is None or M is None:
            return {}, {}
        return {"self_training_base": _moment_term(M, out, tp.token_mask, tp.content_mask, tp.pseudo_moment,
                                                   self.temperature)}, {}


class MILTripletTerms:
    """``mil`` and ``mil_video``: the MLP head's triplet on its video-level MIL score (Decision 4).

    The score is :func:`ops.mil_pool` of sigmoid(instance logits) over the head's instances
    (segments or clips): the hard max (``temperature=None``, as first built) or the smooth maximum.
    """

    names = ("mil", "mil_video")

    def __init__(self, margin: float = 0.2, temperature: float | None = None) -> None:
        if temperature is not None and temperature <= 0:
            raise ValueError(f"MILTripletTerms: temperature must be > 0 or None, got {temperature}")
        self.margin, self.temperature = margin, temperature

    def interacted_passes(self, passes: frozenset[str]) -> frozenset[str]:
        """The head reads the features after the interaction (see :meth:`TripletTerms.interacted_passes`)."""
        return frozenset({"pos", "neg", "neg_video"}) & passes

    def _score(self, out: FSANOutput) -> Tensor:
        if out.instance_logits is None:
            raise ValueError("MILTripletTerms: the network has no MLP head (grounding_head='mlp')")
        return ops.mil_pool(torch.sigmoid(out.instance_logits), out.instance_mask, self.temperature)

    def __call__(self, tp: TrainingPass) -> Terms:
        pos = self._score(tp.pos)
        terms = {"mil": ops.triplet_loss(pos, self._score(tp.neg), self.margin).mean()}
        if tp.neg_video is not None:
            terms["mil_video"] = _masked_mean(
                ops.triplet_loss(pos, self._score(tp.neg_video), self.margin), tp.neg_video_ok
            )
        return terms, {}


class FSANCriterion(nn.Module):
    """``loss = sum_k weights[k] * term_k`` (ramped terms also times ``sap_weight``).

    Args:
        terms: term objects (each with ``names`` and ``__call__(TrainingPass) -> (terms, stats)``).
        weights: weight per term name, >= 0. A term object whose names all weigh 0 is computed without
            gradient (reported, not trained: Table 4's "w/o loss on SAP").
    """

    def __init__(self, terms: Sequence, weights: Mapping[str, float]) -> None:
        super().__init__()
        known = {name for term in terms for name in term.names}
        unknown = sorted(set(weights) - known)
        if unknown:
            raise ValueError(f"FSANCriterion: weights name unknown term(s) {unknown}; terms: {sorted(known)}")
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"FSANCriterion: loss weights must be >= 0, got {negative}")
        if not any(v > 0 for v in weights.values()):
            raise ValueError(f"FSANCriterion: no term has a positive weight ({dict(weights)})")
        self.terms = list(terms)
        self.weights = {k: float(v) for k, v in weights.items()}

    @property
    def needs_negative_video(self) -> bool:
        """Whether a term with nonzero weight reads the negative-video pass."""
        return any(self.weights.get(name, 0.0) > 0 for name in ("triplet_video", "mil_video"))

    @property
    def needs_binding(self) -> bool:
        """Whether a term with nonzero weight reads the binding-negative pass."""
        return self.weights.get("triplet_binding", 0.0) > 0

    @property
    def needs_sibling(self) -> bool:
        """Whether a term with nonzero weight reads the sibling pass."""
        return self.weights.get("sibling", 0.0) > 0

    @property
    def needs_pseudo_moments(self) -> bool:
        """Whether the self-training term trains (its batches need ``pseudo_moment``)."""
        return self.weights.get("self_training", 0.0) > 0

    @property
    def passes(self) -> frozenset[str]:
        """The passes a training pass runs for this criterion (names from :data:`PASSES`)."""
        extra = (("neg_video", self.needs_negative_video), ("bind", self.needs_binding), ("sib", self.needs_sibling))
        return frozenset({"pos", "neg"} | {name for name, on in extra if on})

    def interacted_passes(self, passes: frozenset[str] | set[str]) -> frozenset[str]:
        """The passes of a training pass (of those in ``passes``, names from :data:`PASSES`) whose outputs
        after the interaction any term reads, trained or only reported; the other passes may be computed
        with the interaction bypassed (:class:`~.fsan.AttachedTwoStageFSAN`'s ``interact``). A term
        without an ``interacted_passes`` method is taken to read them all."""
        passes = frozenset(passes)
        unknown = sorted(passes - PASSES)
        if unknown:
            raise ValueError(f"FSANCriterion.interacted_passes: unknown pass(es) {unknown}; passes: {sorted(PASSES)}")
        read = frozenset()
        for term in self.terms:
            declared = getattr(term, "interacted_passes", None)
            read |= passes if declared is None else declared(passes) & passes
        return read

    def trains_self_training_at(self, epoch: int) -> bool:
        """Whether the self-training term trains in (0-based) ``epoch``: its batches then need pseudo-moments."""
        return self.needs_pseudo_moments and epoch >= self.self_training.start_epoch

    @property
    def self_training(self) -> SelfTrainingTerms | None:
        """The self-training term object (its ``teacher`` makes the pseudo-moments), or None."""
        return next((t for t in self.terms if isinstance(t, SelfTrainingTerms)), None)

    def forward(self, tp: TrainingPass, sap_weight: float = 1.0) -> dict:
        """Returns ``{"loss": scalar, "terms": {name: scalar}, "stats": {name: detached scalar}}``."""
        values: dict[str, Tensor] = {}
        stats: dict[str, Tensor] = {}
        loss = None
        for term in self.terms:
            trained = any(self.weights.get(name, 0.0) > 0 for name in term.names)
            with torch.set_grad_enabled(torch.is_grad_enabled() and trained):
                got, extra = term(tp)
            values.update(got)
            stats.update(extra)
            ramp = sap_weight if getattr(term, "ramped", False) else 1.0
            for name, value in got.items():
                weight = self.weights.get(name, 0.0)
                if weight > 0:
                    loss = weight * ramp * value if loss is None else loss + weight * ramp * value
        return {"loss": loss, "terms": values, "stats": stats}
