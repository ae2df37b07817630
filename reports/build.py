"""From run directories to every aggregate table a report shows (one frozen record)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reports.aggregate import (
    BASELINE_KERNEL,
    CallRule,
    StepSamples,
    case_summary,
    compare_devices,
    compare_kernels,
    compare_optimizers,
    device_labels,
)
from reports.bootstrap import DEFAULT_BOOT
from reports.derived import (
    WarningRule,
    ceilings_table,
    correctness_table,
    energy_comparisons,
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
from reports.load import RunData, load_runs


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

    def tables(self) -> dict[str, pd.DataFrame]:
        """The exportable tables by name (used by the CSV/parquet and Markdown outputs)."""
        return {
            "cases": self.summary, "kernels": self.kernels, "optimizers": self.optimizers,
            "devices": self.devices, "energy": self.energy,
            "energy_vs_baseline": self.energy_vs_baseline, "memory": self.memory,
            "ceilings": self.ceilings, "warnings": self.warnings, "thermal": self.thermal,
            "correctness": self.correctness,
        }


def _labels_for(frame: pd.DataFrame, summary: pd.DataFrame) -> pd.Series:
    """Device labels (device, or device + run id when ambiguous) for a comparison table."""
    keys = zip(summary["device"], summary["run_id"], strict=True)
    mapping = dict(zip(keys, device_labels(summary), strict=True))
    pairs = zip(frame["device"], frame["run_id"], strict=True)
    return pd.Series([mapping.get((d, r), d) for d, r in pairs],
                     index=frame.index, dtype=object)


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
    headlines = (kernel_headlines(kernels, _labels_for(kernels, summary))
                 + optimizer_headlines(optimizers, _labels_for(optimizers, summary))
                 + device_headlines(devices))
    headlines.sort(key=lambda h: (h.device, h.workload, h.table))
    return Aggregates(
        data=data, summary=summary, kernels=kernels, optimizers=optimizers, devices=devices,
        energy=energy, energy_vs_baseline=energy_comparisons(energy, BASELINE_KERNEL),
        memory=memory_table(summary), ceilings=ceilings_table(summary, data.probes),
        warnings=warnings_table(summary, warning_rule), thermal=thermal_table(summary),
        correctness=correctness_table(summary), headlines=tuple(headlines),
        call_rule=call_rule, warning_rule=warning_rule, n_boot=n_boot,
    )


def aggregate_dirs(run_dirs: list[Path], **options: Any) -> Aggregates:
    """Load run directories and aggregate them."""
    return aggregate(load_runs([Path(d) for d in run_dirs]), **options)
