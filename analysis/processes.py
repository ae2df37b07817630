"""The agent process as the unit: per-process summaries, and cases pooled over processes.

Steps of one process are correlated (allocator state, page and CPU placement, neighbours are
fixed for its lifetime), so a case's evidence is one number per process — its median — and
the spread of those numbers between processes is what an interval must reflect
(``docs/gate.md``; Kalibera & Jones, ISMM 2013). A process is identified by ``process``
within a run, so across concatenated runs the key is (run_id, process).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

PROCESS_SUMMARY_COLUMNS: tuple[str, ...] = ("unit", "n_steps", "median")


def process_key(frame: pd.DataFrame) -> pd.Series:
    """One label per process, unique across concatenated runs (run_id/process)."""
    process = (frame["process"].astype(str) if "process" in frame.columns
               else frame["case_id"].astype(str) + "/" + (
                   frame["repeat"].astype(str) if "repeat" in frame.columns else "0"))
    if "run_id" in frame.columns:
        return frame["run_id"].astype(str) + "/" + process
    return process


def measured(steps: pd.DataFrame) -> pd.DataFrame:
    """Steps without the warm-up rows."""
    if "warmup" in steps.columns:
        return steps.loc[~steps["warmup"].astype(bool)]
    return steps


def _no_processes() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float if c != "unit" else object)
                         for c in PROCESS_SUMMARY_COLUMNS})


def process_medians(steps: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per process of the (already selected) steps: unit, n_steps, median of column.

    Non-finite and non-positive values are dropped (a phase recorded as 0 is absent).
    """
    rows = measured(steps)
    if rows.empty or column not in rows.columns:
        return _no_processes()
    labels, counts, medians = unit_medians(
        process_labels(rows), pd.to_numeric(rows[column], errors="coerce").to_numpy(float))
    if not labels.size:
        return _no_processes()
    return pd.DataFrame({"unit": labels.astype(object), "n_steps": counts, "median": medians})


def process_labels(rows: pd.DataFrame) -> np.ndarray:
    """:func:`process_key` as an array of str (what :func:`group_values` sorts on).

    Built from the distinct key combinations (a run has a few dozen processes and thousands
    of steps): a string operation per row was most of a small gate's time.
    """
    if not len(rows):
        return np.empty(0, str)
    parts = ([rows["process"]] if "process" in rows.columns else
             [rows["case_id"], rows["repeat"] if "repeat" in rows.columns else None])
    if "run_id" in rows.columns:
        parts.insert(0, rows["run_id"])
    codes, names = [], []
    for part in parts:
        if part is None:
            codes.append(np.zeros(len(rows), np.int64))
            names.append(["0"])
            continue
        code, uniques = pd.factorize(part, use_na_sentinel=False)
        codes.append(code.astype(np.int64))
        names.append([None if pd.isna(u) else str(u) for u in uniques])
    rows_of, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    found = [[names[i][c] for i, c in enumerate(row)] for row in rows_of]
    # as the string concatenation of process_key: a missing part makes the label missing
    labels = np.array(["nan" if None in row else "/".join(row) for row in found], dtype=object)
    return labels[inverse.reshape(-1)].astype(str)


def usable(values: np.ndarray) -> np.ndarray:
    """Values that can enter a log: finite and positive (a phase recorded as 0 is absent)."""
    return np.isfinite(values) & (values > 0)


def unit_medians(units: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted process labels, usable values of each, their medians) over the usable values."""
    ok = usable(values)
    labels, groups = group_values(units[ok], values[ok])
    return (labels, np.array([g.size for g in groups], dtype=np.int64),
            np.array([np.median(g) for g in groups], dtype=float))


def group_values(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sorted distinct labels and the values of each, in their original order.

    numpy rather than a pandas groupby: a report compares hundreds of small cases, and a
    groupby's fixed cost (milliseconds) was most of a report's time.
    """
    if labels.size == 0:
        return labels, []
    uniq, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=uniq.size))[:-1]
    return uniq, np.split(values[order], bounds)


