"""Builders: the paper's FSAN and its variants from plain config dicts (no Hydra here).

Every part of a network config is ``{"kind": <registered name>, **arguments}``; the registries below
list each part's variants (docs/model.md). The four Table 4 switches are arguments of the builders:
``cross_attn``, ``inner_attn`` (ICIM's blocks), ``grounding_head`` (``"sap"`` grounds on P, ``"mlp"``
adds the MLP head and its MIL terms) and ``sap_loss`` (the inner and outer terms).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .alignment import AlignmentMap, DotProductAlignment, FeatureSpaceAlignment
from .criterion import (
    BaseMapSelfTrainingTerms,
    BindingTerms,
    FSANCriterion,
    MILTripletTerms,
    SAPTerms,
    SelfTrainingTerms,
    SiblingTerms,
    SwappedWordTerms,
    TripletTerms,
)
from .self_training import BaseMapSiblingPseudoMoments, teacher_rule
from .encoders import CentredFeatureSpaceVideoEncoder, CentredVideoEncoder, FeatureSpaceVideoEncoder, TextEncoder, VideoEncoder, WordResidualTextEncoder
from .fsan import FSAN, AttachedTwoStageFSAN, TwoStageFSAN
from .grounders import FeedbackGrounder, MaxSumGrounder, SCGrounder
from .heads import MLPClipHead, MLPSegmentHead
from .icim import ICIM, BottleneckGatedICIM, CentredLocalICIM, GatedICIM, LocalICIM, TextSideICIM, UnpositionedGatedICIM, UnpositionedICIM, UnpositionedLocalICIM
from .matching import BaseMapMatchingScore, CentredMatchingScore, JointMatchingScore, MatchingScore, PrintedMatchingScore
from .salience import WordSalience

TEXT_ENCODERS = {"transformer": TextEncoder, "word_residual": WordResidualTextEncoder}
VIDEO_ENCODERS = {"linear": VideoEncoder, "feature_space": FeatureSpaceVideoEncoder, "centred": CentredVideoEncoder,
                  "centred_feature_space": CentredFeatureSpaceVideoEncoder}
INTERACTIONS = {"icim": ICIM, "gated_icim": GatedICIM, "bottleneck_gated_icim": BottleneckGatedICIM,
                "text_side_icim": TextSideICIM,
                "local_icim": LocalICIM, "centred_local_icim": CentredLocalICIM,
                "unpositioned_icim": UnpositionedICIM, "unpositioned_gated_icim": UnpositionedGatedICIM,
                "unpositioned_local_icim": UnpositionedLocalICIM}
ALIGNMENTS = {"cosine": AlignmentMap, "dot": DotProductAlignment, "feature_space": FeatureSpaceAlignment}
GROUNDERS = {"sc": SCGrounder, "maxsum": MaxSumGrounder, "feedback": FeedbackGrounder}
HEADS = {"segment": MLPSegmentHead, "clip": MLPClipHead}
MATCHING_SCORES = {"raw": MatchingScore, "centred": CentredMatchingScore, "printed": PrintedMatchingScore,
                   "base": BaseMapMatchingScore, "joint": JointMatchingScore}
BINDING_TERMS = {"sentence": BindingTerms, "word": SwappedWordTerms}
BINDING_DEFAULT = {"kind": "sentence", "matching": {"kind": "joint", "temperature": 0.1}}  # fn: the matching's
NETWORKS = {"fsan": FSAN, "two_stage": TwoStageFSAN, "attached_two_stage": AttachedTwoStageFSAN}
REGISTRIES = {"text_encoder": TEXT_ENCODERS, "video_encoder": VIDEO_ENCODERS, "interaction": INTERACTIONS,
              "alignment": ALIGNMENTS, "grounder": GROUNDERS, "head": HEADS, "matching": MATCHING_SCORES,
              "network": NETWORKS}


def _pick(part: str, spec: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """``{"kind": name, **kwargs}`` -> (registered class, kwargs), with a clear error for a bad name."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    registry = REGISTRIES[part]
    if kind not in registry:
        raise ValueError(f"{part}: kind must be one of {sorted(registry)}, got {kind!r}")
    return registry[kind], spec


