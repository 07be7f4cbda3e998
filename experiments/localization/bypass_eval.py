"""Val R1@0.5 / mIoU of an ``attached_two_stage`` checkpoint twice: with its interaction, and bypassed
(the base map of the same weights, read by the same grounder; ``AttachedTwoStageFSAN.interaction_bypassed``).

    python experiments/localization/bypass_eval.py CKPT EXPERIMENT [the run's model overrides...]

The overrides must rebuild the run's network (the state dict is loaded strictly).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import evaluate  # noqa: E402

from fsan_lightning import _entry as runtime  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    ckpt, experiment, *overrides = sys.argv[1:]
    with initialize_config_module("fsan_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "logger=none", *overrides])
    dm = runtime.build_datamodule(cfg)
    module = runtime.build_module(cfg, dm)
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"], strict=True)
    if not hasattr(module.net, "interaction_bypassed"):
        raise SystemExit(f"{ckpt}: the network is {type(module.net).__name__}, not attached_two_stage")
    val = dm.val_dataloader()
    r = evaluate(module, val)
    print(f"interacted: R1@0.5 {r['R1@0.5']:.2f} mIoU {r['mIoU']:.2f}")
    with module.net.interaction_bypassed():
        r = evaluate(module, val)
    print(f"bypassed:   R1@0.5 {r['R1@0.5']:.2f} mIoU {r['mIoU']:.2f}")
    gates = [float(p.detach().abs().max()) for n, p in module.net.interaction.named_parameters() if "gate" in n]
    print("max abs gate per gate tensor:", [round(g, 3) for g in gates])


if __name__ == "__main__":
    main()
