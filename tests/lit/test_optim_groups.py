"""model.optim.part_lr: a learning rate per parameter-name prefix."""
from __future__ import annotations

import pytest
import torch

from fsan_lightning.lit.module import param_groups


def named(module):
    return list(module.named_parameters())


def test_each_trainable_parameter_is_in_exactly_one_group_at_its_prefix_lr():
    net = torch.nn.ModuleDict({"net": torch.nn.ModuleDict({
        "interaction": torch.nn.Linear(3, 3), "interaction_extra": torch.nn.Linear(2, 2),
        "text": torch.nn.Linear(4, 4), "frozen": torch.nn.Linear(2, 1)})})
    net["net"]["frozen"].weight.requires_grad_(False)
    groups = param_groups(named(net), 1e-3, {"net.interaction": 3e-4, "net.interaction.bias": 5e-5})
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    inter, extra, text, frozen = (net["net"][k] for k in ("interaction", "interaction_extra", "text", "frozen"))
    assert by_lr[3e-4] == {id(inter.weight)}  # "net.interaction" is a prefix of names, not of "interaction_extra"
    assert by_lr[5e-5] == {id(inter.bias)}  # the longest prefix wins
    assert by_lr[1e-3] == {id(extra.weight), id(extra.bias), id(text.weight), id(text.bias), id(frozen.bias)}
    assert param_groups(named(net), 1e-3, {}) == [
        {"params": [p for p in net.parameters() if p.requires_grad], "lr": 1e-3}]


def test_a_prefix_without_parameters_or_a_bad_lr_is_refused():
    net = torch.nn.ModuleDict({"net": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match=r"prefix\(es\) \['net.interaction'\] name no trainable parameter"):
        param_groups(named(net), 1e-3, {"net.interaction": 1e-4})
    with pytest.raises(ValueError, match="must be > 0"):
        param_groups(named(net), 1e-3, {"net": 0.0})


def test_the_module_builds_its_adam_groups_from_the_config(tiny_world_dir, tmp_path):
    from conftest import tiny_train_config
    from fsan_lightning import _entry as runtime

    cfg = tiny_train_config(tiny_world_dir, tmp_path, "+model.optim.part_lr={net.interaction:2.0e-5}")
    dm = runtime.build_datamodule(cfg)
    module = runtime.build_module(cfg, dm)
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == sorted([2.0e-5, float(cfg.model.optim.lr)])
    inter = {id(p) for n, p in module.named_parameters() if n.startswith("net.interaction.")}
    assert {id(p) for g in opt.param_groups if g["lr"] == 2.0e-5 for p in g["params"]} == inter
    bad = tiny_train_config(tiny_world_dir, tmp_path, "+model.optim.part_lr={net.icim:1.0e-4}")
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="name no trainable parameter"):  # before any training
        runtime.build_module(bad, dm)
