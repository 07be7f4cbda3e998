"""Metrics under a real 2-process gloo group: states gathered, the sampler's padded duplicate counted once."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fsan_lightning.metrics import DiDeMoRank, GroundingRecall, didemo_candidates

N = 11


def _data():
    g = torch.Generator().manual_seed(0)
    dur = torch.full((N,), 100.0)
    s = torch.rand(N, generator=g) * 60
    gt = torch.stack([s, s + 5 + torch.rand(N, generator=g) * 35], 1)
    ps = torch.rand(N, 5, generator=g) * 70
    preds = torch.stack([ps, torch.minimum(ps + torch.rand(N, 5, generator=g) * 40, dur[:, None])], -1)
    cands = didemo_candidates()
    ranked = torch.stack([cands[torch.randperm(21, generator=g)] for _ in range(N)])
    annot = cands[torch.randint(0, 21, (N, 4), generator=g)]
    return preds, gt, ranked, annot


def _worker(rank: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    preds, gt, ranked, annot = _data()
    # DistributedSampler without shuffling: pad 11 -> 12 with index 0, rank r takes r, r+2, ...
    order = (list(range(N)) + [0])[rank::2]
    rec, rk = GroundingRecall(), DiDeMoRank()
    for lo in range(0, len(order), 4):
        idx = torch.tensor(order[lo : lo + 4])
        rec.update(idx, preds[idx], gt[idx])
    if rank == 0:  # rank 1 never updates this one: the empty-rank corner case of the gather
        rk.update(torch.arange(N), ranked, annot)
    q, iou = rec.per_query()
    result = {"recall": rec.compute(), "didemo": rk.compute(), "qidx": q.tolist(), "iou": iou.tolist()}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)
    dist.barrier()
    dist.destroy_process_group()


def test_two_process_gather_and_dedup(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.start_processes(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, start_method="fork")
    preds, gt, ranked, annot = _data()
    rec, rk = GroundingRecall(), DiDeMoRank()
    rec.update(torch.arange(N), preds, gt)
    rk.update(torch.arange(N), ranked, annot)
    q, iou = rec.per_query()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["recall"] == pytest.approx(rec.compute(), abs=1e-9)
        assert got["didemo"] == pytest.approx(rk.compute(), abs=1e-9)
        assert got["qidx"] == q.tolist() == list(range(N))
        assert got["iou"] == pytest.approx(iou.tolist(), abs=1e-12)
