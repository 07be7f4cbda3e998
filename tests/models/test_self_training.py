"""The SAP terms' self-training variant: the sibling-joint teacher and the `self_training` term."""
from __future__ import annotations

import math

import pytest
import torch

from fsan_lightning import ops
from fsan_lightning.models import (
    FSANOutput,
    MaxSumGrounder,
    SCGrounder,
    SiblingPseudoMoments,
    build_criterion,
    effective_weights,
    run_training_pass,
)
from test_criterion import FakeNet, make_batch

torch.set_num_threads(1)


class MapNet(torch.nn.Module):
    """Returns a given clip map per sentence (token id -> row of ``table``) as P; the teacher reads P."""

    alignment = None

    def __init__(self, table, grounder):
        super().__init__()
        self.table, self.grounder = table, grounder

    def forward(self, video, video_mask, tokens, token_mask):
        P = self.table[tokens]  # [B, Ns, Nv]: every token of a sentence carries its sentence's map
        return FSANOutput(A=P, P=P, text_features=None, video_features=video, video_mask=video_mask)


def teacher_batch(vids, token_ids, Nv=6):
    B = len(vids)
    return {"video": torch.zeros(B, Nv, 1), "video_mask": torch.ones(B, Nv, dtype=torch.bool),
            "tokens": torch.tensor(token_ids)[:, None], "token_mask": torch.ones(B, 1, dtype=torch.bool),
            "content_mask": torch.ones(B, 1, dtype=torch.bool), "qidx": torch.arange(B) + 10, "vid": vids}


def test_teacher_gives_each_sentence_the_clips_its_siblings_do_not_claim():
    # sentence 0 shows at clips 0-1 and, more weakly than sentence 1, at 3-4; sentence 2 is alone in its video
    table = torch.tensor([[1.0, 1.0, -1.0, 1.2, 1.2, -1.0], [0.0, 0.0, -1.0, 2.0, 2.0, -1.0],
                          [1.0, 1.0, -1.0, 1.2, 1.2, -1.0]])
    net = MapNet(table, MaxSumGrounder("all", 0.25))  # make train's rule: clips 0.25 std above the mean
    batch = teacher_batch(["a", "a", "b"], [0, 1, 2])
    alone_q, alone = SiblingPseudoMoments(joint=0.0)(net, [batch])
    qidx, joint = SiblingPseudoMoments(joint=1.0)(net, [batch])
    assert qidx.tolist() == alone_q.tolist() == [10, 11, 12]
    clips = lambda m: torch.nonzero(m).flatten().tolist()  # noqa: E731
    assert clips(alone[0]) == [3, 4]  # read alone, sentence 0 takes its sibling's event
    assert clips(joint[0]) == [0, 1] and clips(joint[1]) == [3, 4]
    assert clips(joint[2]) == clips(alone[2]) == [3, 4]  # no sibling: unchanged


def test_teacher_refuses_timestamps_and_grounders_without_a_sentence_map():
    table = torch.eye(6)
    batch = {**teacher_batch(["a"], [0]), "gt": torch.tensor([[0.0, 1.0]])}
    with pytest.raises(ValueError, match="carry timestamps"):
        SiblingPseudoMoments()(MapNet(table, MaxSumGrounder()), [batch])
    with pytest.raises(ValueError, match="needs a maxsum grounder"):
        SiblingPseudoMoments()(MapNet(table, SCGrounder()), [teacher_batch(["a"], [0])])
    with pytest.raises(ValueError, match="joint >= 0"):
        SiblingPseudoMoments(joint=-1)


def self_training_criterion(weight=1.0, sap_loss=True, temperature=0.05):
    return build_criterion({"triplet": 1.0, "self_training": weight}, sap_loss=sap_loss,
                           matching={"kind": "raw", "fn": "cosine"}, self_training={"temperature": temperature})


