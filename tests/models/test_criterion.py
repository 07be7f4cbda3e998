"""The loss terms (build_criterion) against literal loop computations, their decision switches, and a training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fsan_lightning import ops
from fsan_lightning.models import FSANOutput, MaxSumGrounder, build_criterion, run_training_pass
from helpers import make_net
from reference_ops import ref_inner_loss_map, ref_maxsum, ref_minmax, ref_outer_loss_map, ref_segment_scores

torch.set_num_threads(1)
VOCAB, VDIM = 12, 4


class FakeNet(nn.Module):
    """cosine = tanh(<emb[token], clip>), A = 3 * cosine: known, differentiable, and cheap."""

    head = None
    alignment = type("CosineAlignment", (), {"has_cosine": True})()
    grounder = MaxSumGrounder(tokens="content")  # the rule of weights_from="grounding"

    def __init__(self):
        super().__init__()
        self.emb = nn.Parameter(
            torch.randn(VOCAB, VDIM, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        )
        self.calls: list[int] = []

    def forward(self, video, video_mask, tokens, token_mask):
        self.calls.append(video.shape[0])
        A = torch.tanh(torch.einsum("bie,bje->bij", self.emb[tokens], video))
        A = torch.where(token_mask[:, :, None] & video_mask[:, None, :], A, torch.zeros_like(A))
        P = ops.minmax_normalize(A, token_mask, video_mask)
        return FSANOutput(A=3 * A, P=P, text_features=self.emb[tokens], video_features=video,
                          video_mask=video_mask, cosine=A)


def make_criterion(net=None, *, l1=1 / 3, l2=1 / 3, l3=1 / 3, negative_video=False, match_fn="cosine",
                   match_on="raw", tau=0.05, weight_form="softmax", outer_form="complement", sap_tokens="all",
                   sap_weights_from="sc", sap_loss=True, grounding_head="sap", **kw):
    """build_criterion from the equations' names (l1, l2, l3: Eq. 13's weights)."""
    weights = {"triplet": l1, "inner": l2, "outer": l3, **({"triplet_video": l1} if negative_video else {})}
    kind = {"raw": "raw", "P": "printed", "centred": "centred"}[match_on]
    return build_criterion(weights, matching={"kind": kind, "fn": match_fn}, sap_loss=sap_loss,
                           sap={"tau": tau, "weight_form": weight_form, "outer_form": outer_form,
                                "tokens": sap_tokens, "weights_from": sap_weights_from},
                           grounding_head=grounding_head, net=net, **kw)


def run(criterion, net, batch, sap_weight: float = 1.0) -> dict:
    """The criterion's terms on one training pass, flat: loss, loss_triplet (= triplet + triplet_video),
    loss_inner, loss_outer, the terms by name, and the statistics."""
    got = criterion(run_training_pass(net, batch, criterion.needs_negative_video), sap_weight=sap_weight)
    t = got["terms"]
    zero = torch.zeros((), dtype=t["triplet"].dtype)
    return {"loss": got["loss"], "loss_triplet": t["triplet"] + t.get("triplet_video", zero),
            "loss_inner": t["inner"], "loss_outer": t["outer"], **t, **got["stats"]}


def make_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, Nv = 4, 5
    video = torch.randn(B, Nv, VDIM, generator=g, dtype=torch.float64)
    vm = torch.arange(Nv)[None] < torch.tensor([[5], [3], [4], [1]])
    tokens = torch.tensor([[2, 3, 4, 5, 0], [6, 7, 1, 0, 0], [2, 2, 8, 9, 10], [3, 4, 0, 0, 0]])
    neg = torch.tensor([[4, 5, 11], [1, 9, 0], [2, 8, 11], [3, 4, 0]])
    # sample 0 shares 4, 5; sample 1 shares only the unknown id 1; sample 3's words are all shared
    tm, ntm = tokens > 0, neg > 0
    content = tm & (tokens != 2)
    return {
        "video": video,
        "video_mask": vm,
        "tokens": tokens,
        "token_mask": tm,
        "content_mask": content,
        "neg_tokens": neg,
        "neg_token_mask": ntm,
        "neg_content_mask": ntm,
        "vid": ["a", "a", "b", "c"],
    }


def literal_losses(
    net,
    batch,
    margin=0.2,
    tau=0.05,
    mask_shared="both",
    weights=(1 / 3,) * 3,
    sap_weight=1.0,
    outer_form="complement",
    content_minimum=False,
    negative_video=False,
    weights_from="sc",
    sap_tokens="all",
):
    """Eq. 6-13 written sample by sample from DESIGN.md."""
    with torch.no_grad():
        video, vm = batch["video"], batch["video_mask"]
        B = video.shape[0]

        def score(toks, vid_b):
            L = int(vm[vid_b].sum())
            return sum(torch.tanh(net.emb[t] @ video[vid_b, :L].T).max().item() for t in toks) / len(toks)

        trip, used = [], 0
        for b in range(B):
            pos = [t for t in batch["tokens"][b].tolist() if t > 0]
            neg = [t for t in batch["neg_tokens"][b].tolist() if t > 0]
            shared = {t for t in pos if t in neg and t != 1}
            pos_kept = [t for t in pos if t not in shared] if mask_shared == "both" else pos
            neg_kept = [t for t in neg if t not in shared] if mask_shared in ("both", "negative") else neg
            if pos_kept and neg_kept:
                used += 1
                trip.append(max(0.0, margin - score(pos_kept, b) + score(neg_kept, b)))
        lt = sum(trip) / used
        lt_video = 0.0
        if negative_video:
            pairs = {0: 2, 1: 2, 2: 3, 3: 0}  # roll by one, skipping the same vid "a"
            terms = []
            for b, other in pairs.items():
                pos = [t for t in batch["tokens"][b].tolist() if t > 0]
                terms.append(max(0.0, margin - score(pos, b) + score(pos, other)))
            lt_video = sum(terms) / B
            lt = lt + lt_video
        out = net(video, vm, batch["tokens"], batch["token_mask"])
        tm = batch["token_mask"]
        content = batch["content_mask"] if content_minimum else None
        P = ref_minmax(out.A, tm, vm)
        sc = ref_segment_scores(P, tm, vm, min_token_mask=content)
        if weights_from == "grounding":
            sc = ref_maxsum(P, tm, vm, batch["content_mask"])
        inner_tm = tm
        if sap_tokens == "content":  # a sample without a content word keeps all its tokens
            has = (batch["content_mask"] & tm).any(dim=1, keepdim=True)
            inner_tm = torch.where(has, batch["content_mask"] & tm, tm)
            content = inner_tm
        lin = ref_inner_loss_map(P, inner_tm, vm)
        lout = ref_outer_loss_map(P, tm, vm, form=outer_form, min_token_mask=content)
        li = lo = 0.0
        for b in range(B):
            L = int(vm[b].sum())
            cells = [(s, e) for s in range(L) for e in range(s, L)]
            z = sum(math.exp(sc[b, s, e].item() / tau) for s, e in cells)
            for s, e in cells:
                w = math.exp(sc[b, s, e].item() / tau) / z
                li += w * lin[b, s, e].item() / B
                lo += w * lout[b, s, e].item() / B
    total = weights[0] * lt + sap_weight * (weights[1] * li + weights[2] * lo)
    return {"loss": total, "loss_triplet": lt, "loss_inner": li, "loss_outer": lo, "triplet_video": lt_video}


def assert_matches(got, expected):
    for key, value in expected.items():
        assert got[key].item() == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize(
    "crit_kw, lit_kw",
    [
        ({}, {}),
        ({"margin": 2.0}, {"margin": 2.0}),  # every hinge active
        ({"mask_shared": "negative", "margin": 2.0}, {"mask_shared": "negative", "margin": 2.0}),
        ({"mask_shared": "none", "margin": 2.0}, {"mask_shared": "none", "margin": 2.0}),
        ({"outer_form": "printed", "tau": 0.3}, {"outer_form": "printed", "tau": 0.3}),
        ({"l1": 0.5, "l2": 0.2, "l3": 0.3, "margin": 0.5}, {"weights": (0.5, 0.2, 0.3), "margin": 0.5}),
        ({"negative_video": True, "margin": 1.0}, {"negative_video": True, "margin": 1.0}),
        ({"sap_weights_from": "grounding", "tau": 0.3}, {"weights_from": "grounding", "tau": 0.3}),
        ({"sap_tokens": "content"}, {"sap_tokens": "content"}),
        ({"sap_weights_from": "grounding", "sap_tokens": "content"}, {"weights_from": "grounding", "sap_tokens": "content"}),
    ],
)
def test_criterion_matches_literal_equations(crit_kw, lit_kw):
    net, batch = FakeNet(), make_batch()
    got = run(make_criterion(net, **crit_kw), net, batch, sap_weight=0.7)
    # one forward for positive + negative sentences (+ negative videos)
    assert net.calls == [12 if crit_kw.get("negative_video") else 8]
    lit = literal_losses(net, batch, sap_weight=0.7, **lit_kw)
    if not crit_kw.get("negative_video"):
        del lit["triplet_video"]
    assert_matches(got, lit)
    assert all(v.dim() == 0 for v in got.values())


def test_shared_word_masking_drops_fully_shared_sentences():
    got = run(make_criterion(), FakeNet(), make_batch())
    assert got["usable_fraction"].item() == pytest.approx(0.75)  # sample 3 has no unshared word
    assert run(make_criterion(mask_shared="negative"), FakeNet(), make_batch())["usable_fraction"].item() == pytest.approx(0.75)
    assert run(make_criterion(mask_shared="none"), FakeNet(), make_batch())["usable_fraction"].item() == 1.0


def test_decision_switches_change_the_losses():
    batch = make_batch()
    base = run(make_criterion(margin=2.0), FakeNet(), batch)
    printed_p = run(make_criterion(match_on="P"), FakeNet(), batch)
    # Decision 1: on P the matching score is 1 for both sentences, so Lt is exactly the margin
    assert printed_p["loss_triplet"].item() == pytest.approx(0.2)
    assert printed_p["score_pos"].item() == pytest.approx(1.0) and printed_p[
        "score_neg"
    ].item() == pytest.approx(1.0)
    raw_w = run(make_criterion(weight_form="raw"), FakeNet(), batch)
    assert raw_w["loss_inner"].item() != pytest.approx(base["loss_inner"].item())
    outer = run(make_criterion(outer_form="printed"), FakeNet(), batch)
    assert outer["loss_outer"].item() != pytest.approx(base["loss_outer"].item())
    one_sided = run(make_criterion(mask_shared="negative", margin=2.0), FakeNet(), batch)
    assert one_sided["loss_triplet"].item() != pytest.approx(base["loss_triplet"].item())
    for fn in ("sigmoid", "tanh", "identity"):
        other = run(make_criterion(match_fn=fn, margin=2.0), FakeNet(), batch)
        assert other["score_pos"].item() != pytest.approx(base["score_pos"].item()), fn


def test_sap_loss_off_and_warmup_weight():
    batch = make_batch()
    off = run(make_criterion(sap_loss=False), FakeNet(), batch)
    assert off["loss"].item() == off["loss_triplet"].item()
    assert not off["loss_inner"].requires_grad and off["loss_inner"].item() > 0  # still reported
    warm = run(make_criterion(), FakeNet(), batch, sap_weight=0.0)
    assert warm["loss"].item() == pytest.approx(warm["loss_triplet"].item() / 3)


def test_loss_weights_sum_into_total_and_gradients_flow():
    net, batch = FakeNet(), make_batch()
    got = run(make_criterion(l1=0.2, l2=0.3, l3=0.5), net, batch, sap_weight=0.5)
    expected = 0.2 * got["loss_triplet"] + 0.5 * (0.3 * got["loss_inner"] + 0.5 * got["loss_outer"])
    assert got["loss"].item() == pytest.approx(expected.item())
    got["loss"].backward()
    assert net.emb.grad is not None and net.emb.grad.abs().sum() > 0


def test_bad_criterion_arguments_raise():
    for kw, match in (
        ({"mask_shared": "positive"}, "mask_shared"),
        ({"match_fn": "relu"}, "fn must be one of"),
        ({"outer_form": "x"}, "outer_form"),
        ({"weight_form": "x"}, "weight_form"),
        ({"l2": -0.1}, ">= 0"),
        ({"tau": 0.0}, "tau"),
        ({"l1": 0.0}, "positive 'triplet'"),
    ):
        with pytest.raises(ValueError, match=match):
            make_criterion(**kw)
    with pytest.raises(ValueError, match="kind must be one of"):
        build_criterion({"triplet": 1.0}, matching={"kind": "Q"})
    with pytest.raises(ValueError, match="unknown term"):
        build_criterion({"triplet": 1.0, "tripplet_video": 1.0})
    batch = make_batch()
    del batch["vid"]
    with pytest.raises(ValueError, match="vid"):
        run(make_criterion(negative_video=True), FakeNet(), batch)


def test_incompatible_network_and_loss_fail_at_build_time():
    dot = make_net(alignment={"kind": "dot"})
    with pytest.raises(ValueError, match="cosine alignment"):
        make_criterion(dot)
    make_criterion(dot, match_fn="sigmoid")  # a bounded g of A works with any alignment
    with pytest.raises(ValueError, match="MLP head"):
        make_criterion(make_net(), grounding_head="mlp")
    with pytest.raises(ValueError, match="no MIL terms"):
        make_criterion(make_net(grounding_head="mlp"))


def test_loss_building_blocks_hand_cases():
    torch.testing.assert_close(
        ops.triplet_loss(torch.tensor([0.5, 0.1]), torch.tensor([0.1, 0.5]), 0.2), torch.tensor([0.0, 0.6])
    )
    tok = torch.tensor([[5, 6, 1, 7], [2, 3, 0, 0]])
    other = torch.tensor([[6, 1, 9], [3, 3, 2]])
    shared, other_shared = ops.shared_token_masks(tok, tok > 0, other, other > 0)
    assert shared.tolist() == [[False, True, False, False], [True, True, False, False]]
    assert other_shared.tolist() == [[True, False, False], [True, True, True]]
    idx, ok = ops.negative_video_indices(["a", "a", "b", "a"])
    assert idx.tolist() == [2, 2, 3, 2] and ok.all()
    idx, ok = ops.negative_video_indices(["x", "x"])
    assert not ok.any()
    sc = torch.tensor([[[0.0, 1.0], [-torch.inf, 2.0]], [[3.0, 9.0], [-torch.inf, 9.0]]])
    cm = torch.tensor([[True, True], [True, False]])
    w = ops.segment_weights(sc, cm, tau=1.0)
    z = 1 + math.e + math.e**2
    torch.testing.assert_close(w[0], torch.tensor([[1 / z, math.e / z], [0.0, math.e**2 / z]]))
    torch.testing.assert_close(w[1], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    raw = ops.segment_weights(sc, cm, form="raw")
    torch.testing.assert_close(raw, torch.tensor([[[0.0, 1.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 0.0]]]))
    loss = ops.weighted_segment_loss(w, torch.ones_like(w))
    torch.testing.assert_close(loss, torch.ones(2))


def test_mlp_head_trains_with_mil_triplet():
    net = make_net(grounding_head="mlp", interaction={"layers": 1}, head={"hidden": 8})
    batch = make_batch()
    batch["video"] = torch.randn(4, 5, 20, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    batch["tokens"] = batch["tokens"] * 3 % 40 * batch["token_mask"]
    net.eval()
    got = run(make_criterion(net, grounding_head="mlp", negative_video=True), net, batch)
    assert got["mil"].item() > 0 and "mil_video" in got
    # Eq. 13 with the head: the MIL terms at the weights of the matching terms they mirror
    expected = (got["triplet"] + got["triplet_video"] + got["mil"] + got["mil_video"] + got["inner"] + got["outer"]) / 3
    assert got["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    got["loss"].backward()
    assert net.head.fc3.weight.grad.abs().sum() > 0


def _tiny_training_batch():
    g = torch.Generator().manual_seed(0)
    B, Nv, Ns, V = 8, 10, 7, 40
    tm = torch.arange(Ns)[None] < torch.randint(2, Ns + 1, (B,), generator=g)[:, None]
    ntm = torch.arange(Ns - 2)[None] < torch.randint(2, Ns - 1, (B,), generator=g)[:, None]
    return {
        "video": torch.randn(B, Nv, 20, generator=g),
        "video_mask": torch.arange(Nv)[None] < torch.randint(3, Nv + 1, (B,), generator=g)[:, None],
        "tokens": torch.randint(2, V, (B, Ns), generator=g) * tm,
        "token_mask": tm,
        "content_mask": tm,
        "neg_tokens": torch.randint(2, V, (B, Ns - 2), generator=g) * ntm,
        "neg_token_mask": ntm,
        "neg_content_mask": ntm,
        "vid": [f"v{i}" for i in range(B)],
    }


def test_total_loss_halves_in_200_adam_steps():
    """Default criterion; small network without dropout so the run is deterministic."""
    net = make_net(dropout=0.0, d_model=32, ffn_dim=64, interaction={"layers": 2})
    criterion = make_criterion(net)
    batch = _tiny_training_batch()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    first = None
    for _ in range(200):
        losses = run(criterion, net, batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = losses["loss"].item() if first is None else first
    with torch.no_grad():
        last = run(criterion, net, batch)
    assert last["loss"].item() <= 0.5 * first, (first, {k: v.item() for k, v in last.items()})
    assert last["score_pos"] > last["score_neg"]


def _interaction_grad(net, crit, batch) -> float:
    net.zero_grad()
    run(crit, net, batch)["loss"].backward()
    return sum(float(p.grad.abs().sum()) for p in net.interaction.parameters() if p.grad is not None)


def test_base_map_matching_never_trains_the_interaction():
    batch = _tiny_training_batch()
    net = make_net(kind="two_stage", dropout=0.0)
    matching_only = {"weights": {"triplet": 1.0}, "sap_loss": False}
    base = build_criterion(matching={"kind": "base"}, net=net, **matching_only)
    raw = build_criterion(matching={"kind": "raw"}, net=net, **matching_only)
    assert _interaction_grad(net, base, batch) == 0.0 < _interaction_grad(net, raw, batch)
    # the SAP terms, weighted by the base map's segments, do train it
    selftrain = build_criterion({"triplet": 1 / 3, "inner": 1 / 3, "outer": 1 / 3}, matching={"kind": "base"},
                                sap={"weights_from": "base"}, net=net)
    assert selftrain.terms[1].weights_on == "base" and _interaction_grad(net, selftrain, batch) > 0
    with pytest.raises(ValueError, match="two_stage"):
        build_criterion({"triplet": 1.0}, matching={"kind": "base"}, net=make_net())
    with pytest.raises(ValueError, match="two_stage"):
        build_criterion({"triplet": 1.0, "inner": 1.0}, sap={"weights_from": "base"}, net=make_net())


def _binding_batch():
    """make_batch plus binding negatives: sample 0 swaps token 4 -> 11, sample 2 swaps 8 -> 3,
    sample 1 has none (its own sentence, bind_ok False), sample 3 swaps 3 -> 6."""
    batch = make_batch()
    bind = batch["tokens"].clone()
    bind[0, 2], bind[2, 2], bind[3, 0] = 11, 3, 6
    batch.update(bind_tokens=bind, bind_token_mask=bind > 0, bind_content_mask=bind > 0,
                 bind_ok=torch.tensor([True, False, True, True]))
    return batch


def _binding_criterion(kind="sentence", **kw):
    return build_criterion({"triplet": 1.0, "triplet_binding": 1.0}, sap_loss=False,
                           binding={"kind": kind, **kw})


def test_binding_term_is_the_joint_triplet_on_the_binding_negative():
    net, batch = FakeNet(), _binding_batch()
    crit = _binding_criterion(matching={"kind": "joint", "fn": "cosine", "temperature": None})
    assert crit.needs_binding and not make_criterion().needs_binding
    tp = run_training_pass(net, batch, negative_video=False, binding=True)
    assert net.calls == [3 * 4]  # one forward over (V, S), (V, S-), (V, S~)
    got = crit(tp)["terms"]["triplet_binding"]
    with torch.no_grad():
        cos = lambda toks: torch.tanh(torch.einsum("bie,bje->bij", net.emb[toks], batch["video"]))  # noqa: E731
        expected = []
        def joint(toks, mask, b):  # max over valid clips of the mean over valid tokens
            return cos(toks)[b, mask[b]][:, : int(batch["video_mask"][b].sum())].mean(0).max()

        for b in (0, 2, 3):  # sample 1 has no binding negative
            s = joint(batch["tokens"], batch["token_mask"], b)
            s_bind = joint(batch["bind_tokens"], batch["bind_token_mask"], b)
            expected.append(max(0.0, 0.2 - float(s) + float(s_bind)))
    assert got.item() == pytest.approx(sum(expected) / 3, rel=1e-9)


def test_swapped_word_term_compares_the_two_words_at_the_sentence_moment():
    net, batch = FakeNet(), _binding_batch()
    crit = _binding_criterion("word", temperature=0.5)
    out = crit(run_training_pass(net, batch, negative_video=False, binding=True))
    with torch.no_grad():
        A = torch.tanh(torch.einsum("bie,bje->bij", net.emb[batch["tokens"]], batch["video"]))
        expected = []
        for b, pos, new in ((0, 2, 11), (2, 2, 3), (3, 0, 6)):
            L, n = int(batch["video_mask"][b].sum()), int(batch["token_mask"][b].sum())
            a = torch.softmax(A[b, :n, :L].mean(0) / 0.5, dim=0)
            w_new = torch.tanh(batch["video"][b, :L] @ net.emb[new])
            expected.append(max(0.0, 0.2 - float((a * (A[b, pos, :L] - w_new)).sum())))
    assert out["terms"]["triplet_binding"].item() == pytest.approx(sum(expected) / 3, rel=1e-9)
    out["loss"].backward()
    assert net.emb.grad[11].abs().sum() > 0  # the swapped-in word is trained


def test_binding_needs_its_batch_keys_and_a_known_kind():
    with pytest.raises(ValueError, match="binding_tolerance"):
        run_training_pass(FakeNet(), make_batch(), negative_video=False, binding=True)
    with pytest.raises(ValueError, match="binding: kind"):
        _binding_criterion("nope")
    with pytest.raises(ValueError, match="temperature"):
        _binding_criterion("word", temperature=0.0)
    # without the binding pass the term reports nothing (its weight is 0 by default)
    got = make_criterion()(run_training_pass(FakeNet(), make_batch(), negative_video=False))
    assert "triplet_binding" not in got["terms"]


def _sibling_batch():
    """make_batch plus siblings: sample 0's sibling shares its token 0, sample 1 has none (sib_ok False)."""
    batch = make_batch()
    sib = batch["tokens"].flip(0).clone()
    sib[0, 0] = batch["tokens"][0, 0]
    batch.update(sib_tokens=sib, sib_token_mask=sib > 0, sib_content_mask=sib > 0,
                 sib_ok=torch.tensor([True, False, True, True]))
    return batch


