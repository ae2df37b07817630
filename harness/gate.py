"""The regression gate: candidate run versus baseline, case by case and metric by metric.

A verdict needs two things: *significance* (the difference is not noise) and *size* (it
matters, judged against a per-metric floor such as 5 %). The rule, its calibration and the
alternatives are written down in ``docs/gate.md``; in short, for the default rule
``"not-negligible"``:

- ``regression``: Mann–Whitney p < alpha, the bootstrap interval of the ratio of medians lies
  above 1, and its upper end reaches past ``1 + floor`` (a real slowdown not shown to be
  smaller than the floor);
- ``improvement``: the mirror image (below 1, lower end under ``1 / (1 + floor)``);
- ``pass``: the interval lies within ``[1 / (1 + floor), 1 + floor]`` (any difference is
  shown to be smaller than the floor);
- ``inconclusive``: none of these; the case should be re-run with more steps.

One-value-per-case metrics (peak memory, measured energy per step) have no within-run
distribution: with fewer than ``min_samples`` repeats on a side their median ratio is held
against the floor directly (``method="floor-only"``). Missing, new and failed cases are
reported as their own verdicts, never dropped.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.baseline import (
    load_pytest_benchmark,  # noqa: F401  (part of the gate API)
    stack_mismatches,
)
from harness.errors import ConfigError
from harness.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Comparison,
    compare,
    widen_for_drift,
)

RULES = ("not-negligible", "point", "strict")
DEFAULT_RULE = "not-negligible"
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_SAMPLES = 5
VERDICTS = ("pass", "regression", "improvement", "inconclusive", "error", "missing", "new")
EXIT_PASS, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class Metric:
    """A gated quantity: which table and column hold it, and what to do with few samples."""

    name: str
    table: str  # "steps" (one value per step) or "cases" (one value per case and run)
    column: str
    small_sample: str  # "floor-only" or "inconclusive" when a side has < min_samples values


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("step_time", "steps", "step_ns", "inconclusive"),
    Metric("update_time", "steps", "update_ns", "inconclusive"),
    Metric("energy_per_step", "cases", "energy_per_step_j", "floor-only"),
    Metric("peak_memory", "cases", "peak_rss_bytes", "floor-only"),
    Metric("time", "steps", "step_ns", "floor-only"),  # pytest-benchmark micro-benchmarks
)}
DEFAULT_METRICS = ("step_time", "update_time", "energy_per_step", "peak_memory")
DEFAULT_FLOORS: dict[str, float] = {
    "step_time": 0.05, "update_time": 0.05, "energy_per_step": 0.05, "peak_memory": 0.02,
    "time": 0.05,
}


@dataclass(frozen=True)
class MetricVerdict:
    """The gate's answer for one (case, metric), with the evidence behind it."""

    case_id: str
    metric: str
    verdict: str
    floor: float
    method: str  # "bootstrap+mwu", "floor-only" or "" when nothing was compared
    reason: str
    comparison: Comparison | None = None


