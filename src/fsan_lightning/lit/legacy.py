"""Checkpoints written before the composable model (flat ``model.*`` settings, commit 8b482d8 and
earlier): converted on load to the nested ``net`` / ``loss`` / ``optim`` settings.

``convert_hparams`` maps the flat hyper-parameters (with the old defaults for absent keys);
``convert_state_dict`` renames the weights (``net.icim.*`` -> ``net.interaction.*``). Settings that
the new parts cannot express raise :class:`LegacyCheckpointError` naming them.
"""
from __future__ import annotations

from typing import Any

# the old constructors' defaults (FSAN, FSANCriterion, FSANModule at commit 8b482d8)
OLD_DEFAULTS: dict[str, Any] = {
    "d_model": 512, "text_layers": 1, "icim_layers": 6, "num_heads": 8, "ffn_dim": 2048, "dropout": 0.1,
    "max_tokens": 64, "max_clips": 256, "cross_attn": True, "inner_attn": True, "grounding_head": "sap",
    "freeze_embeddings": True, "align_dim": None, "align_form": "cosine", "score_scale": 10.0,
    "learn_score_scale": False, "sc_min_tokens": "all", "mlp_hidden": 256, "grounding_rule": "sc",
    "grounding_tokens": "all", "video_center": False, "word_residual": False, "icim_residual": "postnorm",
    "maxsum_threshold": 0.0, "video_projection": "linear", "align_projection": "linear", "mlp_mode": "segment",
    "mlp_segment_rule": "maxsum", "mlp_condition": "none",
    "margin": 0.2, "l1": 1 / 3, "l2": 1 / 3, "l3": 1 / 3, "sap_loss": True, "tau": 0.05, "mask_shared": "both",
    "negative_video": False, "negative_video_weight": 1.0, "match_fn": "cosine", "match_on": "raw",
    "outer_form": "complement", "weight_form": "softmax", "eps": 1e-6, "unknown_id": 1, "mlp_sap_triplet": True,
    "mlp_mil_temperature": None, "match_temperature": None, "sap_weights_from": "sc", "sap_tokens": "all",
    "lr": 1e-4, "weight_decay": 0.0, "scheduler": None, "sap_warmup_epochs": 0.0, "sap_ramp_epochs": 0.0,
}
KEPT = ("vocab", "video_dim", "word_dim", "function_word_ids", "top_k", "nms_threshold", "eval_protocol",
        "num_logged_maps", "data_num_clips", "data_max_tokens")


class LegacyCheckpointError(ValueError):
    """An old checkpoint whose settings the composable model cannot express."""


def is_legacy(hparams: dict[str, Any]) -> bool:
    """Whether ``hparams`` are the flat pre-refactor FSANModule settings."""
    return "net" not in hparams and "vocab" in hparams


def convert_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Flat FSANModule hyper-parameters -> the nested ones of today's FSANModule."""
    unknown = sorted(set(hparams) - set(OLD_DEFAULTS) - set(KEPT))
    if unknown:
        raise LegacyCheckpointError(f"unknown flat setting(s) {unknown}")
    o = {**OLD_DEFAULTS, **hparams}
    if not o["mlp_sap_triplet"]:
        raise LegacyCheckpointError("mlp_sap_triplet=False has no equivalent (the map's triplet always trains)")
    if o["video_center"] and o["video_projection"] == "identity":
        raise LegacyCheckpointError("video_center with video_projection=identity has no equivalent")
    if o["align_projection"] == "identity" and o["align_form"] != "cosine":
        raise LegacyCheckpointError("align_projection=identity with align_form=dot has no equivalent")
    out = {k: hparams[k] for k in KEPT if k in hparams}
    out.update({k: o[k] for k in ("cross_attn", "inner_attn", "grounding_head", "sap_loss")})
    out["net"] = _net(o)
    out["loss"] = _loss(o)
    out["optim"] = {k: o[k] for k in ("lr", "weight_decay", "scheduler", "sap_warmup_epochs", "sap_ramp_epochs")}
    return out


def _net(o: dict[str, Any]) -> dict[str, Any]:
    video_kind = "feature_space" if o["video_projection"] == "identity" else ("centred" if o["video_center"] else "linear")
    if o["align_projection"] == "identity":
        alignment = {"kind": "feature_space"}
    else:
        alignment = {"kind": "dot" if o["align_form"] == "dot" else "cosine", "dim": o["align_dim"]}
    alignment.update(score_scale=o["score_scale"], learn_score_scale=o["learn_score_scale"])
    if o["grounding_rule"] == "maxsum":
        grounder = {"kind": "maxsum", "tokens": o["grounding_tokens"], "threshold": o["maxsum_threshold"]}
    else:
        grounder = {"kind": "sc", "pos_tokens": o["grounding_tokens"], "min_tokens": o["sc_min_tokens"]}
    head = {"kind": o["mlp_mode"], "hidden": o["mlp_hidden"], "condition": o["mlp_condition"]}
    if o["mlp_mode"] == "clip":
        head["segment_rule"] = o["mlp_segment_rule"]
    return {
        "d_model": o["d_model"], "num_heads": o["num_heads"], "ffn_dim": o["ffn_dim"], "dropout": o["dropout"],
        "text_encoder": {"kind": "word_residual" if o["word_residual"] else "transformer", "layers": o["text_layers"],
                         "freeze_embeddings": o["freeze_embeddings"]},
        "video_encoder": {"kind": video_kind},
        "interaction": {"kind": "gated_icim" if o["icim_residual"] == "gated" else "icim", "layers": o["icim_layers"],
                        "max_tokens": o["max_tokens"], "max_clips": o["max_clips"]},
        "alignment": alignment, "grounder": grounder, "head": head,
    }


def _loss(o: dict[str, Any]) -> dict[str, Any]:
    weights = {"triplet": o["l1"], "inner": o["l2"], "outer": o["l3"]}
    if o["negative_video"]:
        weights["triplet_video"] = o["l1"] * o["negative_video_weight"]
    matching_kind = {"raw": "raw", "centred": "centred", "P": "printed"}[o["match_on"]]
    return {
        "weights": weights, "margin": o["margin"], "mask_shared": o["mask_shared"], "unknown_id": o["unknown_id"],
        "matching": {"kind": matching_kind, "fn": o["match_fn"], "temperature": o["match_temperature"]},
        "sap": {"tau": o["tau"], "eps": o["eps"], "weight_form": o["weight_form"], "outer_form": o["outer_form"],
                "tokens": o["sap_tokens"], "weights_from": o["sap_weights_from"]},
        "mil_temperature": o["mlp_mil_temperature"],
    }


def convert_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Rename the pre-refactor weights: ``net.icim.*`` -> ``net.interaction.*``."""
    return {("net.interaction." + k[len("net.icim."):] if k.startswith("net.icim.") else k): v
            for k, v in state_dict.items()}