def test_self_training_term_is_the_moment_cross_entropy_of_the_content_word_mean():
    net, batch = FakeNet(), make_batch(0)
    moment = torch.zeros(4, 5, dtype=torch.bool)
    moment[0, 1:3] = moment[1, 0] = moment[2, 2:4] = moment[3, 0] = True
    crit = self_training_criterion(temperature=0.1)
    got = crit(run_training_pass(net, {**batch, "pseudo_moment": moment}, False))
    cos = net(batch["video"], batch["video_mask"], batch["tokens"], batch["token_mask"]).cosine.detach()
    expected = []
    for b in range(4):
        words = [i for i in range(batch["tokens"].shape[1]) if batch["content_mask"][b, i]]
        words = words or [i for i in range(batch["tokens"].shape[1]) if batch["token_mask"][b, i]]
        clips = [j for j in range(5) if batch["video_mask"][b, j]]
        s = {j: sum(float(cos[b, i, j]) for i in words) / len(words) / 0.1 for j in clips}
        log_z = math.log(sum(math.exp(v) for v in s.values()))
        inside = [j for j in clips if moment[b, j]]
        expected.append(-sum(s[j] - log_z for j in inside) / len(inside))
    assert float(got["terms"]["self_training"].detach()) == pytest.approx(sum(expected) / 4, rel=1e-6)
    terms = {k: float(v.detach()) for k, v in got["terms"].items()}
    assert float(got["loss"].detach()) == pytest.approx(terms["triplet"] + terms["self_training"])
    # its own start epoch, not the SAP warm-up's ramp
    half = crit(run_training_pass(net, {**batch, "pseudo_moment": moment}, False), sap_weight=0.5)
    assert float(half["loss"].detach()) == pytest.approx(terms["triplet"] + terms["self_training"])


def test_self_training_term_is_absent_without_pseudo_moments_and_off_without_sap():
    net, batch = FakeNet(), make_batch(0)
    got = self_training_criterion()(run_training_pass(net, batch, False))
    assert "self_training" not in got["terms"]
    assert float(got["loss"]) == pytest.approx(float(got["terms"]["triplet"]))
    assert self_training_criterion().needs_pseudo_moments
    off = self_training_criterion(sap_loss=False)
    assert not off.needs_pseudo_moments and off.weights["self_training"] == 0.0
    assert effective_weights({"triplet": 0.5, "self_training": 0.1}, sap_loss=False) == {
        "triplet": 1.0, "self_training": 0.0, "inner": 0.0, "outer": 0.0}
    with pytest.raises(ValueError, match="need temperature > 0 and start_epoch >= 0"):
        self_training_criterion(temperature=0.0)


def test_self_training_term_trains_the_map_toward_the_moment():
    net, batch = FakeNet(), make_batch(1)
    moment = torch.zeros(4, 5, dtype=torch.bool)
    moment[:, 0] = True
    crit = build_criterion({"triplet": 1e-9, "self_training": 1.0}, matching={"kind": "raw", "fn": "cosine"})
    opt = torch.optim.SGD(net.parameters(), lr=0.5)

    def inside_share():
        cos = net(batch["video"], batch["video_mask"], batch["tokens"], batch["token_mask"]).cosine.detach()
        m = ops.token_mean(cos, batch["token_mask"], batch["content_mask"])
        return float(torch.softmax(torch.where(batch["video_mask"], m / 0.05, -torch.inf), 1)[:, 0].mean())

    before = inside_share()
    for _ in range(20):
        loss = crit(run_training_pass(net, {**batch, "pseudo_moment": moment}, False))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert inside_share() > before + 0.1


def test_base_map_teacher_reads_the_map_before_the_interaction():
    import copy

    from fsan_lightning.models import BaseMapSiblingPseudoMoments
    from helpers import FEATURE_SPACE_NET, make_net, padded_pair

    (v, vm, t, tm), _ = padded_pair()
    B = v.shape[0]
    batch = {"video": v, "video_mask": vm, "tokens": t, "token_mask": tm, "content_mask": tm,
             "qidx": torch.arange(B), "vid": ["a", "a"] + [f"v{i}" for i in range(B - 2)]}
    net = make_net(kind="attached_two_stage", base=FEATURE_SPACE_NET, grounder={"kind": "maxsum", "tokens": "all"},
                   interaction={"kind": "bottleneck_gated_icim", "layers": 1, "width": 4}).eval()
    closed = copy.deepcopy(net)  # gates at 0: its interacted map is its base map
    with torch.no_grad():
        for name, p in net.interaction.named_parameters():
            if "gate" in name:
                p.fill_(3.0)
    _, own = SiblingPseudoMoments()(net, [batch])
    _, base = BaseMapSiblingPseudoMoments()(net, [batch])
    _, reference = SiblingPseudoMoments()(closed, [batch])
    assert torch.equal(base, reference) and not torch.equal(own, reference)
    assert not net._bypassed  # the bypass ends with the teacher's pass
    with pytest.raises(ValueError, match="attached_two_stage"):
        BaseMapSiblingPseudoMoments()(make_net(base=FEATURE_SPACE_NET, grounder={"kind": "maxsum"}).eval(), [batch])
    with pytest.raises(ValueError, match="attached_two_stage"):
        build_criterion({"triplet": 1.0, "self_training": 0.1}, self_training={"teacher": "base_sibling"},
                        net=make_net(base=FEATURE_SPACE_NET, grounder={"kind": "maxsum"}))
    with pytest.raises(ValueError, match="teacher must be one of"):
        build_criterion({"triplet": 1.0}, self_training={"teacher": "ema"})


