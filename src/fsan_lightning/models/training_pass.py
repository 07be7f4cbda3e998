"""One training step's forward passes: the sentence, a negative sentence, (a negative video), (a binding
negative), (a sibling) in one batch."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import ops
from .fsan import FSAN, FSANOutput


@dataclass
class TrainingPass:
    """What the loss terms read; token tensors are right-padded to one width Ns.

    Attributes:
        pos: output on (V, S). neg: output on (V, S-), S- a sentence of another video.
        neg_video: output on (V-, S), V- another sample's video, or None.
        tokens, token_mask: int64 / bool [B, Ns] of S. neg_tokens, neg_token_mask: of S-.
        content_mask: bool [B, Ns] content words of S, or None.
        neg_video_ok: bool [B] samples whose V- is really another video (None without V-).
        bind: output on (V, S~), S~ the binding negative of S (a word swapped for one of another
            sentence of V, `fsan_lightning.data.negatives`), or None. bind_tokens, bind_token_mask,
            bind_content_mask: of S~.
        bind_ok: bool [B] samples that have a binding negative (None without it).
        sib: output on (V, S'), S' another sentence of V (`fsan_lightning.data.negatives.SiblingSentences`),
            or None. sib_tokens, sib_token_mask, sib_content_mask: of S'. sib_ok: bool [B] samples that have a sibling.
        pseudo_moment: bool [B, Nv] each sample's pseudo-moment (batch key ``pseudo_moment``, set by
            ``FSANModule`` on training batches once the self-training teacher has run), or None.
    """

    pos: FSANOutput
    neg: FSANOutput
    neg_video: FSANOutput | None
    tokens: Tensor
    token_mask: Tensor
    neg_tokens: Tensor
    neg_token_mask: Tensor
    content_mask: Tensor | None
    neg_video_ok: Tensor | None
    bind: FSANOutput | None = None
    bind_tokens: Tensor | None = None
    bind_token_mask: Tensor | None = None
    bind_content_mask: Tensor | None = None
    bind_ok: Tensor | None = None
    sib: FSANOutput | None = None
    sib_tokens: Tensor | None = None
    sib_token_mask: Tensor | None = None
    sib_content_mask: Tensor | None = None
    sib_ok: Tensor | None = None
    pseudo_moment: Tensor | None = None


def run_training_pass(net: FSAN, batch: Mapping[str, Any], negative_video: bool,
                      binding: bool = False, sibling: bool = False,
                      interacted: Collection[str] | None = None) -> TrainingPass:
    """Run ``net`` once on the concatenated pairs of a training batch.

    Args:
        batch: ``video`` [B, Nv, Dv], ``video_mask`` [B, Nv], ``tokens``/``token_mask``/``content_mask``
            [B, Ns], ``neg_tokens``/``neg_token_mask`` [B, Ns'], ``vid`` (B str, for ``negative_video``).
        negative_video: also run the sentence on another sample's video (roll by one, skipping
            same-``vid`` pairs).
        binding: also run the binding negative on V (batch keys ``bind_tokens``, ``bind_token_mask``,
            ``bind_ok``: the dataset's items with ``binding_tolerance`` set).
        sibling: also run the sibling on V (batch keys ``sib_tokens``, ``sib_token_mask``, ``sib_ok``: the
            dataset's items with ``siblings`` on).
        interacted: None (every pass through the whole network) or the passes ("pos", "neg", "neg_video",
            "bind", "sib") whose outputs after the interaction the losses read
            (:meth:`~.criterion.FSANCriterion.interacted_passes`). A network that can run its interaction on
            some samples only (``net.interacts_on_rows``: :class:`~.fsan.AttachedTwoStageFSAN`) then skips it
            on the other passes, whose interacted outputs are their base map's; other networks ignore it.
    """
    video, vm = batch["video"], batch["video_mask"]
    B = video.shape[0]
    if binding and "bind_tokens" not in batch:
        raise ValueError("run_training_pass: binding=True (a positive loss weight 'triplet_binding') needs binding "
                         "negatives in the batch: set data.binding_tolerance (e.g. +data.binding_tolerance=0)")
    if sibling and "sib_tokens" not in batch:
        raise ValueError("run_training_pass: sibling=True (a positive loss weight 'sibling') needs siblings in "
                         "the batch: set data.siblings=true")
    Ns = max(batch["tokens"].shape[1], batch["neg_tokens"].shape[1],
             batch["bind_tokens"].shape[1] if binding else 0, batch["sib_tokens"].shape[1] if sibling else 0)
    tok, tm = _pad(batch["tokens"], Ns), _pad(batch["token_mask"], Ns)
    ntok, ntm = _pad(batch["neg_tokens"], Ns), _pad(batch["neg_token_mask"], Ns)
    content = batch.get("content_mask")
    content = None if content is None else _pad(content, Ns)
    videos, vmasks, toks, tmasks = [video, video], [vm, vm], [tok, ntok], [tm, ntm]
    nv_ok = None
    if negative_video:
        if "vid" not in batch:
            raise ValueError("run_training_pass: negative_video=True needs the batch key 'vid'")
        nv_idx, nv_ok = ops.negative_video_indices(batch["vid"])
        nv_idx, nv_ok = nv_idx.to(video.device), nv_ok.to(video.device)
        videos.append(video[nv_idx])
        vmasks.append(vm[nv_idx])
        toks.append(tok)
        tmasks.append(tm)
    rows: dict[str, int] = {}  # an extra sentence on V (binding negative, sibling): its first row
    extra: dict[str, Tensor | None] = {}
    for prefix, wanted in (("bind", binding), ("sib", sibling)):
        if not wanted:
            continue
        rows[prefix] = sum(v.shape[0] for v in videos)
        content_key = f"{prefix}_content_mask"
        extra[f"{prefix}_tokens"] = _pad(batch[f"{prefix}_tokens"], Ns)
        extra[f"{prefix}_token_mask"] = _pad(batch[f"{prefix}_token_mask"], Ns)
        extra[content_key] = _pad(batch[content_key], Ns) if content_key in batch else None
        extra[f"{prefix}_ok"] = batch[f"{prefix}_ok"].to(video.device)
        videos.append(video)
        vmasks.append(vm)
        toks.append(extra[f"{prefix}_tokens"])
        tmasks.append(extra[f"{prefix}_token_mask"])
    if interacted is not None and getattr(net, "interacts_on_rows", False):
        names = ["pos", "neg"] + (["neg_video"] if negative_video else []) + list(rows)
        flags = [torch.full((B,), name in interacted, dtype=torch.bool) for name in names]
        out = net(torch.cat(videos), torch.cat(vmasks), torch.cat(toks), torch.cat(tmasks),
                  interact=torch.cat(flags).to(video.device))
    else:
        out = net(torch.cat(videos), torch.cat(vmasks), torch.cat(toks), torch.cat(tmasks))
    for prefix, start in rows.items():
        extra[prefix] = out.select(slice(start, start + B))
    return TrainingPass(
        pos=out.select(slice(0, B)), neg=out.select(slice(B, 2 * B)),
        neg_video=out.select(slice(2 * B, 3 * B)) if negative_video else None,
        tokens=tok, token_mask=tm, neg_tokens=ntok, neg_token_mask=ntm, content_mask=content,
        neg_video_ok=nv_ok, pseudo_moment=batch.get("pseudo_moment"), **extra,
    )

def _pad(x: Tensor, n: int) -> Tensor:
    """Right-pad the last dim of [B, N] to n with 0 / False."""
    if x.shape[1] >= n:
        return x
    return torch.cat([x, x.new_zeros((x.shape[0], n - x.shape[1]))], dim=1)
