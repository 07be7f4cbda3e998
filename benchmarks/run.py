"""`make bench`: every CPU benchmark, a table of ratios, benchmarks/results/latest.{json,md}.

    python -m benchmarks.run [--plan 8,16,16] [--quick] [--results DIR] [--no-readme]

Order: the data worlds (cached in .data_cache/bench), the grounding ops, the data pipeline,
inference, then two training runs in subprocesses (the base world and a 10x larger one). The
numbers of benchmarks/README.md's "Latest results" block are rewritten from the run unless
``--no-readme`` (or ``--quick``, a fast check of the wiring at tiny sizes whose numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import bench_data, bench_infer, bench_ops
from .common import (
    PAPER_BATCH,
    PAPER_MODEL,
    REPO,
    SMALL_MODEL,
    git_commit,
    load_average,
    machine_info,
)
from .world import SPLIT_FILES, WorldSpec, ensure_world

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
WORLD_ROOT = REPO / ".data_cache" / "bench"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
COMMAND = "make bench"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_subprocess(world_dir: Path, plan: list[int], model: str = "paper", timeout: float = 900) -> dict:
    """Run `benchmarks.train_run` in a fresh process (its own peak RSS); its result dict."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [sys.executable, "-m", "benchmarks.train_run", "--data", str(world_dir), "--model", model,
               "--plan", ",".join(map(str, plan)), "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(REPO / "src"),
                                                                          os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(cmd, cwd=REPO, env=env, timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"training-run benchmark failed (exit {proc.returncode}): {' '.join(cmd)}")
        return json.loads(out.read_text())


def _timed(res: dict) -> list[dict]:
    """Timed steps of both training runs."""
    return [s for run in res["train"].values() for s in run["steps"] if s["timed"]]


def figures(res: dict) -> list[dict]:
    """The headline ratios with their targets: ``{"id", "name", "value", "unit", "target", "met"}``."""
    out = []

    def add(fid, name, value, unit, target=None, met=None):
        out.append({"id": fid, "name": name, "value": value, "unit": unit, "target": target, "met": met})

    ops = res["ops"]
    for row in ops["rows"]:
        if row["nv"] == 64:
            add(f"1.speedup.{row['op'].replace(' ', '_')}.{row['threads']}thr",
                f"{row['op']} fwd+bwd vs per-segment loop, B={ops['batch']}, Nv=64, {row['threads']} thr",
                row["speedup"], "x", ">= 100", row["speedup"] >= 100)
    for row in ops["rows"]:
        if row["nv"] != 64 and row["op"] == "all three":
            add(f"1.speedup.nv{row['nv']}.{row['threads']}thr",
                f"all three ops vs loop, Nv={row['nv']}, {row['threads']} thr", row["speedup"], "x")
    base, big = res["train"]["base"], res["train"]["x10"]
    for t, o in base["ops"].items():
        add(f"1.ops_share.{t}thr", f"grounding ops' share of a training step (paper model, batch "
            f"{base['ops_batch']}, {t} thr)", round(100 * o["share"], 2), "%", "<= 10", o["share"] <= 0.10)
    for t in base["threads"]:
        steps = [s for s in _timed(res) if s["threads"] == t]
        best = max(steps, key=lambda s: s["flops_ratio"])
        add(f"2.flops.{t}thr", f"training step achieved / matmul FLOP/s (paper model, batch {best['batch']}, "
            f"{t} thr: {best['achieved_gflops']} / {best['matmul_gflops']} GFLOP/s; best of {len(steps)})",
            round(100 * best["flops_ratio"], 1), "%", ">= 40", best["flops_ratio"] >= 0.40)
    data = res["data"]
    add("3.raw", "data pipeline / raw h5py read (samples/s, one process, 1 thread)",
        round(100 * data["pipeline_over_raw"], 1), "%", ">= 50", data["pipeline_over_raw"] >= 0.5)
    d = res["derived"]
    over_step = data["pipeline_samples_per_s"] / d["step_samples_per_s"]
    add("3.step", f"data pipeline / fastest training step's consumption ({data['pipeline_samples_per_s']:.0f} vs "
        f"{d['step_samples_per_s']:.2f} samples/s)", round(over_step, 1), "x", ">= 5", over_step >= 5)
    last = base["steps"][-1]
    add("4.rss", f"peak RSS of the training run, batch {last['batch']} (MiB)", base["rss_mb"]["peak_final"], "MiB")
    add("4.rss128", f"peak RSS projected to batch 128 ({d['rss_mb_per_sample']} MiB per sample; machine "
        f"{d['machine_ram_mb']} MiB)", d["rss_projected_batch128_mb"], "MiB")
    add("4.growth", f"peak RSS growth, data set x10 ({base['queries']} -> {big['queries']} queries, "
        f"{res['worlds']['base']['feature_bytes'] >> 20} -> {res['worlds']['x10']['feature_bytes'] >> 20} MiB of "
        "features)", round(100 * d["rss_growth_x10"], 2), "%", "<= 10", d["rss_growth_x10"] <= 0.10)
    for name, per_thread in res["infer"]["models"].items():
        for t, m in per_thread.items():
            target = name == "paper"
            add(f"5.latency.{name}.{t}thr", f"one query, {name} model, Nv=64, {t} thr (ms)", m["single_ms"], "ms",
                "<= 20" if target else None, m["single_ms"] <= 20 if target else None)
            add(f"5.bound.{name}.{t}thr", f"one query's latency / its compute bound ({m['compute_bound_ms']} ms; "
                f"{name}, {t} thr)", m["latency_over_bound"], "x")
            add(f"5.throughput.{name}.{t}thr", f"queries/s, {m['batch_queries']} per video in one call "
                f"({name}, {t} thr)", m["queries_per_s"], "q/s")
    return out


