"""The default recipe's training step with ICIM on every pass against ICIM on the passes a loss reads.

    python -m benchmarks.bench_interacted [--steps 8] [--threads N] [--experiment synthetic_cpu]

`make train`'s model (``model=fsan_cpu``) matches on the map before the interaction, so only the positive
pair's map after it is read (its self-training and the reported SAP terms): the training pass runs ICIM on
that pass only (``FSANCriterion.interacted_passes``, ``AttachedTwoStageFSAN``'s ``interact``). This times
one optimiser step both ways on the same batches of the experiment's training split, interleaved (whole,
restricted, whole, ...), in an epoch where the self-training terms train, and reports the ratio. It
also checks that both give the same loss. Results: ``results/interacted.{json,md}``. Not part of
`make bench` (it needs the experiment's world, which `make train` generates).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .common import git_commit, load_average, machine_info, median

RESULTS = Path(__file__).resolve().parent / "results"


def _build(experiment: str):
    from hydra import compose, initialize_config_module

    from fsan_lightning import _entry as runtime

    with initialize_config_module("fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "logger=none"])
    dm = runtime.build_datamodule(cfg)
    dm.setup("fit")
    torch.manual_seed(0)
    module = runtime.build_module(cfg, dm)
    module.fit_word_salience(dm)
    return module, dm


def run(experiment: str = "synthetic_cpu", steps: int = 8, threads: int | None = None) -> dict:
    """Median seconds of a training step (forward, backward, Adam) with the interaction on every pass and on
    the passes read; ``steps`` timed steps each, interleaved, after one untimed step of each."""
    from fsan_lightning.models import run_training_pass

    if threads is not None:
        torch.set_num_threads(threads)
    module, dm = _build(experiment)
    crit, net = module.criterion, module.net
    epoch = crit.self_training.start_epoch if crit.needs_pseudo_moments else 0
    if crit.needs_pseudo_moments:
        module.refresh_pseudo_moments(dm, epoch)
    loader = iter(dm.train_dataloader())
    batches = [module.with_pseudo_moments(next(loader), epoch) for _ in range(steps + 1)]
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    read = crit.interacted_passes(crit.passes)
    forms = {"whole": None, "restricted": read}

    def step(batch, interacted) -> float:
        optimiser.zero_grad(set_to_none=True)
        tp = run_training_pass(net, batch, negative_video=crit.needs_negative_video, binding=crit.needs_binding,
                               sibling=crit.needs_sibling, interacted=interacted)
        loss = crit(tp)["loss"]
        loss.backward()
        return float(loss.detach())

    with torch.no_grad():  # the same loss both ways on one batch, before any update
        check = {name: float(crit(run_training_pass(net, batches[0], negative_video=crit.needs_negative_video,
                                                    interacted=interacted))["loss"])
                 for name, interacted in forms.items()}
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _name, interacted in forms.items():
        step(batches[0], interacted)  # warm-up
    for batch in batches[1:]:
        for name, interacted in forms.items():
            t0 = time.perf_counter()
            step(batch, interacted)
            optimiser.step()
            times[name].append(time.perf_counter() - t0)
    whole, restricted = median(times["whole"]), median(times["restricted"])
    return {
        "experiment": experiment, "epoch": epoch, "batch": int(batches[0]["tokens"].shape[0]),
        "passes": sorted(crit.passes), "interacted_passes": sorted(read), "threads": torch.get_num_threads(),
        "steps": steps, "whole_s": whole, "restricted_s": restricted, "speedup": whole / restricted,
        "loss_whole": check["whole"], "loss_restricted": check["restricted"],
        "times": times, "loadavg": load_average(), "machine": machine_info(), "commit": git_commit(),
    }


def markdown(res: dict) -> str:
    return (f"`python -m benchmarks.bench_interacted` on {res['experiment']} (commit {res['commit']}, "
            f"{res['threads']} thread(s), load average {res['loadavg']}), batch {res['batch']}, epoch {res['epoch']}:\n\n"
            f"| ICIM runs on | step (median of {res['steps']}) |\n|---|---|\n"
            f"| every pass ({', '.join(res['passes'])}) | {res['whole_s'] * 1000:.0f} ms |\n"
            f"| the passes read ({', '.join(res['interacted_passes'])}) | {res['restricted_s'] * 1000:.0f} ms |\n"
            f"| ratio | **{res['speedup']:.2f} x** |\n\n"
            f"Loss on one batch: {res['loss_whole']:.7f} (every pass), {res['loss_restricted']:.7f} (passes read).\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="synthetic_cpu")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    res = run(args.experiment, args.steps, args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "interacted.json").write_text(json.dumps(res, indent=1) + "\n")
    text = markdown(res)
    (args.results / "interacted.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
