"""The records every reader produces: `Query` (one sentence-moment pair) and `DataReport`.

`Query` is the contract of docs/architecture.md; `DataReport` counts what the readers repaired and
dropped so that nothing disappears silently (written to the run directory as data_report.json).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: how many example record ids are kept per drop/repair reason (for messages and the report)
EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class Query:
    """One sentence and its ground-truth moment(s) in one video.

    qid: unique within a split and stable across runs ("v_abc#3", DiDeMo annotation_id, "VID#k").
    vid: feature key (DiDeMo: the video name without extension).
    sentence: cleaned text (stripped, newlines -> spaces).
    duration: seconds (DiDeMo: 5 * num_segments).
    moments: ground truth in seconds, 0 <= s < e <= duration; one for ActivityNet/Charades, one per
        annotator for DiDeMo.
    """

    qid: str
    vid: str
    sentence: str
    duration: float
    moments: tuple[tuple[float, float], ...]


@dataclass
class DataReport:
    """What a reader did with one annotation file.

    pairs: sentence-moment records in the file; queries: records kept
    (``queries == pairs - sum(dropped.values())``); repaired: repairs applied to kept records, per
    reason; dropped: records dropped, per reason; missing_features: videos of the kept queries that the
    feature store lacks (filled in by whoever checks the features); warnings: videos of the split with
    a feature warning of the full check, per kind (``short``, ``duration_mismatch``).
    """

    dataset: str
    file: str
    pairs: int = 0
    queries: int = 0
    videos: int = 0
    dropped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    missing_features: int = 0
    warnings: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, record_id: str) -> None:
        self.dropped[reason] += 1
        self._example(f"dropped:{reason}", record_id)

    def repair(self, reason: str, record_id: str) -> None:
        self.repaired[reason] += 1
        self._example(f"repaired:{reason}", record_id)

    def _example(self, key: str, record_id: str) -> None:
        ex = self.examples.setdefault(key, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(record_id)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "file": self.file,
            "pairs": self.pairs,
            "queries": self.queries,
            "videos": self.videos,
            "dropped": dict(sorted(self.dropped.items())),
            "repaired": dict(sorted(self.repaired.items())),
            "missing_features": self.missing_features,
            "warnings": dict(sorted(self.warnings.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One human line: file, counts, drops and repairs."""
        drops = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        reps = ", ".join(f"{k}={v}" for k, v in sorted(self.repaired.items())) or "none"
        return (f"{self.file}: {self.queries}/{self.pairs} pairs kept in {self.videos} videos; "
                f"dropped: {drops}; repaired: {reps}; missing features: {self.missing_features}")

    def split_line(self, split: str) -> str:
        """The run's start-of-run line for a split: queries, videos, dropped, repaired (warnings if any)."""
        def counts(c: Counter) -> str:
            total = sum(c.values())
            return f"{total} ({', '.join(f'{k}={v}' for k, v in sorted(c.items()))})" if total else "0"

        line = (f"{split}: {self.queries} queries, {self.videos} videos, dropped {counts(self.dropped)}, "
                f"repaired {counts(self.repaired)}")
        if sum(self.warnings.values()):
            line += f", feature warnings {counts(self.warnings)}"
        return f"{line} [{self.file}]"
