"""Evaluation metrics (definitions: docs/metrics.md). Values are percentages; nothing here imports Lightning."""

from fsan_lightning.metrics.breakdown import length_breakdown
from fsan_lightning.metrics.dedup import first_occurrence
from fsan_lightning.metrics.didemo import (
    DiDeMoRank,
    chunks_to_seconds,
    didemo_candidates,
    didemo_query_scores,
    didemo_summary,
    seconds_to_chunks,
)
from fsan_lightning.metrics.grounding import GroundingRecall, grounding_ious, recall_summary
from fsan_lightning.metrics.iou import chunk_iou, temporal_iou
from fsan_lightning.metrics.random_baseline import (
    didemo_random_baseline,
    random_baseline,
    random_baseline_expected,
)

__all__ = [
    "DiDeMoRank",
    "GroundingRecall",
    "chunk_iou",
    "chunks_to_seconds",
    "didemo_candidates",
    "didemo_query_scores",
    "didemo_random_baseline",
    "didemo_summary",
    "first_occurrence",
    "grounding_ious",
    "length_breakdown",
    "random_baseline",
    "random_baseline_expected",
    "recall_summary",
    "seconds_to_chunks",
    "temporal_iou",
]
