"""Summaries of the raw records: the plain-text table, the JSON file and the optional plot."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKIP_PREFIX = "skipped"


@dataclass
class Row:
    """Summary of all rounds of one system in one configuration."""

    system: str
    jobs: int
    median_jps: float | None
    min_jps: float | None
    max_jps: float | None
    median_ratio: float | None
    median_rss: float | None
    runs: int
    status: str  # "" when measured, otherwise "skipped (...)" or "ERROR: ..."
    extra: str


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _ratio_note(records: list[dict[str, Any]], field: str, label: str) -> str | None:
    """``label 0.85 (0.80-0.88)``: median and range over rounds of a same-round ratio."""
    values = [float(r[field]) for r in records if r.get(field) is not None]
    if not values:
        return None
    return f"{label} {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _extra(records: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for field, label in (("ratio_to_plain", "x plain noop"), ("ratio_to_asyncq", "x asyncq")):
        note = _ratio_note(records, field, label)
        if note:
            parts.append(note)
    late = _median(r.get("lateness_p50_ms") for r in records)
    if late is not None:
        spread = _median(r.get("delay_max_s") for r in records) or 0.0
        parts.append(f"lateness p50 {late:.1f} ms (delays 0-{spread:g} s)")
    beat = [r["heartbeat_max_ms"] for r in records if r.get("heartbeat_max_ms") is not None]
    if beat:
        parts.append(f"heartbeat worst {statistics.median(beat):.1f} ms (max {max(beat):.1f})")
    traced = _median(r.get("bytes_per_job_traced") for r in records)
    rss = _median(r.get("bytes_per_job_rss") for r in records)
    if traced is not None:
        parts.append(f"{traced:.0f} B/job traced, {rss or 0:.0f} B/job RSS")
    growth = _median(r.get("rss_growth_mib") for r in records)
    if growth is not None:
        parts.append(f"RSS growth {growth:.1f} MiB")
    return "; ".join(parts)


def summarise(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[Row]]:
    """Group records by configuration (in first-seen order) and summarise each system."""
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        key = (rec["loop"], rec["workload"], rec["workers"], rec["maxsize"])
        groups.setdefault(key, {}).setdefault(rec["system"], []).append(rec)
    out: dict[tuple[Any, ...], list[Row]] = {}
    for key, by_system in groups.items():
        rows: list[Row] = []
        for system, recs in by_system.items():
            good = [r for r in recs if not r.get("error") and not r.get("skipped")]
            errors = [r for r in recs if r.get("error")]
            skipped = next((r["skipped"] for r in recs if r.get("skipped")), None)
            status = ""
            if skipped:
                status = f"{SKIP_PREFIX} ({skipped})"
            elif not good:
                status = f"ERROR: {errors[0]['error']}" if errors else "ERROR"
            jps = [r["jobs_per_s"] for r in good if r.get("jobs_per_s")]
            extra = _extra(good)
            if good and errors:
                extra = f"{extra}; {len(errors)} ERROR run(s)".lstrip("; ")
            rows.append(
                Row(
                    system=system,
                    jobs=int(recs[0]["jobs"]),
                    median_jps=statistics.median(jps) if jps else None,
                    min_jps=min(jps) if jps else None,
                    max_jps=max(jps) if jps else None,
                    median_ratio=_median(r.get("ratio_to_bare") for r in good),
                    median_rss=_median(r.get("peak_rss_mib") for r in good),
                    runs=len(good),
                    status=status,
                    extra=extra,
                )
            )
        out[key] = rows
    return out


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_table(summary: dict[tuple[Any, ...], list[Row]]) -> str:
    """Render the summary as a plain-text table, one block per configuration."""
    lines: list[str] = []
    header = (
        f"  {'system':<14} {'jobs':>8} {'jobs/s (median)':>16} {'min-max':>21} "
        f"{'x bare':>7} {'RSS MiB':>8} {'runs':>4}  notes"
    )
    for (loop, workload, workers, maxsize), rows in summary.items():
        lines.append(f"loop={loop} workload={workload} workers={workers} maxsize={maxsize}")
        lines.append(header)
        for row in rows:
            if row.status:
                lines.append(f"  {row.system:<14} {row.jobs:>8} {row.status}")
                continue
            span = f"{_num(row.min_jps, ',.0f')}-{_num(row.max_jps, ',.0f')}"
            if row.min_jps is None:
                span = "-"
            lines.append(
                f"  {row.system:<14} {row.jobs:>8} {_num(row.median_jps, ',.0f'):>16} "
                f"{span:>21} {_num(row.median_ratio, '.2f'):>7} "
                f"{_num(row.median_rss, '.1f'):>8} {row.runs:>4}  {row.extra}"
            )
        lines.append("")
    return "\n".join(lines)


def write_json(path: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write ``{"meta": ..., "records": [...]}`` (one record per measurement) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "records": records}
    path.write_text(json.dumps(payload, indent=1) + "\n")


def matplotlib_available() -> bool:
    """True when matplotlib can be imported (needed only for ``--plot``)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def write_plot(path: Path, summary: dict[tuple[Any, ...], list[Row]]) -> None:
    """Save a bar chart of median jobs/s per system, one group of bars per configuration."""
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    configs = [k for k, rows in summary.items() if any(r.median_jps for r in rows)]
    systems = sorted({r.system for k in configs for r in summary[k] if r.median_jps})
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(configs)), 5.0))
    for idx, system in enumerate(systems):
        heights = []
        for key in configs:
            row = next((r for r in summary[key] if r.system == system), None)
            heights.append((row.median_jps or 0.0) if row else 0.0)
        xs = [c + idx * width for c in range(len(configs))]
        ax.bar(xs, heights, width=width, label=system)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(configs))])
    ax.set_xticklabels([f"{k[0]}\n{k[1]} W={k[2]}" for k in configs], fontsize=8)
    ax.set_ylabel("jobs/s (median)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