def _make(part: str, cls: type, *args, **kwargs):
    """``cls(*args, **kwargs)``; a wrong argument names the config part and the class."""
    try:
        return cls(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"model.net.{part} ({cls.__name__}): {err}") from None


def build_fsan(vocab_size: int, word_dim: int, video_dim: int, *, d_model: int | None, num_heads: int,
               ffn_dim: int, dropout: float, text_encoder: Mapping, video_encoder: Mapping, interaction: Mapping,
               alignment: Mapping, grounder: Mapping, head: Mapping | None = None, cross_attn: bool = True,
               inner_attn: bool = True, grounding_head: str = "sap", kind: str = "fsan",
               salience: Mapping | None = None) -> FSAN:
    """The network from its parts' configs.

    Args:
        vocab_size, word_dim, video_dim: from the data side.
        d_model, num_heads, ffn_dim, dropout: shared widths (paper: 512, 8, 2048, 0.1);
            ``d_model=None`` = ``video_dim`` (for the feature-space parts).
        text_encoder, video_encoder, interaction, alignment, grounder, head: ``{"kind": ..., **kwargs}``;
            ``head`` is built only for ``grounding_head="mlp"``.
        cross_attn, inner_attn, grounding_head: Table 4 switches.
        kind: the network class: ``"fsan"`` (the paper), ``"two_stage"`` (also the map before the interaction)
            or ``"attached_two_stage"`` (the same, the interaction reading the encoders' features attached).
        salience: None (equal word weights, the paper) or the arguments of :class:`~.salience.WordSalience`
            (``min_videos``, ``power``, ``floor``); it is fitted from the training split before training
            (``FSANModule.fit_word_salience``).
    """
    if grounding_head not in ("sap", "mlp"):
        raise ValueError(f"build_fsan: grounding_head must be 'sap' or 'mlp', got {grounding_head!r}")
    d = video_dim if d_model is None else d_model
    if d % num_heads:
        raise ValueError(f"build_fsan: d_model={d} must be divisible by num_heads={num_heads}")
    cls, kw = _pick("text_encoder", text_encoder)
    text = _make("text_encoder", cls, vocab_size, word_dim, d, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout, **kw)
    cls, kw = _pick("video_encoder", video_encoder)
    video = _make("video_encoder", cls, video_dim, d, dropout=dropout, **kw)
    cls, kw = _pick("interaction", interaction)
    inter = _make("interaction", cls, d, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout, cross_attn=cross_attn,
                inner_attn=inner_attn, **kw)
    cls, kw = _pick("alignment", alignment)
    align = _make("alignment", cls, d, **kw)
    cls, kw = _pick("grounder", grounder)
    if "inner" in kw:  # a grounder that wraps another (feedback)
        icls, ikw = _pick("grounder", kw["inner"])
        kw["inner"] = _make("grounder", icls, **ikw)
    ground = _make("grounder", cls, **kw)
    mlp = None
    if grounding_head == "mlp":
        if head is None:
            raise ValueError("build_fsan: grounding_head='mlp' needs a head config")
        cls, kw = _pick("head", head)
        mlp = _make("head", cls, d, dropout=dropout, **kw)
    sal = None if salience is None else _make("salience", WordSalience, vocab_size, **dict(salience))
    if sal is not None and isinstance(ground, SCGrounder):
        raise ValueError("build_fsan: net.salience needs a maxsum or feedback grounder (SC takes no token weights)")
    network, _ = _pick("network", {"kind": kind})
    return network(text, video, inter, align, ground, mlp, salience=sal)


# the terms Table 4's "w/o loss on SAP" switches off: the paper's (Eqs. 9-12) and their self-training variant
SAP_NAMES = SAPTerms.names + SelfTrainingTerms.names + BaseMapSelfTrainingTerms.names


