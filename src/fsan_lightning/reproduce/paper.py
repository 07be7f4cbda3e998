"""The paper's published numbers (FSAN, EMNLP Findings 2021) and the layout of each table.

Metric keys are this project's (docs/metrics.md): ``R1@0.5`` is "R@1, IoU=0.5"; DiDeMo's "R@1" is
``Rank@1``. Values are percentages as printed. A metric a table does not report is absent.
"""
from __future__ import annotations

from dataclasses import dataclass, field

RECALL_COLUMNS: tuple[str, ...] = ("R1@0.1", "R1@0.3", "R1@0.5", "R5@0.1", "R5@0.3", "R5@0.5", "mIoU")
DIDEMO_COLUMNS: tuple[str, ...] = ("Rank@1", "Rank@5", "mIoU")

COLUMN_TITLES: dict[str, str] = {
    **{f"R{k}@{t}": f"R@{k} IoU={t}" for k in (1, 5) for t in ("0.1", "0.3", "0.5", "0.7")},
    "Rank@1": "R@1", "Rank@5": "R@5", "mIoU": "mIoU",
}

#: the four switches of Table 4 and their full-model values (docs/model.md)
FULL_MODEL_SWITCHES: dict[str, object] = {
    "grounding_head": "sap", "sap_loss": True, "cross_attn": True, "inner_attn": True,
}
#: ablation row -> the one switch it changes (conf/ablation/<row>.yaml sets the same)
ABLATION_SWITCH: dict[str, tuple[str, object]] = {
    "no_grounding_module": ("grounding_head", "mlp"),
    "no_sap_loss": ("sap_loss", False),
    "no_cross_attn": ("cross_attn", False),
    "no_inner_attn": ("inner_attn", False),
}

RANDOM = "random"
FULL = "full"
PROTOTYPE = "prototype"

#: labels of rows that are not one of a table's settings
EXTRA_LABELS: dict[str, str] = {
    RANDOM: "Random",
    PROTOTYPE: "Prototype (no training)",
}


@dataclass(frozen=True)
class TableSpec:
    """One paper table: its settings (rows we train, in the paper's order) and its published numbers.

    name: "table2" | "table3" | "table4"; paper_data: the data set of the published numbers;
    settings: (row key, label) pairs; paper: row key -> {metric key: value}.
    """

    name: str
    title: str
    paper_data: str
    columns: tuple[str, ...]
    settings: tuple[tuple[str, str], ...]
    paper: dict[str, dict[str, float]] = field(default_factory=dict)

    def label(self, key: str) -> str:
        for k, label in self.settings:
            if k == key:
                return label
        return EXTRA_LABELS.get(key, key)


def _recall(r1: tuple[float, float, float], r5: tuple[float, float, float], miou: float | None = None):
    out = {f"R1@{t}": v for t, v in zip(("0.1", "0.3", "0.5"), r1)}
    out.update({f"R5@{t}": v for t, v in zip(("0.1", "0.3", "0.5"), r5)})
    if miou is not None:
        out["mIoU"] = miou
    return out


TABLE4 = TableSpec(
    name="table4",
    title="Table 4: ablation studies",
    paper_data="ActivityNet Captions (val_2)",
    columns=RECALL_COLUMNS,
    settings=(
        ("no_grounding_module", "w/o grounding module"),
        ("no_sap_loss", "w/o loss on SAP"),
        ("no_cross_attn", "w/o cross-modal attention"),
        ("no_inner_attn", "w/o inner-modal attention"),
        (FULL, "full model"),
    ),
    paper={
        "no_grounding_module": _recall((82.58, 47.99, 21.09), (86.34, 52.60, 22.85), 34.57),
        "no_sap_loss": _recall((65.59, 46.08, 26.31), (88.92, 66.11, 36.72), 30.15),
        "no_cross_attn": _recall((74.51, 43.36, 27.03), (81.02, 65.37, 53.41), 32.68),
        "no_inner_attn": _recall((76.75, 50.40, 28.71), (91.39, 71.89, 50.81), 34.18),
        FULL: _recall((78.45, 55.11, 29.43), (92.59, 76.79, 63.32), 36.10),
    },
)

# Table 3 prints no mIoU (the paper gives the full model's, 36.10, only in Table 4).
TABLE3 = TableSpec(
    name="table3",
    title="Table 3: ActivityNet Captions",
    paper_data="ActivityNet Captions (val_2)",
    columns=RECALL_COLUMNS,
    settings=((FULL, "FSAN"),),
    paper={
        RANDOM: _recall((38.23, 18.64, 7.63), (75.74, 52.78, 24.49)),
        FULL: _recall((78.45, 55.11, 29.43), (92.59, 76.79, 63.32)),
    },
)

TABLE2 = TableSpec(
    name="table2",
    title="Table 2: DiDeMo",
    paper_data="DiDeMo (test)",
    columns=DIDEMO_COLUMNS,
    settings=((FULL, "FSAN"),),
    paper={
        RANDOM: {"Rank@1": 3.75, "Rank@5": 22.5, "mIoU": 22.64},
        FULL: {"Rank@1": 19.40, "Rank@5": 57.85, "mIoU": 31.92},
    },
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (TABLE2, TABLE3, TABLE4)}


def table_spec(name: str) -> TableSpec:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; expected one of {sorted(TABLES)}")
    return TABLES[name]