def process_values(cases: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per-process values of a case-table metric (peak memory, energy): one row per process."""
    if cases.empty or column not in cases.columns:
        return _no_processes()
    values = pd.to_numeric(cases[column], errors="coerce").astype(float)
    frame = pd.DataFrame({"unit": process_key(cases).to_numpy(), "median": values.to_numpy()})
    frame = frame.loc[np.isfinite(frame["median"]) & (frame["median"] > 0)]
    frame = frame.groupby("unit", sort=True, as_index=False)["median"].median()
    frame.insert(1, "n_steps", 1)
    return frame[list(PROCESS_SUMMARY_COLUMNS)]


def label_slowed(steps: pd.DataFrame, cases: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Processes that ran with an injected slowdown (calibration) get their own case id.

    ``<case_id>-slow<percent>``, with ``base_case_id`` keeping the stored id: pooling them
    with the plain processes would mix two conditions. Other runs are returned unchanged.
    """
    if "slowdown" not in cases.columns:
        return steps, cases
    slow = pd.to_numeric(cases["slowdown"], errors="coerce").fillna(0.0)
    if not (slow > 0).any():
        return steps, cases
    suffix = np.where(slow > 0, "-slow" + (slow * 100).round(1).map("{:g}".format), "")
    cases = cases.assign(base_case_id=cases["case_id"].astype(str),
                         case_id=cases["case_id"].astype(str) + suffix)
    if "repeat" in steps.columns and "repeat" in cases.columns:
        keys = ["device", "case_id", "repeat"] if "device" in steps.columns else ["case_id", "repeat"]
        lookup = cases.assign(case_id=cases["base_case_id"])[keys].assign(new=cases["case_id"])
        merged = steps[keys].astype({"case_id": str}).merge(
            lookup.astype({"case_id": str}), on=keys, how="left")
        new_ids = merged["new"].fillna(merged["case_id"]).to_numpy()
        steps = steps.assign(case_id=pd.Categorical(new_ids))
    return steps, cases


_MEASURED_SUFFIXES = ("_bytes", "_ns", "_j", "_w", "_c", "_khz", "_s", "_pct", "_diff")


def _measured_number(name: str, series: pd.Series) -> bool:
    """A figure measured per process (pooled as a median), not a setting like threads."""
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    return pd.api.types.is_float_dtype(series) and name not in ("seed", "lr") or \
        name.endswith(_MEASURED_SUFFIXES)


def _first_rows(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Each key's first row, indexed by the key (without a Python call per group and column);
    rows with a blank key are left out, as groupby leaves them."""
    return frame.dropna(subset=key).drop_duplicates(subset=key, keep="first").set_index(key)


def pool_processes(cases: pd.DataFrame, key: Sequence[str] = ("run_id", "device", "case_id"),
                   ) -> pd.DataFrame:
    """One row per case from one row per process.

    Numbers are medians over the processes that finished; flags are true when any process
    raised them; warnings are joined; ``status`` is ``ok`` when at least one process gave
    usable results. Adds ``processes`` and ``processes_failed``. A run with one process per
    case comes back with the same rows (plus the two counts).
    """
    key = [k for k in key if k in cases.columns]
    if cases.empty or not key:
        return cases.assign(processes=1, processes_failed=0)
    ok = cases["status"].astype(str).eq("ok") if "status" in cases.columns else pd.Series(
        True, index=cases.index)
    counts = cases.assign(_ok=ok).groupby(key, sort=False, observed=True)["_ok"].agg(
        processes="size", ok="sum")
    if (counts["processes"] <= 1).all():
        return cases.assign(processes=1, processes_failed=(~ok).astype(int))
    # prefer finished processes' rows for every statistic
    ordered = cases.assign(_ok=ok).sort_values("_ok", ascending=False, kind="stable")
    agg: dict[str, object] = {}
    firsts: list[str] = []
    for col in cases.columns:
        if col in key:
            continue
        series = cases[col]
        if pd.api.types.is_bool_dtype(series):
            agg[col] = "any" if col != "correct_ok" else "all"
        elif _measured_number(col, series):
            agg[col] = "median"
        elif col == "warnings":
            agg[col] = lambda v: ";".join(dict.fromkeys(
                f.strip() for text in v.astype(str) for f in text.split(";") if f.strip()))
        else:
            firsts.append(col)  # taken from each case's first row
    finished = ordered.loc[ordered["_ok"]] if ordered["_ok"].any() else ordered
    pooled = _first_rows(finished, key)[firsts]
    if agg:
        pooled = pooled.join(finished.groupby(key, sort=False, observed=True).agg(agg))
    # cases whose every process failed: their first row as is
    missing = counts.index.difference(pooled.index)
    if len(missing):
        failed = _first_rows(ordered, key).loc[missing, [c for c in cases.columns if c not in key]]
        pooled = pd.concat([pooled, failed])
    pooled = pooled.join(counts)
    pooled["processes_failed"] = pooled["processes"] - pooled["ok"]
    errors = [c for c in ("error_kind", "error_message") if c in cases.columns]
    if errors and (pooled["processes_failed"] > 0).any():  # say why the others failed
        failed_rows = ordered.loc[~ordered["_ok"]].groupby(key, sort=False, observed=True)[
            errors].first()
        partly = pooled.index[(pooled["processes_failed"] > 0) & (pooled["ok"] > 0)]
        pooled.loc[partly, errors] = failed_rows.loc[partly, errors].to_numpy()
    pooled = pooled.drop(columns=["ok", "_ok"], errors="ignore").reset_index()
    return pooled[[*cases.columns, "processes", "processes_failed"]]
