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

    def __init__(self, joint: float = 1.0, batch_size: int = 512) -> None:
        if joint < 0 or batch_size < 1:
            raise ValueError(f"SiblingPseudoMoments: need joint >= 0 and batch_size >= 1, got {joint}, {batch_size}")
        self.joint, self.batch_size = float(joint), int(batch_size)

    @torch.no_grad()
    def sentence_maps(self, net, loader) -> tuple[Tensor, Tensor, Tensor, list[str]]:
        """-> maps float [N, Nv], clip masks bool [N, Nv], qidx int64 [N], video ids (N str), one row per item."""
        rule = teacher_rule(net.grounder)
        maps, masks, qidx, vids = [], [], [], []
        for batch in loader:
            if "gt" in batch:
                raise ValueError("SiblingPseudoMoments: the batches carry timestamps; the teacher reads the "
                                 "training split's videos and sentences only (datamodule.fit_dataloader())")
            tm, vm, cm = batch["token_mask"], batch["video_mask"], batch.get("content_mask")
            out = net(batch["video"], vm, batch["tokens"], tm)
            grounder = net.grounder
            P = (grounder.refined_map(net.alignment, out, tm, cm)
                 if isinstance(grounder, FeedbackGrounder) and grounder.beta > 0 else out.P)
            chosen = None if rule.tokens == "all" else cm
            maps.append(ops.token_mean(P, tm, chosen, token_weights=out.token_weights))
            masks.append(vm)
            qidx.append(batch["qidx"])
            vids.extend(batch["vid"])
        return torch.cat(maps), torch.cat(masks), torch.cat(qidx), vids

    @torch.no_grad()
    def __call__(self, net, loader) -> tuple[Tensor, Tensor]:
        """net: an FSAN (put it in eval mode first); loader: every training item once, without timestamps.

        Returns:
            qidx int64 [N] and moments bool [N, Nv] (the clips of each row's pseudo-moment).
        """
        maps, masks, qidx, vids = self.sentence_maps(net, loader)
        codes = {v: i for i, v in enumerate(dict.fromkeys(vids))}
        groups = torch.tensor([codes[v] for v in vids], dtype=torch.int64)
        competed = ops.sibling_competition(maps, groups, masks, self.joint)
        rule = teacher_rule(net.grounder)
        moments = []
        for s in range(0, len(competed), self.batch_size):
            m, vm = competed[s:s + self.batch_size, None, :], masks[s:s + self.batch_size]
            one = torch.ones(m.shape[:2], dtype=torch.bool)
            segments = ops.best_segment(rule(m, one, vm, one))
            moments.append(ops.clip_range_mask(segments, maps.shape[1]) & vm)
        return qidx, torch.cat(moments)

    def __repr__(self) -> str:
        return f"SiblingPseudoMoments(joint={self.joint})"


class BaseMapSiblingPseudoMoments(SiblingPseudoMoments):
    """Variant teacher: :class:`SiblingPseudoMoments` on the map *before* the interaction, read by the
    network's own grounder (an :class:`~.fsan.AttachedTwoStageFSAN`, its interaction bypassed).

    The base map is trained by the matching loss, so the term's moments stay anchored to what the matching
    learned; a teacher reading the interacted map would be taught by the interaction it teaches, which
    only this term trains (measured: experiments/localization/README.md, session 11).
    """

    @torch.no_grad()
    def sentence_maps(self, net, loader) -> tuple[Tensor, Tensor, Tensor, list[str]]:
        bypassed = getattr(net, "interaction_bypassed", None)
        if bypassed is None:
            raise ValueError(f"BaseMapSiblingPseudoMoments needs a network whose interaction can be bypassed "
                             f"(net.kind: attached_two_stage), got {type(net).__name__}")
        with bypassed():
            return super().sentence_maps(net, loader)

    def __repr__(self) -> str:
        return f"BaseMapSiblingPseudoMoments(joint={self.joint})"


TEACHERS = {"sibling": SiblingPseudoMoments, "base_sibling": BaseMapSiblingPseudoMoments}
