"""From run directories to every aggregate table a report shows (one frozen record)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.load import RunData, load_runs
from reports.aggregate import (
    BASELINE_KERNEL,
    DEFAULT_BOOT,
    CallRule,
    StepSamples,
    case_summary,
    compare_devices,
    compare_kernels,
    compare_optimizers,
    device_labels,
)
from reports.calibration import calibration_verdicts, targets_from
from reports.coverage import Coverage, coverage
from reports.derived import (
    WarningRule,
    ceilings_table,
    correctness_table,
    energy_comparisons,
    energy_gaps,
    energy_table,
    memory_table,
    thermal_table,
    warnings_table,
)
from reports.headline import (
    Headline,
    device_headlines,
    kernel_headlines,
    optimizer_headlines,
)
from reports.onnx import onnx_table
from reports.study import best_lr_table, study_headlines


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


@dataclass(frozen=True)
class Aggregates:
    """Everything a renderer needs; tables are pandas frames, one row per case or pair."""

    data: RunData
    summary: pd.DataFrame
    kernels: pd.DataFrame
    optimizers: pd.DataFrame
    devices: pd.DataFrame
    energy: pd.DataFrame
    energy_vs_baseline: pd.DataFrame
    memory: pd.DataFrame
    ceilings: pd.DataFrame
    warnings: pd.DataFrame
    thermal: pd.DataFrame
    correctness: pd.DataFrame
    headlines: tuple[Headline, ...]
    call_rule: CallRule
    warning_rule: WarningRule
    n_boot: int
    study_best: pd.DataFrame = field(default_factory=_empty)  # best lr per workload × optimizer
    profile: pd.DataFrame = field(default_factory=_empty)  # metric, optimizer, tau, rho (+ run_id)
    calibration: pd.DataFrame = field(default_factory=_empty)  # as stored, with run_id
    calibration_verdicts: pd.DataFrame = field(default_factory=_empty)  # one sentence per case
    onnx: pd.DataFrame = field(default_factory=_empty)  # ONNX Runtime inference rows per case
    energy_gaps: pd.DataFrame = field(default_factory=_empty)  # why cases have no energy
    coverage: Coverage | None = None  # planned vs measured, and why each case was not measured

    def run_ids(self) -> list[str]:
        """The runs a report covers: those with cases, else those whose manifests were read."""
        return sorted(self.summary["run_id"].astype(str).unique()) or [
            str(m.get("run_id", "?")) for m in self.data.manifests]

    def tables(self) -> dict[str, pd.DataFrame]:
        """The exportable tables by name (used by the CSV/parquet and Markdown outputs)."""
        return {
            "cases": self.summary, "kernels": self.kernels, "optimizers": self.optimizers,
            "devices": self.devices, "energy": self.energy,
            "energy_vs_baseline": self.energy_vs_baseline, "memory": self.memory,
            "ceilings": self.ceilings, "warnings": self.warnings, "thermal": self.thermal,
            "correctness": self.correctness, "study_best": self.study_best,
            "performance_profile": self.profile, "calibration": self.calibration,
            "calibration_verdicts": self.calibration_verdicts, "onnx_inference": self.onnx,
            "energy_gaps": self.energy_gaps,
            "not_measured": self.coverage.unmeasured if self.coverage else _empty(),
        }


def _labels_for(frame: pd.DataFrame, summary: pd.DataFrame) -> pd.Series:
    """Device labels (device, or device + run id when ambiguous) for a comparison table."""
    keys = zip(summary["device"], summary["run_id"], strict=True)
    mapping = dict(zip(keys, device_labels(summary), strict=True))
    pairs = zip(frame["device"], frame["run_id"], strict=True)
    return pd.Series([mapping.get((d, r), d) for d, r in pairs],
                     index=frame.index, dtype=object)


def _noise_caveats(headlines: list[Headline], tables: dict[str, pd.DataFrame],
                   summary: pd.DataFrame, rule: WarningRule) -> list[Headline]:
    """Append a caveat to kernel/optimizer sentences that rest on noisy cases.

    The call rule already widens intervals for noise, but a reader should not have to open
    the warnings to learn that a stated ratio came from cases whose step time varied by 50 %.
    """
    keys = zip(summary["run_id"], summary["case_id"], strict=True)
    cv = dict(zip(keys, summary["cv"], strict=True))
    out = []
    for h in headlines:
        table = tables.get(h.table)
        if table is None or table.empty:
            out.append(h)
            continue
        rows = table.loc[list(h.rows)]
        cases = {(str(r), str(c)) for r, b, v in zip(rows["run_id"], rows["baseline_case"],
                                                      rows["variant_case"], strict=True)
                 for c in (b, v)}
        noisy = sum(1 for key in cases if cv.get(key, 0.0) > rule.noisy_cv)
        if noisy:
            which = (("both" if noisy == 2 else f"all {noisy}") if noisy == len(cases)
                     else f"{noisy} of the {len(cases)}")
            h = replace(h, text=f"{h.text} Caveat: {which} cases compared are noisy "
                                f"(step-time CV > {rule.noisy_cv:.0%}; see warnings).")
        out.append(h)
    return out


def aggregate(data: RunData, n_boot: int = DEFAULT_BOOT, call_rule: CallRule | None = None,
              warning_rule: WarningRule | None = None) -> Aggregates:
    """Compute every table of a report from loaded runs."""
    call_rule = call_rule or CallRule()
    warning_rule = warning_rule or WarningRule()
    samples = StepSamples(data.steps, n_boot=n_boot)
    summary = case_summary(data.cases, samples, data.steps)
    kernels = compare_kernels(summary, samples, call_rule)
    optimizers = compare_optimizers(summary, samples, call_rule)
    run_order = [str(m.get("run_id", "")) for m in data.manifests]
    devices = compare_devices(summary, samples, call_rule, run_order)
    energy = energy_table(summary)
    study_best = (best_lr_table(data.study_summary) if data.study_summary is not None
                  and not data.study_summary.empty else _empty())
    headlines = _noise_caveats(
        kernel_headlines(kernels, _labels_for(kernels, summary))
        + optimizer_headlines(optimizers, _labels_for(optimizers, summary)),
        {"kernels": kernels, "optimizers": optimizers}, summary, warning_rule)
    headlines += device_headlines(devices) + study_headlines(study_best)
    headlines.sort(key=lambda h: (h.device, h.workload, h.table))
    return Aggregates(
        data=data, summary=summary, kernels=kernels, optimizers=optimizers, devices=devices,
        energy=energy, energy_vs_baseline=energy_comparisons(energy, BASELINE_KERNEL),
        memory=memory_table(summary), ceilings=ceilings_table(summary, data.probes),
        warnings=warnings_table(summary, warning_rule), thermal=thermal_table(summary),
        correctness=correctness_table(summary), headlines=tuple(headlines),
        call_rule=call_rule, warning_rule=warning_rule, n_boot=n_boot,
        study_best=study_best,
        profile=data.profile if data.profile is not None else _empty(),
        calibration=data.calibration if data.calibration is not None else _empty(),
        calibration_verdicts=calibration_verdicts(data.calibration,
                                                  targets_from(data.calibration_targets)),
        onnx=onnx_table(summary), energy_gaps=energy_gaps(summary),
        coverage=coverage(data.processes if data.processes is not None else data.cases,
                          data.manifests),
    )


def aggregate_dirs(run_dirs: list[Path], **options: Any) -> Aggregates:
    """Load run directories and aggregate them."""
    return aggregate(load_runs([Path(d) for d in run_dirs]), **options)