def effective_weights(weights: Mapping[str, float], sap_loss: bool = True, grounding_head: str = "sap") -> dict[str, float]:
    """Eq. 13's weights after the Table 4 switches.

    ``grounding_head="mlp"`` adds the head's MIL terms at the weights of the matching terms they
    mirror (``mil`` = ``triplet``, ``mil_video`` = ``triplet_video``). ``sap_loss=False`` sets
    ``inner`` and ``outer`` to 0 and rescales the matching terms so that ``triplet`` weighs 1
    (the row's ``loss = Lt``).
    """
    w = {k: float(v) for k, v in weights.items()}
    if "triplet" not in w or w["triplet"] <= 0:
        raise ValueError(f"loss weights need a positive 'triplet' weight, got {dict(weights)}")
    if grounding_head == "mlp":
        w["mil"] = w["triplet"]
        if "triplet_video" in w:
            w["mil_video"] = w["triplet_video"]
    if not sap_loss:
        scale = 1.0 / w["triplet"]
        w = {k: (0.0 if k in SAP_NAMES else v * scale) for k, v in w.items()}
        w.setdefault("inner", 0.0)
        w.setdefault("outer", 0.0)
    return w


def build_criterion(weights: Mapping[str, float], *, margin: float = 0.2, matching: Mapping | None = None,
                    mask_shared: str = "both", unknown_id: int | None = 1, sap: Mapping | None = None,
                    mil_temperature: float | None = None, sap_loss: bool = True, grounding_head: str = "sap",
                    binding: Mapping | None = None, sibling: Mapping | None = None,
                    self_training: Mapping | None = None, net: FSAN | None = None) -> FSANCriterion:
    """The loss from its config; with ``net``, checks that the two fit together (at build time).

    Args:
        weights: Eq. 13's weights by term name (``triplet``, ``triplet_video``, ``inner``, ``outer``).
        margin, mask_shared, unknown_id: the triplet terms. matching: ``{"kind": ..., fn, temperature}``.
        sap: :class:`SAPTerms` arguments, plus ``weights_from``: ``"sc"`` (Eq. 8 on P, default),
            ``"grounding"`` (the network's grounder on P) or ``"base"`` (the network's grounder on the map
            before the interaction; a ``two_stage`` network); the last two need ``net``.
        mil_temperature: the MLP head's MIL pooling. sap_loss, grounding_head: Table 4 switches.
        binding: the ``triplet_binding`` term: ``{"kind": "sentence" (:class:`BindingTerms`) | "word"
            (:class:`SwappedWordTerms`), "matching": {...}, **arguments}``, default :data:`BINDING_DEFAULT`
            (its ``fn`` defaults to ``matching``'s);
            it trains only with a positive ``weights["triplet_binding"]``.
        sibling: :class:`SiblingTerms` arguments (``margin``, ``mask_shared``) plus ``matching: {...}``
            (default: the matching score's kind, ``fn`` and ``temperature``); it trains only with a
            positive ``weights["sibling"]`` (and ``data.siblings``).
        self_training: :class:`SelfTrainingTerms` arguments (``temperature``, ``joint``, ``start_epoch``,
            ``teacher``); it trains only with a positive ``weights["self_training"]`` (the pseudo-moments
            come from ``FSANModule``). :class:`BaseMapSelfTrainingTerms` (``weights["self_training_base"]``)
            shares its temperature and pseudo-moments.
    """
    cls, kw = _pick("matching", matching or {"kind": "raw"})
    score = cls(**kw)
    sap = dict(sap or {})
    weights_from = sap.pop("weights_from", "sc")
    if weights_from not in ("sc", "grounding", "base"):
        raise ValueError(f"loss.sap.weights_from must be 'sc', 'grounding' or 'base', got {weights_from!r}")
    if weights_from in ("grounding", "base"):
        if net is None:
            raise ValueError(f"loss.sap.weights_from={weights_from!r} needs the network")
        sap["weights_rule"] = net.grounder
        sap["weights_on"] = "base" if weights_from == "base" else "own"
    terms = [TripletTerms(score, margin, mask_shared, unknown_id), SAPTerms(**sap)]
    if grounding_head == "mlp":
        terms.insert(1, MILTripletTerms(margin, mil_temperature))
    terms.append(_binding_terms(binding, margin, score.fn))
    terms.append(_sibling_terms(sibling, margin, matching or {}, unknown_id))
    try:
        own_map = SelfTrainingTerms(**dict(self_training or {}))
    except TypeError as err:
        raise TypeError(f"model.loss.self_training (SelfTrainingTerms): {err}") from None
    terms += [own_map, BaseMapSelfTrainingTerms(own_map.temperature)]
    criterion = FSANCriterion(terms, effective_weights(weights, sap_loss, grounding_head))
    if criterion.weights.get("self_training_base", 0.0) > 0 and not criterion.needs_pseudo_moments:
        raise ValueError("loss.weights.self_training_base > 0 needs loss.weights.self_training > 0 "
                         "(it reads that term's pseudo-moments)")
    if net is not None:
        check_compatible(net, criterion)
    return criterion