@dataclass(frozen=True)
class GateResult:
    """All verdicts of one gate run, with the warnings a person must read first."""

    verdicts: tuple[MetricVerdict, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    alpha: float
    rule: str
    floors: tuple[tuple[str, float], ...]
    strict_missing: bool = False

    def count(self, verdict: str) -> int:
        """How many (case, metric) rows have ``verdict``."""
        return sum(1 for v in self.verdicts if v.verdict == verdict)

    @property
    def exit_code(self) -> int:
        """2 if any row is an error (or missing, under strict_missing), else 1 on any
        regression, else 0. Errors win: a run with failed cases cannot be trusted to pass."""
        if self.count("error") or (self.strict_missing and self.count("missing")):
            return EXIT_ERROR
        return EXIT_REGRESSION if self.count("regression") else EXIT_PASS

    def to_frame(self) -> pd.DataFrame:
        """One row per (case, metric): verdict, ratio, interval, p and the reason."""
        rows = []
        for v in self.verdicts:
            c = v.comparison
            rows.append({
                "case_id": v.case_id, "metric": v.metric, "verdict": v.verdict,
                "floor": v.floor, "method": v.method, "reason": v.reason,
                "ratio": c.ratio if c else math.nan,
                "ratio_ci_low": c.ratio_ci_low if c else math.nan,
                "ratio_ci_high": c.ratio_ci_high if c else math.nan,
                "p_value": c.p_value if c else math.nan,
                "n_baseline": c.n_baseline if c else 0, "n_candidate": c.n_candidate if c else 0,
                "baseline_median": c.baseline_median if c else math.nan,
                "candidate_median": c.candidate_median if c else math.nan,
            })
        return pd.DataFrame(rows)


def parse_floors(specs: str | Iterable[str] | Mapping[str, float] | None) -> dict[str, float]:
    """Floors per metric from strings like ``"step_time:5%"`` or ``"peak_memory:0.02"``.

    Accepts one string (comma-separated entries allowed), a list of strings, or a mapping;
    returns the defaults updated with what was given. A bare number must be a fraction
    below 1 (``0.05``); a percentage needs its ``%`` sign (``5%``).
    """
    floors = dict(DEFAULT_FLOORS)
    if specs is None:
        return floors
    if isinstance(specs, Mapping):
        items = [(str(k), v) for k, v in specs.items()]
    else:
        entries = [specs] if isinstance(specs, str) else list(specs)
        items = [_split_floor(part) for entry in entries for part in entry.split(",")
                 if part.strip()]
    for name, value in items:
        floors[_known_metric(name)] = _floor_value(name, value)
    return floors


def _split_floor(spec: str) -> tuple[str, str]:
    name, sep, value = spec.strip().partition(":")
    if not sep or not name.strip() or not value.strip():
        raise ConfigError(f"floor {spec!r} is not 'metric:value'; write e.g. 'step_time:5%'",
                          key="floors")
    return name.strip(), value.strip()


def _known_metric(name: str) -> str:
    if name in METRICS:
        return name
    near = difflib.get_close_matches(name, list(METRICS), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise ConfigError(f"unknown metric {name!r} in floors; {hint}known: {', '.join(METRICS)}",
                      key="floors")


def _floor_value(name: str, value: Any) -> float:
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"floor for {name!r} is {text!r}, not a number; write e.g. "
                          f"'{name}:5%' or '{name}:0.05'", key="floors") from None
    if not text.endswith("%") and number >= 1.0:
        raise ConfigError(f"floor for {name!r} is {text!r}: a bare number is a fraction "
                          f"below 1; write '{name}:{text}%' for a percentage", key="floors")
    if not math.isfinite(number) or number < 0 or number >= 1.0:
        raise ConfigError(f"floor for {name!r} is {text!r}: it must lie in [0 %, 100 %); "
                          f"write e.g. '{name}:5%'", key="floors")
    return number


def decide(comparison: Comparison, floor: float, alpha: float = DEFAULT_ALPHA, *,
           rule: str = DEFAULT_RULE, floor_only: bool = False) -> tuple[str, str]:
    """(verdict, reason) for one comparison; pure, so calibration uses exactly this."""
    if rule not in RULES:
        raise ConfigError(f"unknown gate rule {rule!r}; known: {', '.join(RULES)}", key="rule")
    upper, lower = 1.0 + floor, 1.0 / (1.0 + floor)
    c = comparison
    if floor_only:
        if not math.isfinite(c.ratio):
            return "inconclusive", "no finite ratio of medians"
        if c.ratio > upper:
            return "regression", f"ratio {c.ratio:.3f} > {upper:.3f} (floor only, no noise model)"
        if c.ratio < lower:
            return "improvement", f"ratio {c.ratio:.3f} < {lower:.3f} (floor only, no noise model)"
        return "pass", f"ratio {c.ratio:.3f} within the floor (floor only, no noise model)"
    if not (math.isfinite(c.ratio_ci_low) and math.isfinite(c.ratio_ci_high)):
        return "inconclusive", "no finite bootstrap interval"
    significant = math.isfinite(c.p_value) and c.p_value < alpha
    interval = f"ratio {c.ratio:.3f} [{c.ratio_ci_low:.3f}, {c.ratio_ci_high:.3f}], p={c.p_value:.2g}"
    if significant and c.ratio_ci_low > 1.0 and _beyond(rule, c.ratio, c.ratio_ci_low,
                                                         c.ratio_ci_high, upper):
        return "regression", f"slower: {interval}"
    if significant and c.ratio_ci_high < 1.0 and _beyond(rule, 1 / c.ratio, 1 / c.ratio_ci_high,
                                                          1 / c.ratio_ci_low, upper):
        return "improvement", f"faster: {interval}"
    if lower <= c.ratio_ci_low and c.ratio_ci_high <= upper:
        return "pass", f"within ±{floor:.1%}: {interval}"
    return "inconclusive", (f"neither a significant change beyond the floor nor shown within "
                            f"±{floor:.1%}: {interval}")


def _beyond(rule: str, ratio: float, ci_low: float, ci_high: float, upper: float) -> bool:
    """Whether a significant change (ratio > 1 here) is large enough under ``rule``."""
    if rule == "strict":
        return ci_low > upper
    if rule == "point":
        return ratio > upper
    return ci_high > upper


def inconclusive_cases(result: GateResult) -> list[str]:
    """Case ids with at least one inconclusive metric, sorted: the cases to re-run."""
    return sorted({v.case_id for v in result.verdicts if v.verdict == "inconclusive"})


def _devices(*frames: pd.DataFrame | None) -> set[str]:
    return {str(d) for f in frames if f is not None and "device" in f.columns for d in f["device"].dropna().unique()}


def _by_device(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The frame with cases named ``<device>/<case_id>``."""
    if frame is None or "device" not in frame.columns or "case_id" not in frame.columns:
        return frame
    return frame.assign(case_id=frame["device"].astype(str) + "/" + frame["case_id"].astype(str))


class _Side:
    """One side's tables, indexed once by case so thousands of cases stay fast."""

    def __init__(self, steps: pd.DataFrame | None, cases: pd.DataFrame | None) -> None:
        steps = steps if steps is not None else pd.DataFrame({"case_id": []})
        if "warmup" in steps.columns:
            steps = steps[~steps["warmup"].astype(bool)]
        self.step_columns = set(steps.columns)
        self.steps = {str(k): g for k, g in steps.groupby("case_id", sort=False)}
        self.cases: dict[str, pd.DataFrame] = {}
        if cases is not None and len(cases):
            self.cases = {str(k): g for k, g in cases.groupby("case_id", sort=False)}
        self.ids = set(self.steps) | set(self.cases)
        frames = [f for f in (steps, cases) if f is not None and "device" in f.columns]
        self.devices = {str(d) for f in frames for d in f["device"].dropna().unique()}

    def failure(self, case_id: str) -> str:
        """Why the case has no usable result ("" when at least one repeat is ok)."""
        rows = self.cases.get(case_id)
        if rows is None or "status" not in rows.columns or (rows["status"] == "ok").any():
            return ""
        row = rows.iloc[0]
        detail = " ".join(str(row.get(k, "") or "") for k in ("error_kind", "error_message"))
        return f"status {row['status']!r}" + (f": {detail.strip()}" if detail.strip() else "")

    def ok_cases(self, case_id: str) -> pd.DataFrame:
        rows = self.cases.get(case_id, pd.DataFrame())
        return rows[rows["status"] == "ok"] if "status" in rows.columns else rows

    def values(self, case_id: str, metric: Metric) -> pd.Series:
        if metric.table == "steps":
            return self.steps.get(case_id, pd.DataFrame()).get(metric.column, pd.Series([]))
        return self.ok_cases(case_id).get(metric.column, pd.Series([]))

    def runs(self, case_id: str) -> int:
        """How many agent processes contributed steps to the case: distinct (run_id, repeat),
        since every repeat is a process of its own (1 if unknown)."""
        rows = self.steps.get(case_id)
        if rows is None or "run_id" not in rows.columns:
            return 1
        keys = [c for c in ("run_id", "repeat") if c in rows.columns]
        return max(1, len(rows[keys].drop_duplicates()))

    def energy_sources(self, case_id: str) -> set[str]:
        rows = self.ok_cases(case_id)
        if "energy_source" not in rows.columns:
            return set()
        return {str(s) for s in rows["energy_source"].dropna() if str(s) not in ("", "none")}

    def energy_flags(self, case_id: str) -> set[str]:
        """Why a case's energy figures are not comparable (too short a window, restarts)."""
        rows = self.ok_cases(case_id)
        if "energy_flags" not in rows.columns:
            return set()
        return {f for s in rows["energy_flags"].dropna() for f in str(s).split(";") if f}


def gate(baseline_steps: pd.DataFrame | None, baseline_cases: pd.DataFrame | None,
         candidate_steps: pd.DataFrame | None, candidate_cases: pd.DataFrame | None,
         floors: str | Iterable[str] | Mapping[str, float] | None = None,
         alpha: float = DEFAULT_ALPHA, *, metrics: Sequence[str] = DEFAULT_METRICS,
         rule: str = DEFAULT_RULE, gate_estimated: bool = False,
         baseline_manifest: Mapping[str, Any] | None = None,
         candidate_manifest: Mapping[str, Any] | None = None,
         n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
         seed: int = DEFAULT_SEED, min_samples: int = DEFAULT_MIN_SAMPLES,
         strict_missing: bool = False, run_drift: float = 0.0) -> GateResult:
    """Compare a candidate run with a baseline; see the module docstring for the rule.

    ``*_cases`` may be None (e.g. pytest-benchmark input): cases then come from the steps.
    Several runs of one side may be concatenated: steps pool, per-case values become repeats.
    ``run_drift`` is the run-to-run standard deviation of a case's log median (measured by
    :func:`harness.calibrate.estimate_run_drift`); it widens each interval by
    ``run_drift * sqrt(1/runs_baseline + 1/runs_candidate)``, so repeats narrow it again.
    """
    floor_map = parse_floors(floors)
    chosen = [METRICS[_known_metric(m)] for m in metrics]
    if rule not in RULES:
        raise ConfigError(f"unknown gate rule {rule!r}; known: {', '.join(RULES)}", key="rule")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha={alpha!r} must lie in (0, 1); use e.g. 0.01", key="alpha")
    sides = [baseline_steps, baseline_cases, candidate_steps, candidate_cases]
    if len(_devices(*sides[:2]) & _devices(*sides[2:])) > 1:
        sides = [_by_device(f) for f in sides]  # a merged lab run: never pool two devices
    base, cand = _Side(*sides[:2]), _Side(*sides[2:])
    warnings = []
    if baseline_manifest is not None or candidate_manifest is not None:
        warnings += stack_mismatches(baseline_manifest, candidate_manifest)
    if base.devices and cand.devices and base.devices != cand.devices:
        warnings.append(f"devices differ: baseline {sorted(base.devices)}, candidate "
                        f"{sorted(cand.devices)}")
    notes: dict[str, int] = {}
    verdicts: list[MetricVerdict] = []
    for case_id in sorted(base.ids | cand.ids):
        whole_case = _whole_case_verdict(case_id, base, cand)
        if whole_case is not None:
            verdicts.append(whole_case)
            continue
        for metric in chosen:
            outcome = _judge(case_id, metric, base, cand, floor_map[metric.name], alpha,
                             rule=rule, gate_estimated=gate_estimated, n_resamples=n_resamples,
                             confidence=confidence, seed=seed, min_samples=min_samples,
                             run_drift=run_drift)
            if isinstance(outcome, str):
                notes[outcome] = notes.get(outcome, 0) + 1
            elif outcome is not None:
                verdicts.append(outcome)
    return GateResult(
        verdicts=tuple(verdicts), warnings=tuple(warnings),
        notes=tuple(f"{text} ({n} case(s))" for text, n in notes.items()), alpha=alpha,
        rule=rule, floors=tuple((m.name, floor_map[m.name]) for m in chosen),
        strict_missing=strict_missing)


def _whole_case_verdict(case_id: str, base: _Side, cand: _Side) -> MetricVerdict | None:
    """A verdict for the whole case when it cannot be compared metric by metric."""
    if case_id not in cand.ids:
        return MetricVerdict(case_id, "case", "missing", math.nan, "",
                             "in the baseline but not in the candidate run")
    if case_id not in base.ids:
        return MetricVerdict(case_id, "case", "new", math.nan, "", "not in the baseline")
    cand_failure = cand.failure(case_id)
    if cand_failure:
        return MetricVerdict(case_id, "case", "error", math.nan, "",
                             f"candidate case failed: {cand_failure}")
    base_failure = base.failure(case_id)
    if base_failure:
        return MetricVerdict(case_id, "case", "new", math.nan, "",
                             f"no usable baseline: {base_failure}")
    return None


def _judge(case_id: str, metric: Metric, base: _Side, cand: _Side, floor: float,
           alpha: float, *, rule: str, gate_estimated: bool, n_resamples: int,
           confidence: float, seed: int, min_samples: int,
           run_drift: float = 0.0) -> MetricVerdict | str | None:
    """One (case, metric) verdict; a note string when the metric is skipped on purpose;
    None when the metric was simply not measured for this case."""
    if metric.table == "steps" and not (metric.column in base.step_columns
                                        and metric.column in cand.step_columns):
        return f"{metric.name}: column {metric.column!r} absent, not gated"
    if metric.name == "energy_per_step":
        skipped = _energy_skip(base.energy_sources(case_id), cand.energy_sources(case_id),
                               gate_estimated)
        if skipped is not None:
            return skipped or None
        flagged = base.energy_flags(case_id) | cand.energy_flags(case_id)
        if flagged:
            return f"energy_per_step: energy flagged ({', '.join(sorted(flagged))}), not gated"
    b = pd.to_numeric(base.values(case_id, metric), errors="coerce").dropna().to_numpy(float)
    c = pd.to_numeric(cand.values(case_id, metric), errors="coerce").dropna().to_numpy(float)
    if not (b.any() or c.any()):
        return None  # absent phase (all zero) or meter not read on either side
    if metric.table == "cases":
        b, c = b[b > 0], c[c > 0]
    comparison = compare(b, c, n_resamples=n_resamples, confidence=confidence, seed=seed)
    if run_drift > 0 and metric.table == "steps":
        drift = run_drift * math.sqrt(1 / base.runs(case_id) + 1 / cand.runs(case_id))
        comparison = widen_for_drift(comparison, drift)
    few = min(b.size, c.size) < min_samples
    if few and metric.small_sample == "inconclusive":
        return MetricVerdict(case_id, metric.name, "inconclusive", floor, "",
                             f"too few samples ({b.size} vs {c.size}, need {min_samples})",
                             comparison)
    method = "floor-only" if few else "bootstrap+mwu"
    verdict, reason = decide(comparison, floor, alpha, rule=rule, floor_only=few)
    return MetricVerdict(case_id, metric.name, verdict, floor, method, reason, comparison)


def _energy_skip(base_sources: set[str], cand_sources: set[str],
                 gate_estimated: bool) -> str | None:
    """Why energy is not gated for a case ("" for silently, None when it is gated)."""
    if not base_sources or not cand_sources:
        return ""
    measured = all(s.startswith("measured:") for s in base_sources | cand_sources)
    if not measured and not gate_estimated:
        return "energy_per_step: estimated energy, not gated (gate_estimated=False)"
    if base_sources != cand_sources:
        return (f"energy_per_step: sources differ ({sorted(base_sources)} vs "
                f"{sorted(cand_sources)}), not gated")
    return None