def test_base_map_term_is_the_self_training_term_of_the_map_before_the_interaction():
    from helpers import FEATURE_SPACE_NET, make_net, padded_pair

    (v, vm, t, tm), _ = padded_pair()
    net = make_net(kind="attached_two_stage", base=FEATURE_SPACE_NET, grounder={"kind": "maxsum", "tokens": "all"},
                   interaction={"kind": "bottleneck_gated_icim", "layers": 1, "width": 4})
    with torch.no_grad():
        for name, p in net.interaction.named_parameters():
            if "gate" in name:
                p.fill_(3.0)  # open gates: the two maps differ
    out = net(v, vm, t, tm)
    assert not torch.allclose(out.cosine, out.base_cosine)
    moment = torch.zeros(v.shape[0], v.shape[1], dtype=torch.bool)
    moment[:, 1:3] = True
    crit = build_criterion({"triplet": 1.0, "self_training": 0.1, "self_training_base": 0.2}, net=net,
                           matching={"kind": "raw", "fn": "cosine"}, self_training={"temperature": 0.1})
    batch = {"video": v, "video_mask": vm, "tokens": t, "token_mask": tm, "neg_tokens": t.flip(0),
             "neg_token_mask": tm.flip(0), "content_mask": tm, "pseudo_moment": moment}
    got = crit(run_training_pass(net, batch, False))
    terms = {k: float(x.detach()) for k, x in got["terms"].items()}

    def reference(cos):  # mean over tokens, softmax over valid clips at T 0.1, mean -log p inside the moment
        values = []
        for b in range(v.shape[0]):
            words = [i for i in range(t.shape[1]) if tm[b, i]]
            clips = [j for j in range(v.shape[1]) if vm[b, j]]
            s = {j: sum(float(cos[b, i, j]) for i in words) / len(words) / 0.1 for j in clips}
            log_z = math.log(sum(math.exp(x) for x in s.values()))
            inside = [j for j in clips if moment[b, j]]
            values.append(-sum(s[j] - log_z for j in inside) / len(inside))
        return sum(values) / len(values)

    assert terms["self_training_base"] == pytest.approx(reference(out.base_cosine.detach()), rel=1e-5)
    assert terms["self_training"] == pytest.approx(reference(out.cosine.detach()), rel=1e-5)
    assert float(got["loss"].detach()) == pytest.approx(
        terms["triplet"] + 0.1 * terms["self_training"] + 0.2 * terms["self_training_base"], rel=1e-5)
    # Table 4's sap_loss=false switches it off with the other SAP terms
    assert effective_weights({"triplet": 1.0, "self_training": 0.1, "self_training_base": 0.2},
                             sap_loss=False)["self_training_base"] == 0.0


def test_base_map_term_refuses_a_network_without_a_base_map_and_a_loss_without_pseudo_moments():
    from helpers import FEATURE_SPACE_NET, make_net

    with pytest.raises(ValueError, match="self_training_base > 0 needs loss.weights.self_training > 0"):
        build_criterion({"triplet": 1.0, "self_training_base": 0.1})
    with pytest.raises(ValueError, match="self_training_base > 0 needs a base map"):
        build_criterion({"triplet": 1.0, "self_training": 0.1, "self_training_base": 0.1},
                        net=make_net(base=FEATURE_SPACE_NET, grounder={"kind": "maxsum"}))


def word_batch(vids, sentences, qidx, Nv=6):
    """Sentences of token ids (lists of any length) padded with token 0 and masked."""
    B, Ns = len(vids), max(len(s) for s in sentences)
    tokens = torch.zeros(B, Ns, dtype=torch.int64)
    tm = torch.zeros(B, Ns, dtype=torch.bool)
    for b, s in enumerate(sentences):
        tokens[b, :len(s)], tm[b, :len(s)] = torch.tensor(s), True
    return {"video": torch.zeros(B, Nv, 1), "video_mask": torch.ones(B, Nv, dtype=torch.bool), "tokens": tokens,
            "token_mask": tm, "content_mask": tm.clone(), "qidx": torch.tensor(qidx), "vid": vids}