def _binding_terms(binding: Mapping | None, margin: float, fn: str) -> BindingTerms:
    """The binding term from ``loss.binding`` (its score's ``g`` defaults to the matching score's ``fn``)."""
    spec = {**BINDING_DEFAULT, **dict(binding or {})}
    kind = spec.pop("kind")
    if kind not in BINDING_TERMS:
        raise ValueError(f"loss.binding: kind must be one of {sorted(BINDING_TERMS)}, got {kind!r}")
    mcls, mkw = _pick("matching", {"fn": fn, **dict(spec.pop("matching"))})
    spec.setdefault("margin", margin)
    try:
        return BINDING_TERMS[kind](mcls(**mkw), **spec)
    except TypeError as err:
        raise TypeError(f"model.loss.binding ({BINDING_TERMS[kind].__name__}): {err}") from None


def _sibling_terms(sibling: Mapping | None, margin: float, matching: Mapping, unknown_id: int | None) -> SiblingTerms:
    """The sibling term from ``loss.sibling`` (its score defaults to the matching score's settings)."""
    spec = dict(sibling or {})
    mcls, mkw = _pick("matching", {"kind": "raw", **dict(matching), **dict(spec.pop("matching", {}) or {})})
    spec.setdefault("margin", margin)
    spec.setdefault("unknown_id", unknown_id)
    try:
        return SiblingTerms(mcls(**mkw), **spec)
    except TypeError as err:
        raise TypeError(f"model.loss.sibling (SiblingTerms): {err}") from None


def check_compatible(net: FSAN, criterion: FSANCriterion) -> None:
    """Raise ValueError for a network and a loss that cannot train together."""
    for term in criterion.terms:
        matching = getattr(term, "matching", None)
        if matching is not None and matching.needs_cosine and not getattr(net.alignment, "has_cosine", False):
            raise ValueError(
                f"loss.matching.fn='cosine' needs a cosine alignment, but the network's alignment is "
                f"{type(net.alignment).__name__}; use fn sigmoid/tanh/identity or alignment kind cosine"
            )
        needs_base = isinstance(matching, BaseMapMatchingScore) or getattr(term, "weights_on", "own") == "base"
        if needs_base and not isinstance(net, TwoStageFSAN):
            raise ValueError("loss.matching.kind='base' and loss.sap.weights_from='base' need model.net.kind: two_stage")
        if isinstance(term, SelfTrainingTerms) and criterion.needs_pseudo_moments:
            teacher_rule(net.grounder)  # ValueError for a grounder the teacher cannot read
            if isinstance(term.teacher, BaseMapSiblingPseudoMoments) and not isinstance(net, AttachedTwoStageFSAN):
                raise ValueError(f"the self-training teacher {term.teacher!r} reads the base map (loss.self_training."
                                 "teacher base_sibling, base_sibling_masked or base_sibling_gated): it needs model.net.kind: "
                                 "attached_two_stage")
        if (isinstance(term, BaseMapSelfTrainingTerms) and criterion.weights.get("self_training_base", 0.0) > 0
                and not isinstance(net, TwoStageFSAN)):
            raise ValueError("loss.weights.self_training_base > 0 needs a base map: model.net.kind: two_stage "
                             "or attached_two_stage")
        if isinstance(term, MILTripletTerms) and net.head is None:
            raise ValueError("the MIL terms need the MLP head (grounding_head='mlp')")
    if net.head is not None and not any(isinstance(t, MILTripletTerms) for t in criterion.terms):
        raise ValueError("the network has an MLP head but the loss has no MIL terms to train it")
