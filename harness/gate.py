"""The regression gate: candidate run versus baseline, case by case and metric by metric.

The statistics and the decision rule are :mod:`analysis`'s (the report uses the same); this
module picks the evidence per (case, metric) and applies them to a whole run:

- the unit is the **agent process**: each side's evidence is one summary per process (the
  median of its steps, or its case-table value), compared on the log scale (Welch's t,
  paired when processes are matched), so the interval includes the between-process spread;
- every compared (case, metric) is one test of one **Holm–Bonferroni family**: ``alpha``
  (default 0.05) is the run-level false-alarm rate;
- ``regression``: significant and not shown smaller than the floor; ``improvement`` the
  mirror image; ``pass``: the interval lies within the floor; ``inconclusive``: neither;
- a case-table metric with one process on a side is held against the floor alone
  (``floor-only``), outside the family;
- missing, new and failed cases are verdicts of their own, never dropped; missing cases and
  a run where nothing could be compared fail the gate unless ``allow_missing``.

The rule, its calibration and the alternatives are in ``docs/gate.md``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from analysis.compare import (
    Comparison,
    Prior,
    compare_by_repeat,
    compare_steps,
    compare_units,
    prior_for_gate,
)
from analysis.decide import (
    DEFAULT_ALPHA,
    DEFAULT_POWER,
    DEFAULT_RULE,
    RULES,
    RuleError,
    comparison_mde,
    decide_family,
    family_size,
)
from analysis.decide import decide as _decide
from analysis.processes import measured, process_labels, process_values
from analysis.relative import (
    Group,
    combined_prior,
    compare_common,
    compare_specific,
    groups,
    medians_of,
    rounds_of,
)
from analysis.schema import upgrade
from harness.baseline import (
    load_pytest_benchmark,  # noqa: F401  (part of the gate API)
    stack_mismatches,
)
from harness.errors import ConfigError

DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_SAMPLES = 5
VERDICTS = ("pass", "regression", "improvement", "inconclusive", "error", "missing", "new")
EXIT_PASS, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2
PRIOR_DF_OF_RUN_DRIFT = 1000.0  # a --run-drift given by hand is taken as known


@dataclass(frozen=True)
class Metric:
    """A gated quantity: which table and column hold it, and what counts as one sample.

    ``unit`` is ``"process"`` (one summary per agent process: the process is the unit of
    replication) or ``"round"`` (pytest-benchmark rounds: one process, so within-process
    evidence only, labelled so).
    """

    name: str
    table: str  # "steps" (one value per step) or "cases" (one value per case and process)
    column: str
    unit: str = "process"


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("step_time", "steps", "step_ns"),
    Metric("update_time", "steps", "update_ns"),
    Metric("energy_per_step", "cases", "energy_per_step_j"),
    Metric("peak_memory", "cases", "peak_rss_bytes"),
    Metric("time", "steps", "step_ns", unit="round"),  # pytest-benchmark micro-benchmarks
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
    method: str  # the comparison's method ("welch", "paired", ...), "floor-only" or ""
    reason: str
    comparison: Comparison | None = None
    mde: float = math.nan  # smallest change this comparison could detect (power 0.9, α/m)
    members: tuple[str, ...] = ()  # a process group's common row: the cases it stands for

    @property
    def scope(self) -> str:
        """What the row's change is of: ``"case"``, ``"variant"`` (relative to its
        process-mates) or ``"group"`` (common to a process group)."""
        if self.members:
            return "group"
        return "variant" if self.method == "relative" else "case"


@dataclass(frozen=True)
class GateResult:
    """All verdicts of one gate run, with the warnings a person must read first."""

    verdicts: tuple[MetricVerdict, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    alpha: float
    rule: str
    floors: tuple[tuple[str, float], ...]
    allow_missing: bool = False
    tests: int = 0  # the size of the Holm family (tests that decided together)
    detectable: tuple[tuple[str, float], ...] = ()  # per metric (and scope): the worst MDE
    power: float = DEFAULT_POWER

    def count(self, verdict: str) -> int:
        """How many (case, metric) rows have ``verdict``."""
        return sum(1 for v in self.verdicts if v.verdict == verdict)

    @property
    def compared(self) -> int:
        """(case, metric) rows that were actually compared (a verdict from evidence)."""
        return sum(1 for v in self.verdicts
                   if v.verdict in ("pass", "regression", "improvement", "inconclusive"))

    @property
    def exit_code(self) -> int:
        """2 if any case failed, a case is missing (unless allowed) or nothing was compared;
        else 1 on any regression; else 0. Errors win: a run with failed or missing cases
        cannot be trusted to pass."""
        if self.count("error") or (not self.allow_missing and self.count("missing")):
            return EXIT_ERROR
        if not self.compared and not self.allow_missing:
            return EXIT_ERROR
        return EXIT_REGRESSION if self.count("regression") else EXIT_PASS

    def to_frame(self) -> pd.DataFrame:
        """One row per (case, metric): verdict, ratio, interval, p, processes and the reason."""
        rows = []
        for v in self.verdicts:
            c = v.comparison

            def get(name: str, default: float = math.nan, c: Comparison | None = c) -> Any:
                return getattr(c, name) if c else default

            rows.append({
                "case_id": v.case_id, "metric": v.metric, "verdict": v.verdict,
                "floor": v.floor, "method": v.method, "reason": v.reason,
                "ratio": get("ratio"), "ratio_ci_low": get("ratio_ci_low"),
                "ratio_ci_high": get("ratio_ci_high"), "p_value": get("p_value"),
                "p_adjusted": get("p_adjusted"),
                "n_baseline": get("n_baseline", 0), "n_candidate": get("n_candidate", 0),
                "baseline_median": get("baseline_median"),
                "candidate_median": get("candidate_median"),
                "baseline_min": get("baseline_min"), "baseline_max": get("baseline_max"),
                "candidate_min": get("candidate_min"), "candidate_max": get("candidate_max"),
                "mde": v.mde,
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
    """(verdict, reason) for one comparison: :func:`analysis.decide.decide`, errors as
    :class:`ConfigError`."""
    try:
        return _decide(comparison, floor, alpha, rule=rule, floor_only=floor_only)
    except RuleError as exc:
        raise ConfigError(str(exc), key="rule") from None


def inconclusive_cases(result: GateResult) -> list[str]:
    """Case ids with at least one inconclusive metric, sorted: the cases to re-run (a process
    group's common row stands for every case of the group)."""
    return sorted({c for v in result.verdicts if v.verdict == "inconclusive"
                   for c in (v.members or (v.case_id,))})


def _devices(*frames: pd.DataFrame | None) -> set[str]:
    return {str(d) for f in frames if f is not None and "device" in f.columns
            for d in f["device"].dropna().unique()}


def _by_device(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The frame with cases named ``<device>/<case_id>``."""
    if frame is None or "device" not in frame.columns or "case_id" not in frame.columns:
        return frame
    return frame.assign(case_id=frame["device"].astype(str) + "/" + frame["case_id"].astype(str))


class _Side:
    """One side's tables, indexed once by case so thousands of cases stay fast."""

    def __init__(self, steps: pd.DataFrame | None, cases: pd.DataFrame | None) -> None:
        steps = steps if steps is not None else pd.DataFrame({"case_id": []})
        steps, cases = upgrade(measured(steps), cases)
        assert steps is not None
        self.step_columns = set(steps.columns)
        self.steps = {str(k): g for k, g in steps.groupby("case_id", sort=False, observed=True)}
        self.cases: dict[str, pd.DataFrame] = ({str(k): g for k, g in cases.groupby(
            "case_id", sort=False, observed=True)} if cases is not None and len(cases) else {})
        self.ids = set(self.steps) | set(self.cases)
        frames = [f for f in (steps, cases) if f is not None and "device" in f.columns]
        self.devices = {str(d) for f in frames for d in f["device"].dropna().unique()}
        self._all_steps = steps
        self._medians: dict[str, dict[str, dict[str, float]]] = {}
        self._rounds: dict[str, pd.DataFrame | None] = {}

    @cached_property
    def labels(self) -> np.ndarray:
        """The steps' process labels, once for the medians and rounds of every metric."""
        return process_labels(self._all_steps)

    def medians(self, column: str) -> dict[str, dict[str, float]]:
        """Per case: process label -> median of ``column`` there (usable values only)."""
        if column not in self._medians:
            self._medians[column] = medians_of(self._all_steps, column, self.labels)
        return self._medians[column]

    def rounds(self, column: str) -> pd.DataFrame | None:
        """Log values by (process, round), one column per case; None without rounds."""
        if column not in self._rounds:
            self._rounds[column] = rounds_of(self._all_steps, column, self.labels)
        return self._rounds[column]

    def failure(self, case_id: str) -> str:
        """Why the case has no usable result ("" when at least one process is ok)."""
        rows = self.cases.get(case_id)
        if rows is None or "status" not in rows.columns or (rows["status"] == "ok").any():
            return ""
        row = rows.iloc[0]
        detail = " ".join(str(row.get(k, "") or "") for k in ("error_kind", "error_message"))
        return f"status {row['status']!r}" + (f": {detail.strip()}" if detail.strip() else "")

    def failed_processes(self, case_id: str) -> int:
        rows = self.cases.get(case_id)
        if rows is None or "status" not in rows.columns:
            return 0
        return int((rows["status"] != "ok").sum())

    def ok_cases(self, case_id: str) -> pd.DataFrame:
        rows = self.cases.get(case_id, pd.DataFrame())
        return rows[rows["status"] == "ok"] if "status" in rows.columns else rows

    def step_rows(self, case_id: str) -> pd.DataFrame:
        return self.steps.get(case_id, pd.DataFrame({"case_id": []}))

    def energy_flags(self, case_id: str) -> set[str]:
        """Why a case's energy figures are not comparable (too short a window, restarts)."""
        rows = self.ok_cases(case_id)
        if "energy_flags" not in rows.columns:
            return set()
        return {f for s in rows["energy_flags"].dropna() for f in str(s).split(";") if f}

    def energy_sources(self, case_id: str) -> set[str]:
        rows = self.ok_cases(case_id)
        if "energy_source" not in rows.columns:
            return set()
        return {str(s) for s in rows["energy_source"].dropna() if str(s) not in ("", "none")}


PriorSource = Callable[[str, str], "Prior | None"]


def gate(baseline_steps: pd.DataFrame | None, baseline_cases: pd.DataFrame | None,
         candidate_steps: pd.DataFrame | None, candidate_cases: pd.DataFrame | None,
         floors: str | Iterable[str] | Mapping[str, float] | None = None,
         alpha: float = DEFAULT_ALPHA, *, metrics: Sequence[str] = DEFAULT_METRICS,
         rule: str = DEFAULT_RULE, gate_estimated: bool = False,
         baseline_manifest: Mapping[str, Any] | None = None,
         candidate_manifest: Mapping[str, Any] | None = None,
         confidence: float = DEFAULT_CONFIDENCE, min_samples: int = DEFAULT_MIN_SAMPLES,
         allow_missing: bool = False, run_drift: float = 0.0,
         priors: PriorSource | None = None, paired_by_repeat: bool = False,
         power: float = DEFAULT_POWER) -> GateResult:
    """Compare a candidate run with a baseline, every case × metric in one Holm family.

    Per (case, metric) the evidence is one summary per agent process (the median of its
    steps, or its case-table value), compared by :func:`analysis.compare.compare_steps` /
    :func:`~analysis.compare.compare_units`; all tests together keep the run-level
    false-alarm rate at ``alpha`` (:func:`analysis.decide.decide_family`). ``priors(case_id,
    metric)`` may supply a calibrated between-process spread (``harness calibrate``)
    and the spread between separate runs (``Prior.sigma_run``, added as ``2 σ_r²`` to common
    and specific comparisons alike); ``run_drift`` is a between-process spread given by hand
    for every case. ``paired_by_repeat`` (``harness ab``): the two sides' processes with the
    same ``repeat`` ran back to back, so each repeat's log-ratio is one paired unit and no
    spread between runs applies. ``*_cases`` may be None (pytest-benchmark
    input). Several runs of one side may be concatenated: their processes pool.
    """
    floor_map = parse_floors(floors)
    chosen = [METRICS[_known_metric(m)] for m in metrics]
    if rule not in RULES:
        raise ConfigError(f"unknown gate rule {rule!r}; known: {', '.join(RULES)}", key="rule")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha={alpha!r} must lie in (0, 1); use e.g. 0.05", key="alpha")
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
    fixed = Prior(run_drift, PRIOR_DF_OF_RUN_DRIFT) if run_drift > 0 else None
    if paired_by_repeat and priors is not None:
        priors = _within_run(priors)
    notes: dict[str, int] = {}
    rows: list[MetricVerdict | _Row] = []
    whole = {c: _whole_case_verdict(c, base, cand) for c in sorted(base.ids | cand.ids)}
    compared = [c for c, v in whole.items() if v is None]
    split = {} if paired_by_repeat else {
        m.name: _split(m, base, cand, compared, confidence, priors) for m in chosen
        if m.table == "steps" and m.unit == "process"}
    for case_id, whole_case in whole.items():
        if whole_case is not None:
            rows.append(whole_case)
            continue
        for metric in chosen:
            prior = prior_for_gate(priors(case_id, metric.name) if priors else None, fixed)
            outcome = _compare(case_id, metric, base, cand, gate_estimated=gate_estimated,
                               confidence=confidence, min_samples=min_samples, prior=prior,
                               paired_by_repeat=paired_by_repeat,
                               specific=split.get(metric.name, ({}, []))[0].get(case_id))
            if isinstance(outcome, str):
                notes[outcome] = notes.get(outcome, 0) + 1
            elif isinstance(outcome, MetricVerdict):
                outcome = replace(outcome, floor=floor_map[metric.name])
                rows.append(outcome)
            elif outcome is not None:
                rows.append(_Row(case_id, metric, *outcome))
    for metric in chosen:
        for group in split.get(metric.name, ({}, []))[1]:
            prior = prior_for_gate(combined_prior(priors(c, metric.name) if priors else None
                                                  for c in group.reference), fixed)
            comparison = compare_common(base.medians(metric.column), cand.medians(metric.column),
                                        group, confidence=confidence, prior=prior)
            rows.append(_Row(group.label, metric, comparison, False, group.cases))
    verdicts, tests, detectable = _decide_all(rows, floor_map, alpha, rule, power)
    failed = sum(cand.failed_processes(c) for c in cand.ids)
    if failed:
        notes[f"{failed} candidate process(es) failed; the cases were judged on the others"] = 1
    return GateResult(
        verdicts=tuple(verdicts), warnings=tuple(warnings),
        notes=tuple(f"{text} ({n} case(s))" if n > 1 or "process(es)" not in text else text
                    for text, n in notes.items()),
        alpha=alpha, rule=rule, floors=tuple((m.name, floor_map[m.name]) for m in chosen),
        allow_missing=allow_missing, tests=tests, detectable=tuple(detectable), power=power)


def _within_run(priors: PriorSource) -> PriorSource:
    """The priors without their spread between runs (both sides interleaved in one run)."""
    def prior(case_id: str, metric: str) -> Prior | None:
        found = priors(case_id, metric)
        return replace(found, sigma_run=0.0) if found is not None else None

    return prior


@dataclass(frozen=True)
class _Row:
    """A compared (case, metric) before the family is decided."""

    case_id: str
    metric: Metric
    comparison: Comparison
    floor_only: bool
    members: tuple[str, ...] = ()


def _split(metric: Metric, base: _Side, cand: _Side, cases: Sequence[str], confidence: float,
           priors: PriorSource | None = None) -> tuple[dict[str, Comparison], list[Group]]:
    """Cases whose change splits into a common and a specific part (:mod:`analysis.relative`):
    each one's specific comparison (with its calibrated spread between runs, ``<metric>_relative``),
    and the groups whose common part gets a row."""
    if not (metric.column in base.step_columns and metric.column in cand.step_columns):
        return {}, []
    mb, mc = base.medians(metric.column), cand.medians(metric.column)
    specific: dict[str, Comparison] = {}
    split_groups = []
    for group in groups(mb, mc, cases):
        rb, rc = base.rounds(metric.column), cand.rounds(metric.column)
        runs = {c: priors(c, f"{metric.name}_relative") for c in group.cases} if priors else None
        found = compare_specific(mb, mc, group, confidence=confidence, runs=runs,
                                 rounds=(rb, rc) if rb is not None and rc is not None else None)
        if found:
            specific.update(found)
            split_groups.append(group)
    return specific, split_groups


def _decide_all(rows: list[Any], floor_map: Mapping[str, float], alpha: float, rule: str,
                power: float) -> tuple[list[MetricVerdict], int, list[tuple[str, float]]]:
    """Decide every compared (case, metric) in one Holm family; keep the others' order.

    Also the smallest change each comparison could detect at the family's first Holm level
    (α/m, power ``power``), and per metric the worst of them over the cases.
    """
    positions = [i for i, r in enumerate(rows) if isinstance(r, _Row)]
    compared: list[_Row] = [rows[i] for i in positions]
    only = [r.floor_only for r in compared]
    floors = [floor_map[r.metric.name] for r in compared]
    try:
        decided = decide_family([r.comparison for r in compared], floors, alpha, rule=rule,
                                floor_only=only)
    except RuleError as exc:
        raise ConfigError(str(exc), key="alpha") from None
    tests = family_size([r.comparison for r in compared], only)
    level = alpha / max(tests, 1)
    worst: dict[str, float] = {}
    out = list(rows)
    for i, row, (comparison, verdict, reason), floor in zip(
            positions, compared, decided, floors, strict=True):
        method = "floor-only" if row.floor_only else (comparison.method if comparison else "")
        verdict_row = MetricVerdict(row.case_id, row.metric.name, verdict, floor, method, reason,
                                    comparison, members=row.members)
        if not row.floor_only and comparison is not None:
            mde = comparison_mde(comparison, level, power)
            verdict_row = replace(verdict_row, mde=mde)
            name = _detectable_name(row.metric.name, verdict_row.scope)
            worst[name] = max(worst.get(name, -math.inf), mde if math.isfinite(mde) else math.inf)
        out[i] = verdict_row
    return out, tests, sorted((k, v if math.isfinite(v) else math.nan) for k, v in worst.items())


def _detectable_name(metric: str, scope: str) -> str:
    """How the summary names a metric's detectable change for one scope of rows."""
    return {"variant": f"{metric} of one variant", "group": f"{metric} of a whole group"}.get(
        scope, metric)


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


def _compare(case_id: str, metric: Metric, base: _Side, cand: _Side, *, gate_estimated: bool,
             confidence: float, min_samples: int, prior: Prior | None, paired_by_repeat: bool,
             specific: Comparison | None = None,
             ) -> tuple[Comparison, bool] | MetricVerdict | str | None:
    """(comparison, floor_only) for one (case, metric); a MetricVerdict when it cannot be
    compared; a note string when skipped on purpose; None when the metric was not measured.
    ``specific``: the case's own part of a step metric (relative to its process-mates), used
    in place of the whole-case comparison once the case has enough samples."""
    if metric.table == "steps":
        if not (metric.column in base.step_columns and metric.column in cand.step_columns):
            return f"{metric.name}: column {metric.column!r} absent, not gated"
        b_rows, c_rows = base.step_rows(case_id), cand.step_rows(case_id)
        b_vals = pd.to_numeric(b_rows.get(metric.column, pd.Series([])), errors="coerce")
        c_vals = pd.to_numeric(c_rows.get(metric.column, pd.Series([])), errors="coerce")
        if not ((b_vals > 0).any() or (c_vals > 0).any()):
            return None  # absent phase (all zero)
        if metric.unit == "round":
            b, c = b_vals[b_vals > 0].to_numpy(float), c_vals[c_vals > 0].to_numpy(float)
            if min(b.size, c.size) < min_samples:
                return compare_units(b, c, confidence=confidence), True
            comparison = compare_units(b, c, confidence=confidence)
            return replace(comparison, method="rounds", note="rounds of one process each: "
                           "within-process evidence only"), False
        nb, nc = int((b_vals > 0).sum()), int((c_vals > 0).sum())
        if min(nb, nc) < min_samples:
            return MetricVerdict(case_id, metric.name, "inconclusive", math.nan, "",
                                 f"too few samples ({nb} vs {nc}, need {min_samples})",
                                 compare_steps(b_rows, c_rows, metric.column, prior=prior,
                                               confidence=confidence))
        if paired_by_repeat and "repeat" in b_rows.columns and "repeat" in c_rows.columns:
            return compare_by_repeat(b_rows, c_rows, metric.column, confidence), False
        if specific is not None:
            return replace(specific, steps_baseline=nb, steps_candidate=nc), False
        return compare_steps(b_rows, c_rows, metric.column, prior=prior,
                             confidence=confidence), False
    if metric.name == "energy_per_step":
        skipped = _energy_skip(base.energy_sources(case_id), cand.energy_sources(case_id),
                               gate_estimated)
        if skipped is not None:
            return skipped or None
        flagged = base.energy_flags(case_id) | cand.energy_flags(case_id)
        if flagged:
            return f"energy_per_step: energy flagged ({', '.join(sorted(flagged))}), not gated"
    pb = process_values(base.ok_cases(case_id), metric.column)
    pc = process_values(cand.ok_cases(case_id), metric.column)
    if pb.empty and pc.empty:
        return None  # meter not read on either side
    comparison = compare_units(pb["median"], pc["median"], confidence=confidence, prior=prior)
    few = min(len(pb), len(pc)) < 2 and (prior is None or not prior.usable())
    if few:  # one value per side: no spread to test against, the floor alone decides
        b, c = pb["median"].to_numpy(float), pc["median"].to_numpy(float)
        ratio = float(np.median(c) / np.median(b)) if b.size and c.size else math.nan
        comparison = replace(comparison, ratio=ratio, method="floor-only")
    return comparison, few


def _energy_skip(base_sources: set[str], cand_sources: set[str],
                 gate_estimated: bool) -> str | None:
    """Why energy is not gated for a case ("" for silently, None when it is gated)."""
    if not base_sources or not cand_sources:
        return ""
    measured_only = all(s.startswith("measured:") for s in base_sources | cand_sources)
    if not measured_only and not gate_estimated:
        return "energy_per_step: estimated energy, not gated (gate_estimated=False)"
    if base_sources != cand_sources:
        return (f"energy_per_step: sources differ ({sorted(base_sources)} vs "
                f"{sorted(cand_sources)}), not gated")
    return None
