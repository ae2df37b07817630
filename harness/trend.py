"""``harness trend``: one metric per case across stored runs or a baseline's history, with commits.

Each column is one run (or one numbered baseline), oldest first, headed by its commit; each
row is a device and case; a cell is the median of that case's measured processes in that run.
Only stored numbers are shown: whether a change is real is the gate's question
(``harness gate``), not this table's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from harness.errors import ConfigError

DEFAULT_METRIC = "median_step_ns"


@dataclass(frozen=True)
class Source:
    """One column of the trend: a run or a baseline, and what it was built from."""

    label: str  # run id, or <name>#<number> for a baseline
    path: Path
    commit: str
    dirty: bool
    created: str


def _manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def source(path: Path, label: str = "") -> Source:
    manifest = _manifest(path)
    git = manifest.get("git") or {}
    return Source(label or str(manifest.get("run_id") or path.name), path, str(git.get("commit", "")),
                  bool(git.get("dirty", False)), str(manifest.get("created", "")))


def runs_under(results: Path, last: int) -> list[Source]:
    """The last ``last`` finished runs under a results directory, oldest first."""
    if not results.is_dir():
        raise ConfigError(f"no results directory {results}; run `harness bench` first or pass --out",
                          key="--out")
    found = [source(p) for p in results.iterdir() if (p / "cases.parquet").is_file()]
    found.sort(key=lambda s: (s.created, s.label))
    return found[-last:] if last > 0 else found


def baseline_sources(baselines_dir: Path, name: str, device: str | None) -> list[Source]:
    """Every baseline ``name`` has had (numbered history, then the current one), per device."""
    from harness.baseline import baseline_history

    devices = [device] if device else sorted(p.name for p in baselines_dir.glob("*") if (p / name).is_dir())
    out = []
    for d in devices:
        for info in baseline_history(baselines_dir, d, name):
            out.append(Source(f"{d}/{name}#{info.number or '?'}", info.path, info.commit, info.dirty,
                              info.created))
    if not out:
        raise ConfigError(f"no baseline {name!r} under {baselines_dir}"
                          + (f" for device {device!r}" if device else "")
                          + "; see `harness baseline list`", key="--baseline")
    return out


def trend_table(sources: Sequence[Source], metric: str = DEFAULT_METRIC, case: str = "") -> pd.DataFrame:
    """Rows (device, case_id), one column per source label: the median of the metric over the
    case's measured processes in that source; NaN where the case was not measured."""
    columns = []
    for s in sources:
        cases = pd.read_parquet(s.path / "cases.parquet")
        if metric not in cases.columns:
            numeric = sorted(c for c in cases.columns if pd.api.types.is_numeric_dtype(cases[c]))
            raise ConfigError(f"{s.path} has no column {metric!r}; numeric columns: {', '.join(numeric)}",
                              key="--metric")
        ok = cases.loc[cases["status"].astype(str) == "ok"]
        if case:
            ok = ok.loc[ok["case_id"].astype(str).str.contains(case, regex=False)]
        values = ok.groupby([ok["device"].astype(str), ok["case_id"].astype(str)])[metric].median()
        columns.append(values.rename(s.label))
    if not columns:
        return pd.DataFrame()
    table = pd.concat(columns, axis=1)
    table.index.names = ["device", "case_id"]
    return table.sort_index()


def _unit(metric: str) -> tuple[float, str]:
    if metric.endswith("_ns"):
        return 1e6, "ms"
    if metric.endswith("_bytes"):
        return 2**20, "MiB"
    return 1.0, ""


def format_trend(table: pd.DataFrame, sources: Sequence[Source], metric: str) -> str:
    """A plain-text table: one line per source (commit, date), then one row per case."""
    if table.empty:
        return f"no measured case with {metric} in these runs"
    scale, unit = _unit(metric)
    lines = [f"{metric}{f' ({unit})' if unit else ''}; columns oldest first, change against the "
             "column before:"]
    for i, s in enumerate(sources, 1):
        lines.append(f"  [{i}] {s.label:<34} commit {s.commit[:10] or '?':<10}"
                     f"{' (dirty)' if s.dirty else '':<8} {s.created}")
    labels = [s.label for s in sources]
    head = f"{'device':<12} {'case':<48} " + " ".join(f"{f'[{i}]':>16}" for i in range(1, len(labels) + 1))
    lines += ["", head]
    for (device, case_id), row in table.iterrows():
        cells, before = [], None
        for label in labels:
            value = row.get(label)
            if value is None or pd.isna(value):
                cells.append(f"{'—':>16}")
                continue
            change = "" if before is None or before == 0 else f" {100 * (value / before - 1):+5.1f}%"
            cells.append(f"{value / scale:.2f}{change}".rjust(16))
            before = value
        lines.append(f"{device:<12} {case_id:<48} " + " ".join(cells))
    return "\n".join(lines)