def test_masked_teacher_keeps_a_repeated_event_that_the_whole_sentence_teacher_cancels():
    from fsan_lightning.models import MaskedSiblingPseudoMoments

    # word maps over 6 clips: "kick" and "door" at clips 0-1 and again at 3-4 (one event shown twice);
    # "first" and "again" carry nothing; "ball" shows at clip 5
    kick, door, first, again, ball = 1, 2, 3, 4, 5
    table = torch.tensor([[0.0] * 6, [1.0, 1.0, 0.0, 0.6, 0.6, 0.0], [1.0, 1.0, 0.0, 0.6, 0.6, 0.0],
                          [0.0] * 6, [0.0] * 6, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    net = MapNet(table, MaxSumGrounder("content", 0.25))
    # two loader batches of different sentence lengths (the teacher pads its rows to one width)
    batches = [word_batch(["a"], [[kick, door, first]], [0]),
               word_batch(["a", "a"], [[kick, door, again, door], [door, ball]], [1, 2])]
    clips = lambda m: torch.nonzero(m).flatten().tolist()  # noqa: E731
    _, alone = SiblingPseudoMoments(joint=0.0)(net, batches)
    _, whole = SiblingPseudoMoments(joint=1.0)(net, batches)
    qidx, masked = MaskedSiblingPseudoMoments(joint=1.0)(net, batches)
    assert qidx.tolist() == [0, 1, 2]
    assert clips(alone[0]) == [0, 1] and clips(masked[0]) == [0, 1]  # the event, as read alone
    assert clips(whole[0]) != [0, 1]  # the twin's identical map cancels the event
    # "door ball" against its siblings: only "ball" is left to it ("door" is theirs too), clip 5
    assert clips(masked[2]) == [5]
    criterion = build_criterion({"triplet": 1.0, "self_training": 0.1}, self_training={"teacher": "sibling_masked"})
    assert isinstance(criterion.self_training.teacher, MaskedSiblingPseudoMoments)


def test_masked_base_map_teacher_needs_a_base_map():
    from fsan_lightning.models import BaseMapMaskedSiblingPseudoMoments, BaseMapSiblingPseudoMoments
    from helpers import FEATURE_SPACE_NET, make_net

    assert issubclass(BaseMapMaskedSiblingPseudoMoments, BaseMapSiblingPseudoMoments)
    with pytest.raises(ValueError, match="attached_two_stage"):
        build_criterion({"triplet": 1.0, "self_training": 0.1}, self_training={"teacher": "base_sibling_masked"},
                        net=make_net(base=FEATURE_SPACE_NET, grounder={"kind": "maxsum"}))


def test_gated_teacher_spares_a_twin_and_competes_with_another_event():
    from fsan_lightning.models import BaseMapGatedSiblingPseudoMoments, GatedSiblingPseudoMoments

    # sentences 0 and 1: one event said twice (clips 0-1 and 3-4, the same map); sentence 2: another event at 3-4
    # in video "b", stronger than sentence 3's weaker echo there
    table = torch.tensor([[1.0, 1.0, 0.0, 0.6, 0.6, 0.0], [1.0, 1.0, 0.0, 0.6, 0.6, 0.0],
                          [0.0, 0.0, 0.0, 2.0, 2.0, 0.0], [1.0, 1.0, 0.0, 1.2, 1.2, 0.0]])
    net = MapNet(table, MaxSumGrounder("all", 0.25))
    batch = teacher_batch(["a", "a", "b", "b"], [0, 1, 2, 3])
    clips = lambda m: torch.nonzero(m).flatten().tolist()  # noqa: E731
    _, alone = SiblingPseudoMoments(joint=0.0)(net, [batch])
    _, whole = SiblingPseudoMoments(joint=1.0)(net, [batch])
    _, gated = GatedSiblingPseudoMoments(joint=1.0)(net, [batch])
    assert clips(alone[0]) == clips(gated[0]) == [0, 1]  # the twin claims nothing
    assert clips(whole[0]) != [0, 1]                      # the whole-sentence rule cancels the event
    assert clips(alone[3]) == [3, 4] and clips(gated[3]) == clips(whole[3]) == [0, 1]  # another event still competes
    with pytest.raises(ValueError, match="power > 0"):
        GatedSiblingPseudoMoments(power=0)
    assert isinstance(build_criterion({"triplet": 1.0, "self_training": 0.1},
                                      self_training={"teacher": "sibling_gated"}).self_training.teacher,
                      GatedSiblingPseudoMoments)
    assert issubclass(BaseMapGatedSiblingPseudoMoments, GatedSiblingPseudoMoments)
