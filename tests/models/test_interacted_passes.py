"""The interaction runs only on the passes whose interacted map a loss reads (FSANCriterion.interacted_passes,
AttachedTwoStageFSAN's ``interact``): the same losses and gradients as the whole network on every pass."""
from __future__ import annotations

import pytest
import torch

from conftest import compose_config
from fsan_lightning.models import run_training_pass
from fsan_lightning.models.criterion import PASSES, FSANCriterion, TripletTerms
from fsan_lightning.models.matching import BaseMapMatchingScore, MatchingScore
import helpers
from helpers import FEATURE_SPACE_NET, make_net, stub_data_side

torch.set_num_threads(1)
VOCAB, WORD, VDIM, NV = 60, 50, 32, 16


def _open_gates(net, value: float = 0.5) -> None:
    """Open ICIM's residual gates (0 at init: the identity), so the interacted map differs from the base map."""
    with torch.no_grad():
        for name, p in net.interaction.named_parameters():
            if "gate" in name:
                p.fill_(value)


def _batch(B: int = 6, seed: int = 0, vocab: int = VOCAB, vdim: int = VDIM) -> dict:
    """A training batch of the stub data side's shapes, with pseudo-moments (the self-training epochs)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16, 12, 9, 16, 7, 14])[:B]
    vm = torch.arange(NV)[None] < lengths[:, None]
    video = torch.randn(B, NV, vdim, generator=g) * vm[..., None]

    def sentences(n):
        ids = torch.randint(2, vocab, (B, n), generator=g)
        mask = torch.arange(n)[None] < torch.randint(2, n + 1, (B, 1), generator=g)
        ids = torch.where(mask, ids, torch.zeros_like(ids))
        return ids, mask, mask & ~torch.isin(ids, torch.tensor([2, 3, 4, 5]))

    tok, tm, cm = sentences(7)
    ntok, ntm, ncm = sentences(6)
    ntok[1, 0] = tok[1, 0]  # a shared word
    start = torch.randint(0, 5, (B, 1), generator=g)
    moment = (torch.arange(NV)[None] >= start) & (torch.arange(NV)[None] < start + 4) & vm
    return {"video": video, "video_mask": vm, "tokens": tok, "token_mask": tm, "content_mask": cm,
            "neg_tokens": ntok, "neg_token_mask": ntm, "neg_content_mask": ncm, "pseudo_moment": moment,
            "vid": ["a", "b", "c", "a", "d", "e"][:B], "qidx": torch.arange(B)}


def _module(*overrides: str):
    from fsan_lightning._entry import build_module

    torch.manual_seed(0)
    module = build_module(compose_config("train", ["experiment=synthetic_cpu", *overrides]),
                          stub_data_side(VOCAB, WORD, VDIM))
    _open_gates(module.net)
    return module


def test_attached_network_interacts_on_the_chosen_samples_only():
    net = make_net(kind="attached_two_stage", base=FEATURE_SPACE_NET,
                   interaction={"kind": "bottleneck_gated_icim", "layers": 2, "width": 4})
    _open_gates(net)
    b = _batch(vocab=helpers.VOCAB, vdim=helpers.VDIM)
    args = (b["video"], b["video_mask"], b["tokens"], b["token_mask"])
    full = net(*args)
    rows = torch.tensor([True, False, True, False, False, True])
    part = net(*args, interact=rows)
    assert not torch.allclose(full.P, full.base_P, atol=1e-4)  # the interaction changes the map
    for name in ("A", "P", "cosine", "text_features", "video_features"):
        torch.testing.assert_close(getattr(part, name)[rows], getattr(full, name)[rows], rtol=0, atol=1e-6)
    for name in ("base_A", "base_P", "base_cosine", "token_weights"):
        torch.testing.assert_close(getattr(part, name), getattr(full, name), rtol=0, atol=0)
    torch.testing.assert_close(part.A[~rows], full.base_A[~rows], rtol=0, atol=0)  # the others: their base map
    torch.testing.assert_close(part.P[~rows], full.base_P[~rows], rtol=0, atol=0)
    with net.interaction_bypassed():
        bypassed = net(*args)
    none = net(*args, interact=torch.zeros(6, dtype=torch.bool))
    torch.testing.assert_close(none.P, bypassed.P, rtol=0, atol=0)
    every = net(*args, interact=torch.ones(6, dtype=torch.bool))
    torch.testing.assert_close(every.P, full.P, rtol=0, atol=0)
    for bad in (torch.ones(5, dtype=torch.bool), torch.ones(6)):
        with pytest.raises(ValueError, match="interact must be bool"):
            net(*args, interact=bad)


@pytest.mark.parametrize("overrides", [
    (), ("ablation=no_sap_loss",), ("ablation=no_cross_attn",), ("ablation=no_grounding_module",),
    ("model=fsan_self_trained",), ("model.loss.matching.kind=raw",),
], ids=lambda o: "-".join(o) or "fsan_cpu")
def test_restricted_pass_gives_the_losses_and_gradients_of_the_whole_network(overrides):
    module = _module(*overrides)
    crit, net, batch = module.criterion, module.net, _batch()
    assert crit.passes == {"pos", "neg", "neg_video"}
    read = crit.interacted_passes(crit.passes)
    expected = {"pos", "neg", "neg_video"} if overrides in (("ablation=no_grounding_module",),
                                                            ("model.loss.matching.kind=raw",)) else {"pos"}
    assert read == expected  # matching on the base map: only the positive pair's map after the interaction
    seen: list[int] = []
    hook = net.interaction.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))

    def run(interacted):
        net.zero_grad()
        tp = run_training_pass(net, batch, negative_video=True, interacted=interacted)
        got = crit(tp)
        got["loss"].backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        return got, grads

    whole, whole_grads = run(None)
    restricted, restricted_grads = run(read)
    hook.remove()
    assert seen == [18, 6 * len(read)]  # the interaction ran on 3 passes x 6 samples, then on those read
    torch.testing.assert_close(restricted["loss"], whole["loss"], rtol=1e-6, atol=1e-7)
    for key in ("terms", "stats"):
        assert restricted[key].keys() == whole[key].keys()
        for name in whole[key]:
            torch.testing.assert_close(restricted[key][name], whole[key][name], rtol=1e-6, atol=1e-7, msg=name)
    assert restricted_grads.keys() == whole_grads.keys()
    for name in whole_grads:
        torch.testing.assert_close(restricted_grads[name], whole_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # the LightningModule's losses take the restricted route
    torch.testing.assert_close(module.losses(batch)["loss"], whole["loss"], rtol=1e-6, atol=1e-7)


def test_a_term_that_does_not_declare_what_it_reads_is_taken_to_read_every_pass():
    class Opaque:
        names = ("opaque",)

        def __call__(self, tp):
            return {}, {}

    base = TripletTerms(BaseMapMatchingScore())
    assert base.interacted_passes(PASSES) == frozenset()
    assert TripletTerms(MatchingScore()).interacted_passes(frozenset({"pos", "neg"})) == {"pos", "neg"}
    crit = FSANCriterion([base, Opaque()], {"triplet": 1.0})
    assert crit.interacted_passes({"pos", "neg"}) == {"pos", "neg"}
    assert FSANCriterion([base], {"triplet": 1.0}).interacted_passes({"pos", "neg"}) == frozenset()
    with pytest.raises(ValueError, match="unknown pass"):
        crit.interacted_passes({"pos", "negative"})


def test_networks_without_the_option_run_every_pass_whole():
    net = make_net(base=FEATURE_SPACE_NET)  # the one-stage FSAN: its interaction feeds every output
    assert not getattr(net, "interacts_on_rows", False)
    b = _batch(vocab=helpers.VOCAB, vdim=helpers.VDIM)
    whole = run_training_pass(net, b, negative_video=True)
    asked = run_training_pass(net, b, negative_video=True, interacted={"pos"})
    torch.testing.assert_close(asked.neg.P, whole.neg.P, rtol=0, atol=0)