def test_sibling_term_is_the_two_way_contrast_on_the_same_clips():
    net, batch = FakeNet(), _sibling_batch()
    crit = build_criterion({"triplet": 1.0, "sibling": 1.0}, sap_loss=False, matching={"kind": "raw", "fn": "cosine"},
                           sibling={"window": 2})
    assert crit.needs_sibling and not make_criterion().needs_sibling
    tp = run_training_pass(net, batch, negative_video=False, sibling=True)
    assert net.calls == [3 * 4]  # one forward over (V, S), (V, S-), (V, S')
    got = crit(tp)["terms"]["sibling"]
    with torch.no_grad():
        cos = lambda toks: torch.tanh(torch.einsum("bie,bje->bij", net.emb[toks], batch["video"]))  # noqa: E731
        expected = []
        for b in (0, 2, 3):  # sample 1 has no sibling
            L = int(batch["video_mask"][b].sum())
            mine = [i for i in range(batch["tokens"].shape[1]) if batch["token_mask"][b, i]
                    and int(batch["tokens"][b, i]) not in batch["sib_tokens"][b][batch["sib_token_mask"][b]].tolist()]
            theirs = [k for k in range(batch["sib_tokens"].shape[1]) if batch["sib_token_mask"][b, k]
                      and int(batch["sib_tokens"][b, k]) not in batch["tokens"][b][batch["token_mask"][b]].tolist()]
            d = cos(batch["tokens"])[b, mine, :L].mean(0) - cos(batch["sib_tokens"])[b, theirs, :L].mean(0)
            w = min(2, L)
            runs = torch.stack([d[s: s + w].mean() for s in range(L - w + 1)])
            expected.append((max(0.0, 0.2 - float(runs.max())) + max(0.0, 0.2 + float(runs.min()))) / 2)
    assert got.item() == pytest.approx(sum(expected) / 3, rel=1e-9)


def test_sibling_needs_its_batch_keys_and_valid_arguments():
    with pytest.raises(ValueError, match="data.siblings"):
        run_training_pass(FakeNet(), make_batch(), negative_video=False, sibling=True)
    with pytest.raises(ValueError, match="tokens"):
        build_criterion({"triplet": 1.0, "sibling": 1.0}, sibling={"tokens": "verbs"})
    with pytest.raises(TypeError, match="model.loss.sibling"):
        build_criterion({"triplet": 1.0, "sibling": 1.0}, sibling={"nope": 1})
    got = make_criterion()(run_training_pass(FakeNet(), make_batch(), negative_video=False))
    assert "sibling" not in got["terms"]  # without the sibling pass the term reports nothing
