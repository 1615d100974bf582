"""`gptbench data TASK`: each split's size and label distribution, read from the raw data."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gptbench.tasks import SplitUnavailable, TaskSpec


@dataclass
class SplitSummary:
    split: str
    examples: int | None  # None: the split's data is absent
    labels: dict[str, int] = field(default_factory=dict)  # label name -> count (unlabelled: {})
    groups: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    score_range: tuple[float, float] | None = None  # regression tasks
    missing: str | None = None


def summarize(spec: TaskSpec, data_root: Path | None) -> list[SplitSummary]:
    summaries = []
    for split in spec.all_splits:
        try:
            records, dropped = spec.read(split, data_root)
        except SplitUnavailable as e:
            summaries.append(SplitSummary(split, None, missing=str(e)))
            continue
        labelled = [r["label"] for r in records if r.get("label") is not None]
        summary = SplitSummary(split, len(records), dropped=dropped,
                               groups=dict(Counter(r["group"] for r in records if "group" in r)))  # fmt: skip
        if spec.labels is None and labelled:
            summary.score_range = (min(labelled), max(labelled))
        elif labelled:
            counts = Counter(labelled)
            summary.labels = {spec.labels[i]: counts[i] for i in range(len(spec.labels))}
        summaries.append(summary)
    return summaries


def format_summary(spec: TaskSpec, summaries: list[SplitSummary], source: str) -> str:
    lines = [f"{spec.name}: {spec.transformation}, metrics {', '.join(spec.metrics)} — {source}"]
    for s in summaries:
        if s.examples is None:
            lines.append(f"  {s.split:<16} absent ({s.missing})")
            continue
        if s.examples == 0:
            detail = "empty: the file holds no examples" + (f" ({s.dropped:,} rows dropped)" if s.dropped else "")
            lines.append(f"  {s.split:<16} {0:>8}  {detail}")
            continue
        if s.labels:
            detail = "  ".join(f"{name}: {n:,}" for name, n in s.labels.items())
        elif s.score_range:
            detail = f"scores {s.score_range[0]:g}..{s.score_range[1]:g}"
        else:
            detail = "unlabelled"
        if s.groups:
            detail += "  (" + ", ".join(f"{g} {n:,}" for g, n in s.groups.items()) + ")"
        if s.dropped:
            detail += f"  [{s.dropped:,} rows without a gold label dropped]"
        lines.append(f"  {s.split:<16} {s.examples:>8,}  {detail}")
    return "\n".join(lines)