def derive(res: dict) -> dict:
    """Numbers computed from two benchmarks: the step's consumption rate, RSS projection and growth."""
    base, big = res["train"]["base"], res["train"]["x10"]
    fastest = max(_timed(res), key=lambda s: s["batch"] / s["step_s"])
    warm, last = base["steps"][0], base["steps"][-1]
    per_sample = (last["peak_rss_mb"] - warm["peak_rss_mb"]) / max(1, last["batch"] - warm["batch"])
    projected = last["peak_rss_mb"] + per_sample * (PAPER_BATCH - last["batch"])
    return {
        "step_samples_per_s": round(fastest["batch"] / fastest["step_s"], 4),
        "step_s_projected_batch128": round(fastest["step_s"] * PAPER_BATCH / fastest["batch"], 1),
        "fastest_step_threads": fastest["threads"],
        "data_share_of_step": round(fastest["data_s"] / fastest["step_s"], 5),
        "rss_mb_per_sample": round(per_sample, 1),
        "rss_projected_batch128_mb": round(projected, 0),
        "rss_growth_x10": round(big["rss_mb"]["peak_final"] / base["rss_mb"]["peak_final"] - 1, 4),
        "rss_growth_x10_after_setup": round(big["rss_mb"]["after_setup"] / base["rss_mb"]["after_setup"] - 1, 4),
        "machine_ram_mb": _mem_total_mb(),
    }


def _mem_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 0)
    except OSError:
        pass
    return None


def table(figs: list[dict]) -> str:
    """The figures as a markdown table."""
    lines = ["| # | figure | value | target | met |", "|---|---|---|---|---|"]
    for f in figs:
        met = "" if f["met"] is None else ("yes" if f["met"] else "**no**")
        lines.append(f"| {f['id']} | {f['name']} | {f['value']} {f['unit']} | {f['target'] or ''} | {met} |")
    return "\n".join(lines)


