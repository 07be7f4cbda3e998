"""Val R1@0.5 / mIoU of an ``attached_two_stage`` checkpoint twice: with its interaction, and bypassed
(the base map of the same weights, read by the same grounder; ``AttachedTwoStageFSAN.interaction_bypassed``).

    python experiments/localization/bypass_eval.py CKPT EXPERIMENT [the run's model overrides...]

The overrides must rebuild the run's network (the state dict is loaded strictly).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import evaluate, load_checkpoint  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    ckpt, experiment, *overrides = sys.argv[1:]
    _, dm, module = load_checkpoint(ckpt, experiment, overrides)
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
