"""The benchmark helpers at tiny sizes: correct baselines, counts and arithmetic; no timing assertions."""
# ruff: noqa: E402  (the repository root and tests/ go on sys.path before the imports)
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]
from benchmarks import bench_data, bench_ops, gpu_step, run, train_run
from benchmarks.common import (
    PAPER_MODEL,
    SMALL_MODEL,
    build_net_and_loss,
    count_flops,
    matmul_flops,
    model_settings,
    projected_epoch_seconds,
    random_train_batch,
    slice_batch,
    thread_counts,
    training_loss,
    using_threads,
)
from benchmarks.loop_reference import LOOP_OPS
from benchmarks.world import FEATURES_FILE, WorldSpec, ensure_world
from fsan_lightning import ops
from fsan_lightning.data.features import HDF5FeatureStore
from fsan_lightning.data.readers import read_annotations

import reference_ops

REPO = Path(__file__).resolve().parents[2]
TINY = WorldSpec(train_videos=6, val_videos=2, test_videos=2, queries_per_video=2, min_rows=10, max_rows=20,
                 dim=16)


def _ragged(B=3, Ns=5, Nv=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(B, Ns, Nv, generator=g, dtype=torch.float64)
    tm = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    cm = torch.arange(Nv)[None, :] < torch.tensor([[7], [4], [1]])
    P[0, 2, 3] = 0.0  # a floor hit of the logs
    return P, tm, cm


@pytest.mark.parametrize("name", list(LOOP_OPS))
def test_loop_baseline_equals_the_ops_and_the_test_oracle(name):
    P, tm, cm = _ragged()
    valid = ops.segment_mask(cm)
    ref = getattr(reference_ops, "ref_" + name)(P, tm, cm)
    loop_P = P.clone().requires_grad_(True)
    vec_P = P.clone().requires_grad_(True)
    loop = LOOP_OPS[name](loop_P, tm, cm)
    vec = getattr(ops, name)(vec_P, tm, cm)
    assert torch.equal(torch.isfinite(loop), torch.isfinite(vec))
    torch.testing.assert_close(loop[valid], ref[valid])
    torch.testing.assert_close(vec[valid], loop[valid])
    assert torch.all(loop[~valid] == vec[~valid])  # -inf for SC, 0 for the losses
    torch.where(valid, loop, 0).sum().backward()
    torch.where(valid, vec, 0).sum().backward()
    torch.testing.assert_close(loop_P.grad, vec_P.grad)


def test_forward_backward_returns_the_gradient_of_the_valid_cells():
    P, tm, cm = bench_ops.op_inputs(2, 3, 4)
    grad = bench_ops.forward_backward(ops.segment_scores, P, tm, cm)
    assert grad.shape == P.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_ops_benchmark_rows_at_tiny_size():
    out = bench_ops.run(batch=2, num_tokens=3, clip_counts=(4,), loop_samples={4: 1}, reps=1, threads=[1],
                        log=lambda *_: None)
    assert [(r["nv"], r["op"], r["threads"]) for r in out["rows"]] == [
        (4, "segment_scores", 1), (4, "inner_loss_map", 1), (4, "outer_loss_map", 1), (4, "all three", 1)]
    for r in out["rows"]:
        assert r["vectorised_ms"] > 0 and r["loop_ms"] > 0 and r["loop_samples"] == 1
        # both times are rounded in the rows, so the ratio of the rounded times is only close
        assert r["speedup"] == pytest.approx(r["loop_ms"] / r["vectorised_ms"], rel=0.1, abs=0.1)
    total = out["rows"][-1]
    assert total["loop_ms"] == pytest.approx(sum(r["loop_ms"] for r in out["rows"][:3]), abs=0.2)


def test_flop_counts():
    a, b = torch.randn(6, 5), torch.randn(5, 7)
    assert matmul_flops(6, 5, 7) == 2 * 6 * 5 * 7
    assert count_flops(lambda: a @ b) == matmul_flops(6, 5, 7)
    # the model is per sample: a step's FLOPs are linear in the batch (how train_run scales them)
    net, crit = build_net_and_loss(model_settings(16, interaction_layers=1, num_heads=2, ffn_dim=32, dropout=0.0),
                                   vocab_size=50, word_dim=8, video_dim=12)
    assert len(net.interaction.layers) == 1
    batch = random_train_batch(4, num_clips=6, num_tokens=5, video_dim=12, vocab_size=50)

    def flops(n):
        return count_flops(lambda: training_loss(net, crit, slice_batch(batch, n)).backward())

    one = flops(1)
    assert one > 0 and flops(2) == 2 * one and flops(4) == 4 * one


def test_slice_batch_cuts_tensors_and_lists():
    batch = random_train_batch(5, num_clips=3, num_tokens=2, video_dim=4, vocab_size=20)
    part = slice_batch(batch, 2)
    assert part["video"].shape == (2, 3, 4) and part["vid"] == ["v0", "v1"]
    assert not (set(batch["tokens"].flatten().tolist()) & set(batch["neg_tokens"].flatten().tolist()))


def test_using_threads_restores_the_count():
    before = torch.get_num_threads()
    with using_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert thread_counts()[0] == 1 and thread_counts()[-1] == before


def test_epoch_projection_arithmetic():
    assert projected_epoch_seconds(2.0) == (293, 586.0)  # ceil(37421 / 128) = 293
    assert projected_epoch_seconds(1.0, pairs=256, batch=128) == (2, 2.0)
    assert projected_epoch_seconds(1.0, pairs=257, batch=128) == (3, 3.0)
    assert gpu_step.epoch_projection(0.5, 128) == {"pairs": 37421, "batch": 128, "steps": 293,
                                                    "seconds": 146.5, "minutes": 2.442}
    with pytest.raises(ValueError):
        projected_epoch_seconds(1.0, batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_gpu_benchmark_fails_clearly_without_cuda(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    with pytest.raises(SystemExit) as exc:
        gpu_step.main(["--out", str(out), "--steps", "1"])
    assert exc.value.code == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not out.exists()


def _merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key (nested dicts merged, as Hydra merges config groups)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_model_settings_match_the_configs():
    conf = REPO / "src" / "fsan_lightning" / "conf" / "model"

    def load(path):
        return yaml.safe_load((conf / path).read_text())

    paper = {"net": load("net/fsan.yaml"), "loss": load("loss/fsan.yaml"), "optim": load("optim/adam.yaml")}
    assert load("fsan.yaml")["defaults"][:3] == [{"net": "fsan"}, {"loss": "fsan"}, {"optim": "adam"}]
    small_file = load("fsan_small.yaml")
    assert small_file["defaults"][0] == "fsan"
    small = _merged(paper, {k: v for k, v in small_file.items() if k in paper})
    assert set(small_file) - {"defaults"} <= set(paper)  # fsan_small changes only net/loss/optim settings
    assert PAPER_MODEL == paper and SMALL_MODEL == small


def test_world_is_readable_and_cached(tmp_path):
    d = ensure_world(tmp_path, TINY)
    queries, report = read_annotations("activitynet", d / "train.json")
    assert len(queries) == 12 and report.queries == 12
    store = HDF5FeatureStore(d / FEATURES_FILE)
    rows = [store.read(q.vid, 16).shape[0] for q in queries]
    assert all(10 <= r <= 20 for r in rows)
    assert max(len(q.sentence.split()) for q in queries) > 6
    stamp = (d / FEATURES_FILE).stat().st_mtime_ns
    assert ensure_world(tmp_path, TINY) == d and (d / FEATURES_FILE).stat().st_mtime_ns == stamp
    assert TINY.scaled(10).train_videos == 60 and TINY.scaled(10).key() != TINY.key()


def test_data_benchmark_serves_every_sample(tmp_path):
    d = ensure_world(tmp_path, TINY)
    out = bench_data.run(d, batch=4, passes=1, log=lambda *_: None)
    assert out["samples"] == 12 and out["raw_samples_per_s"] > 0 and out["pipeline_samples_per_s"] > 0
    assert out["pipeline_over_raw"] == pytest.approx(out["pipeline_samples_per_s"] / out["raw_samples_per_s"],
                                                      rel=0.01)


def test_training_run_at_tiny_size(tmp_path, monkeypatch):
    d = ensure_world(tmp_path, TINY)
    tiny = model_settings(16, text_layers=0, interaction_layers=1, num_heads=2, ffn_dim=32, dropout=0.0)
    monkeypatch.setitem(train_run.MODELS, "tiny", tiny)
    out = train_run.run(d, [2, 3], "tiny", threads=[1], mm_reps=1, log=lambda *_: None)
    assert out["queries"] == 12 and out["served_samples"] == 12  # the drain read the whole epoch
    warm, timed = out["steps"]
    assert not warm["timed"] and timed["timed"] and timed["batch"] == 3 and timed["threads"] == 1
    assert timed["flops"] == 3 * out["flops_per_sample"][str(timed["num_tokens"])]
    assert timed["matmul_shape"] == [2 * 3 * (timed["num_tokens"] + 64), 16, 32]
    assert 0 < out["ops"]["1"]["share"]
    rss = out["rss_mb"]
    assert rss["peak_after_warmup"] <= rss["peak_after_steps"] <= rss["peak_final"]


def _fake_results():
    def step(i, b, t, s, ratio, rss):
        return {"step": i, "batch": b, "threads": t, "timed": i > 0, "step_s": s, "data_s": 0.01,
                "peak_rss_mb": rss, "flops_ratio": ratio, "achieved_gflops": 1.0, "matmul_gflops": 2.0}

    def train(queries, final, setup):
        return {"queries": queries, "threads": [1], "ops_batch": 16,
                "ops": {"1": {"share": 0.02, "ms": {}, "step_s": 4.0}},
                "steps": [step(0, 8, 1, 3.0, None, 1000.0), step(1, 16, 1, 4.0, 0.5, 1400.0),
                          step(1, 16, 1, 8.0, 0.3, 1400.0)],
                "rss_mb": {"peak_final": final, "after_setup": setup}}

    return {
        "ops": {"batch": 128, "rows": [{"nv": 64, "op": "all three", "threads": 1, "speedup": 90.0}]},
        "train": {"base": train(100, 1500.0, 800.0), "x10": train(1000, 1530.0, 820.0)},
        "data": {"pipeline_samples_per_s": 30.0, "pipeline_over_raw": 0.6},
        "infer": {"models": {"paper": {"1": {"single_ms": 25.0, "compute_bound_ms": 20.0,
                                             "latency_over_bound": 1.25, "batch_queries": 8,
                                             "queries_per_s": 50.0}}}},
        "worlds": {"base": {"feature_bytes": 2**20}, "x10": {"feature_bytes": 10 * 2**20}},
    }


def test_derived_figures_and_table_known_answers():
    res = _fake_results()
    d = run.derive(res)
    assert d["step_samples_per_s"] == 4.0  # 16 samples in 4 s, the fastest step
    assert d["rss_mb_per_sample"] == 50.0  # (1400 - 1000) / (16 - 8)
    assert d["rss_projected_batch128_mb"] == 1400 + 50 * 112
    assert d["rss_growth_x10"] == 0.02 and d["rss_growth_x10_after_setup"] == 0.025
    res["derived"] = d
    figs = {f["id"]: f for f in run.figures(res)}
    assert figs["1.speedup.all_three.1thr"]["met"] is False
    assert figs["2.flops.1thr"]["value"] == 50.0 and figs["2.flops.1thr"]["met"] is True
    assert figs["3.step"]["value"] == 7.5 and figs["3.step"]["met"] is True
    assert figs["4.growth"]["value"] == 2.0 and figs["4.growth"]["met"] is True
    assert figs["5.latency.paper.1thr"]["met"] is False
    md = run.table(run.figures(res))
    assert "| 1.speedup.all_three.1thr |" in md and "**no**" in md


def test_update_readme_rewrites_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run.BEGIN}\nold\n{run.END}\noutro\n")
    assert run.update_readme("new table", readme)
    assert readme.read_text() == f"intro\n{run.BEGIN}\nnew table\n{run.END}\noutro\n"
    plain = tmp_path / "plain.md"
    plain.write_text("no markers")
    assert not run.update_readme("x", plain) and plain.read_text() == "no markers"


def test_results_file_is_valid_json_when_present():
    latest = REPO / "benchmarks" / "results" / "latest.json"
    if not latest.is_file():
        pytest.skip("no benchmark results yet (make bench)")
    res = json.loads(latest.read_text())
    assert {"machine", "commit", "figures", "ops", "data", "train", "infer"} <= set(res)
    assert all({"id", "value", "target", "met"} <= set(f) for f in res["figures"])


def test_bench_scale_unchecked_reads_equal_checked_ones_and_the_table_renders(tmp_path):
    from benchmarks import bench_scale

    world = ensure_world(tmp_path / "w", TINY)
    store = HDF5FeatureStore(world / FEATURES_FILE)
    queries, _ = read_annotations("activitynet", world / "train.json")
    for q in queries[:3]:
        assert torch.equal(torch.from_numpy(bench_scale._Unchecked(store).read(q.vid)),
                           torch.from_numpy(store.read(q.vid, 16)))
    res = {"commit": "abc", "command": "c", "started_utc": "t", "seconds": 1, "loadavg_start": [1], "loadavg_end": [1],
           "generation": {"generation_s": 2.0, "generation_workers": 1, "videos": 3, "feature_rows": 9, "feature_gb": 0.0},
           "text": {"read_s": 0.1, "vocab_s": 0.2, "tokenise_s": 0.3},
           "loader": {"samples": 8, "pipeline_over_raw": 0.25, "pipeline_samples_per_s": 100.0, "raw_samples_per_s": 400.0},
           "memory": {"full": {"peak_rss_mib": 1100.0}, "small": {"peak_rss_mib": 1000.0}, "growth": 0.1}}
    table = bench_scale.render(res)
    assert "| loader / raw h5py (samples/s, 1 process, 1 thread, 8 samples) | 25.0% (100 vs 400) | >= 50% |" in table
    assert "1100 vs 1000 (+10.0%)" in table