def markdown(res: dict) -> str:
    m = res["machine"]
    head = (f"Commit `{res['commit']}`, `{res['command']}`, {res['date']}, {res['wall_s']:.0f} s. "
            f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), torch {m['torch']}, {m['torch_threads']} threads, "
            f"load average {m['loadavg']} at start, {res['loadavg_end']} at the end.")
    return head + "\n\n" + table(res["figures"]) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def update_readme(text: str, readme: Path = README) -> bool:
    """Replace the block between the bench markers of the README; False when the markers are absent."""
    if not readme.is_file():
        return False
    doc = readme.read_text()
    if BEGIN not in doc or END not in doc:
        return False
    before, rest = doc.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    write_atomic(readme, f"{before}{BEGIN}\n{text}\n{END}{after}")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run the CPU benchmarks (make bench).")
    ap.add_argument("--plan", default="8,16", help="batch sizes of the training-run steps (first: warm-up; "
                    "each later one runs at 1 thread and at torch's default)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the wiring, numbers mean nothing")
    ap.add_argument("--results", default=str(RESULTS), help="folder of latest.json / latest.md")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the README's results block")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res: dict = {"command": COMMAND + (" (--quick)" if args.quick else ""), "commit": git_commit(),
                 "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine_info(), "quick": args.quick}
    log(f"benchmarks at {res['commit']}: {res['machine']['nproc']} CPUs, {res['machine']['torch_threads']} "
        f"threads, load {res['machine']['loadavg']}")

    spec = WorldSpec(train_videos=12, val_videos=2, test_videos=2, min_rows=70, max_rows=90) if args.quick \
        else WorldSpec()
    t = time.perf_counter()
    base_dir, big_dir = ensure_world(WORLD_ROOT, spec), ensure_world(WORLD_ROOT, spec.scaled(10))
    log(f"worlds ready in {time.perf_counter() - t:.1f} s: {base_dir.name}, {big_dir.name}")

    log("[1] grounding ops")
    if args.quick:
        res["ops"] = bench_ops.run(batch=4, clip_counts=(8, 64), loop_samples={8: 1, 64: 1}, reps=1, log=log)
    else:
        res["ops"] = bench_ops.run(log=log)
    log("[3] data pipeline")
    res["data"] = bench_data.run(base_dir, batch=8 if args.quick else PAPER_BATCH, passes=1 if args.quick else 3,
                                 log=log)
    log("[5] inference")
    pipe = bench_data.Pipeline(base_dir)
    queries = [q.sentence for q in pipe.queries[:64]]
    models = {"paper": PAPER_MODEL, "small": SMALL_MODEL}
    sizes = ({n: {"single_reps": 2, "batch_queries": 4, "batch_reps": 1} for n in models} if args.quick
             else {"paper": {"single_reps": 7, "batch_queries": 32, "batch_reps": 1},
                   "small": {"single_reps": 21, "batch_queries": 64, "batch_reps": 3}})
    res["infer"] = bench_infer.run(models, pipe.vocab.words, queries, log=log, **sizes)
    log("[2, 4] training runs (paper model) on the base world and on the 10x world")
    plan = [2, 3] if args.quick else [int(x) for x in args.plan.split(",")]
    res["train"] = {"base": train_subprocess(base_dir, plan), "x10": train_subprocess(big_dir, plan)}
    res["worlds"] = {"base": _world_summary(base_dir), "x10": _world_summary(big_dir)}
    res["derived"] = derive(res)
    res["figures"] = figures(res)
    res["loadavg_end"] = load_average()
    res["wall_s"] = round(time.perf_counter() - t0, 1)

    md = markdown(res)
    print("\n" + md)
    out = Path(args.results)
    name = "quick" if args.quick else "latest"
    write_atomic(out / f"{name}.json", json.dumps(res, indent=1) + "\n")
    write_atomic(out / f"{name}.md", md)
    if not (args.quick or args.no_readme):
        update_readme(md)
    log(f"wrote {out / (name + '.json')} and {out / (name + '.md')} in {res['wall_s']:.0f} s")
    return 0


def _world_summary(path: Path) -> dict:
    summary = json.loads((path / "world.json").read_text())
    return {"dir": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
            "train_file": SPLIT_FILES["train"], **summary}


if __name__ == "__main__":
    raise SystemExit(main())
