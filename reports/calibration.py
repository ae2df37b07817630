"""Gate calibration in the report: the table ``harness calibrate`` stored, and a verdict per case.

``calibration.parquet`` (``harness/calibrate_run.py``) holds one row per (device, case): noise,
run drift, the A/A false-alarm rate and the detection rate of an injected slowdown, with and
without the measured drift given to the gate. The report shows every column as stored, and,
where the rates are there, one sentence per case against the targets: false alarms ≤ 5 %,
detection ≥ 90 % (or the targets ``calibration.json`` names).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reports import tables as T

DEFAULT_TARGETS: dict[str, float] = {"false_alarm_rate": 0.05, "detection_rate": 0.90}
# how each set of rates was obtained (column suffix -> words), see harness/calibrate_run.py
SETTINGS: dict[str, str] = {
    "_with_drift": "with the measured run drift given to the gate",
    "_within_run": "within one process (interleaved halves)",
}
VERDICT_COLUMNS: list[str] = ["run_id", "device", "case_id", "meets_targets", "verdict"]
_FRACTIONS = {"noise_cv", "run_drift", "mde", "slowdown", "floor"}  # shown as %


def targets_from(stored: tuple[dict[str, float], ...]) -> dict[str, float]:
    """The targets a calibration stored (first run that stored any), else the defaults."""
    merged = dict(DEFAULT_TARGETS)
    if stored:
        merged.update({k: v for k, v in stored[0].items() if k in DEFAULT_TARGETS})
    return merged


def _rate(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _clause(row: pd.Series, suffix: str, targets: dict[str, float]) -> tuple[bool | None, str]:
    """"false alarms 0.0 % ≤ 5 %, detection 95.0 % ≥ 90 %" for one set of rates."""
    fa = _rate(row.get(f"false_alarm_rate{suffix}"))
    det = _rate(row.get(f"detection_rate{suffix}"))
    if math.isnan(fa) or math.isnan(det):
        return None, "rates not measured (too few complete trials)"
    fa_ok = fa <= targets["false_alarm_rate"]
    det_ok = det >= targets["detection_rate"]
    text = (f"false alarms {fa:.1%} {'≤' if fa_ok else '>'} {targets['false_alarm_rate']:.0%}"
            f" {'✓' if fa_ok else '✗'}, detection {det:.1%} "
            f"{'≥' if det_ok else '<'} {targets['detection_rate']:.0%} {'✓' if det_ok else '✗'}")
    return fa_ok and det_ok, text


def calibration_verdicts(calibration: pd.DataFrame | None,
                         targets: dict[str, float] | None = None) -> pd.DataFrame:
    """One sentence per calibrated case; empty when the rate columns are not in the table."""
    if (calibration is None or calibration.empty
            or not {"false_alarm_rate", "detection_rate"} <= set(calibration.columns)):
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    targets = targets or dict(DEFAULT_TARGETS)
    suffixes = [str(c).removeprefix("false_alarm_rate") for c in calibration.columns
                if str(c).startswith("false_alarm_rate")
                and f"detection_rate{str(c).removeprefix('false_alarm_rate')}" in calibration]
    rows = []
    for _, row in calibration.iterrows():
        ok, text = _clause(row, "", targets)
        verdict = {True: "meets the targets", False: "misses the targets"}.get(ok, "not judged")
        for suffix in (s for s in suffixes if s):
            how = SETTINGS.get(suffix, suffix.strip("_").replace("_", " "))
            ok_there, there = _clause(row, suffix, targets)
            text += f"; {how}: {there}"
            if ok is not True and ok_there:
                verdict, ok = f"meets the targets only {how}", True
        slowdown = _rate(row.get("slowdown"))
        what = f" (injected slowdown {slowdown:.0%})" if not math.isnan(slowdown) else ""
        rows.append({"run_id": str(row.get("run_id", "")), "device": str(row.get("device", "")),
                     "case_id": str(row.get("case_id", "")), "meets_targets": ok,
                     "verdict": f"{verdict}{what}: {text}."})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def _formatter(name: str, series: pd.Series) -> Any:
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if not numeric:
        return T.text
    if name.endswith("_ns"):
        return T.ms
    base = name
    for suffix in SETTINGS:
        base = base.removesuffix(suffix)
    if base.endswith("_rate") or base in _FRACTIONS:
        return T.pct
    return T.num


def calibration_columns(calibration: pd.DataFrame) -> list[T.Column]:
    """A table column for every stored column: rates as %, ``*_ns`` as ms, numbers to 3 digits."""
    return [T.Column(str(c), str(c).replace("_", " ") + (" (ms)" if str(c).endswith("_ns") else ""),
                     _formatter(str(c), calibration[c]))
            for c in calibration.columns]


VERDICT_TABLE: list[T.Column] = [T.Column("device", "device"), T.Column("case_id", "case"),
                                 T.Column("verdict", "verdict"), T.Column("run_id", "run")]


def verdict_class(row: pd.Series) -> str:
    """Row highlight: green when a case meets both targets, red when it misses."""
    ok = row.get("meets_targets")
    return "" if ok is None or (isinstance(ok, float) and math.isnan(ok)) else (
        "good" if ok else "bad")
