"""The self-training teacher of the SAP losses' variant (:class:`~.criterion.SelfTrainingTerms`; docs/model.md).

The paper's SAP terms (Eqs. 9-12) raise the map inside, and lower it outside, the segments that the model's
own map ranks first for the same sentence, so they teach the model what it already believes (measured:
experiments/localization/README.md, sessions 2-3). :class:`SiblingPseudoMoments` gives the variant a
better teacher from the same weak labels: once per epoch, the network grounds every training sentence as
its grounder does, and each sentence competes with the other sentences of its video for the clips
(:func:`ops.sibling_competition`): a stretch where a sibling's evidence is as strong is another event's
moment. Only the training split's videos and sentences are read, never timestamps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ops
from .grounders import FeedbackGrounder, MaxSumGrounder


def teacher_rule(grounder) -> MaxSumGrounder:
    """The max-sum rule that ranks the teacher's maps: ``grounder`` itself, or a feedback grounder's inner rule.
    ValueError for a grounder without one (SC ranks segments by a rule that has no single sentence map)."""
    rule = grounder.inner if isinstance(grounder, FeedbackGrounder) else grounder
    if not isinstance(rule, MaxSumGrounder):
        raise ValueError(f"the self-training teacher needs a maxsum grounder (or a feedback grounder over one), "
                         f"got {grounder!r}; set model.net.grounder.kind: maxsum or feedback")
    return rule


class SiblingPseudoMoments:
    """Every training sentence's moment as the network grounds it jointly with its video's other sentences.

    A sentence's map is the content-word (or all-token, as the grounder reads) mean of the map the network's
    grounder ranks (after the feedback step for a :class:`FeedbackGrounder`), weighted by the word salience
    when the network has one; ``joint`` times the clip-wise maximum of its siblings' maps is subtracted; the
    grounder's max-sum rule picks the top segment of the result.

    Args:
        joint: the weight of the siblings' maximum (>= 0; 0 = each sentence read alone).
        batch_size: rows ranked at once (the segment maps are [rows, Nv, Nv]).
    """

    word_level = False  # read() keeps the per-word maps (for a competition that reads words)

    def __init__(self, joint: float = 1.0, batch_size: int = 512) -> None:
        if joint < 0 or batch_size < 1:
            raise ValueError(f"SiblingPseudoMoments: need joint >= 0 and batch_size >= 1, got {joint}, {batch_size}")
        self.joint, self.batch_size = float(joint), int(batch_size)

    @torch.no_grad()
    def read(self, net, loader) -> dict:
        """Every item's sentence map as the grounder reads it: ``maps`` float [N, Nv], ``clip_mask`` bool [N, Nv],
        ``qidx`` int64 [N], ``vids`` (N str); with ``word_level`` also ``word_maps`` float [N, Ns, Nv],
        ``tokens`` int64 [N, Ns], ``token_mask`` / ``chosen`` bool [N, Ns] and ``token_weights`` float [N, Ns]
        or None (Ns: the longest sentence)."""
        rule = teacher_rule(net.grounder)
        rows: dict[str, list] = {}
        for batch in loader:
            if "gt" in batch:
                raise ValueError(f"{type(self).__name__}: the batches carry timestamps; the teacher reads the "
                                 "training split's videos and sentences only (datamodule.fit_dataloader())")
            tm, vm, cm = batch["token_mask"], batch["video_mask"], batch.get("content_mask")
            out = net(batch["video"], vm, batch["tokens"], tm)
            grounder = net.grounder
            P = (grounder.refined_map(net.alignment, out, tm, cm)
                 if isinstance(grounder, FeedbackGrounder) and grounder.beta > 0 else out.P)
            chosen = None if rule.tokens == "all" else cm
            got = {"maps": ops.token_mean(P, tm, chosen, token_weights=out.token_weights), "clip_mask": vm,
                   "qidx": batch["qidx"], "vids": list(batch["vid"])}
            if self.word_level:
                got.update(word_maps=P, tokens=batch["tokens"], token_mask=tm,
                           chosen=tm if chosen is None else chosen, token_weights=out.token_weights)
            for k, v in got.items():
                rows.setdefault(k, []).append(v)
        vids, weights = rows.pop("vids"), rows.pop("token_weights", [None])
        width = max((t.shape[1] for t in rows.get("tokens", [])), default=0)

        def cat(vs: list[Tensor], per_token: bool) -> Tensor:  # per-token rows padded to the longest sentence
            pad = lambda v: (0, 0, 0, width - v.shape[1]) if v.dim() == 3 else (0, width - v.shape[1])  # noqa: E731
            return torch.cat([torch.nn.functional.pad(v, pad(v)) for v in vs] if per_token else vs)

        out = {k: cat(vs, k in ("word_maps", "tokens", "token_mask", "chosen")) for k, vs in rows.items()}
        out["vids"] = [v for vs in vids for v in vs]
        # a network without word salience: equal weights
        out["token_weights"] = None if any(w is None for w in weights) else cat(weights, True)
        return out

    def compete(self, rows: dict, groups: Tensor) -> Tensor:
        """float [N, Nv]: each sentence's map against its video's other sentences (:func:`ops.sibling_competition`)."""
        return ops.sibling_competition(rows["maps"], groups, rows["clip_mask"], self.joint)

    @torch.no_grad()
    def __call__(self, net, loader) -> tuple[Tensor, Tensor]:
        """net: an FSAN (put it in eval mode first); loader: every training item once, without timestamps.

        Returns:
            qidx int64 [N] and moments bool [N, Nv] (the clips of each row's pseudo-moment).
        """
        rows = self.read(net, loader)
        codes = {v: i for i, v in enumerate(dict.fromkeys(rows["vids"]))}
        groups = torch.tensor([codes[v] for v in rows["vids"]], dtype=torch.int64)
        competed, masks = self.compete(rows, groups), rows["clip_mask"]
        rule = teacher_rule(net.grounder)
        moments = []
        for s in range(0, len(competed), self.batch_size):
            m, vm = competed[s:s + self.batch_size, None, :], masks[s:s + self.batch_size]
            one = torch.ones(m.shape[:2], dtype=torch.bool, device=m.device)
            segments = ops.best_segment(rule(m, one, vm, one))
            moments.append(ops.clip_range_mask(segments, competed.shape[1]) & vm)
        return rows["qidx"], torch.cat(moments)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(joint={self.joint})"


class BaseMapSiblingPseudoMoments(SiblingPseudoMoments):
    """Variant teacher: :class:`SiblingPseudoMoments` on the map *before* the interaction, read by the
    network's own grounder (an :class:`~.fsan.AttachedTwoStageFSAN`, its interaction bypassed).

    The base map is trained by the matching loss, so the term's moments stay anchored to what the matching
    learned; a teacher reading the interacted map would be taught by the interaction it teaches, which
    only this term trains (measured: experiments/localization/README.md, session 11).
    """

    @torch.no_grad()
    def read(self, net, loader) -> dict:
        bypassed = getattr(net, "interaction_bypassed", None)
        if bypassed is None:
            raise ValueError(f"{type(self).__name__} needs a network whose interaction can be bypassed "
                             f"(net.kind: attached_two_stage), got {type(net).__name__}")
        with bypassed():
            return super().read(net, loader)


class MaskedSiblingPseudoMoments(SiblingPseudoMoments):
    """Variant teacher: :class:`SiblingPseudoMoments` whose siblings compete with the words the sentence does
    not contain (:func:`ops.masked_sibling_competition`, the triplet's shared-word masking, Decision 5).

    The whole-sentence competition subtracts a sibling's whole map: where two sentences of a video name the same
    event ("... for the first time", "... once more"), or share two of three event words, it also subtracts the
    sentence's own evidence, and a repeated event is cancelled in both sentences. Here a sibling only claims
    the clips its own other words point to.
    Measured: experiments/localization/README.md, session 15.
    """

    word_level = True

    def compete(self, rows: dict, groups: Tensor) -> Tensor:
        return ops.masked_sibling_competition(rows["word_maps"], rows["tokens"], rows["token_mask"], rows["chosen"],
                                              groups, rows["clip_mask"], self.joint,
                                              token_weights=rows["token_weights"])


class BaseMapMaskedSiblingPseudoMoments(BaseMapSiblingPseudoMoments, MaskedSiblingPseudoMoments):
    """Variant teacher: :class:`MaskedSiblingPseudoMoments` on the base map (as :class:`BaseMapSiblingPseudoMoments`)."""


class GatedSiblingPseudoMoments(SiblingPseudoMoments):
    """Variant teacher: :class:`SiblingPseudoMoments` whose siblings compete in proportion to how unlike the
    sentence's own their maps are (:func:`ops.gated_sibling_competition`, ``power`` 4).

    A sibling that describes the same content (one event said twice: its map has the sentence's own shape) no
    longer cancels the sentence's evidence; a sibling that describes another event competes in full.
    ``power`` 4 was read among 1, 2, 4 on the context world's training pseudo-moments (a diagnostic reading
    of training timestamps, experiments/localization/README.md, session 15).
    """

    def __init__(self, joint: float = 1.0, batch_size: int = 512, power: float = 4.0) -> None:
        super().__init__(joint, batch_size)
        if power <= 0:
            raise ValueError(f"GatedSiblingPseudoMoments: need power > 0, got {power}")
        self.power = float(power)

    def compete(self, rows: dict, groups: Tensor) -> Tensor:
        return ops.gated_sibling_competition(rows["maps"], groups, rows["clip_mask"], self.joint, self.power)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(joint={self.joint}, power={self.power})"


class BaseMapGatedSiblingPseudoMoments(BaseMapSiblingPseudoMoments, GatedSiblingPseudoMoments):
    """Variant teacher: :class:`GatedSiblingPseudoMoments` on the base map (as :class:`BaseMapSiblingPseudoMoments`)."""


TEACHERS = {"sibling": SiblingPseudoMoments, "base_sibling": BaseMapSiblingPseudoMoments,
            "sibling_masked": MaskedSiblingPseudoMoments, "base_sibling_masked": BaseMapMaskedSiblingPseudoMoments,
            "sibling_gated": GatedSiblingPseudoMoments, "base_sibling_gated": BaseMapGatedSiblingPseudoMoments}
