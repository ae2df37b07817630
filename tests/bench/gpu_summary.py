"""Print a CUDA check's run as text: ceilings, each case against them, correctness, energy.

Usage: ``python tests/bench/gpu_summary.py results/<run-id>`` (tests/bench/gpu_check.sh calls it).
Reads ``probe.json`` and ``cases.parquet``/``steps.parquet`` only (pandas and pyarrow, no
plotly), and places each case against the ceilings of the accelerator it ran on and, for
matmul, of its dtype, as the report's ceilings table does (reports.derived.ceilings_table).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd


def read_probe(run: Path) -> dict[str, Any]:
    """probe.json, or the probe record in raw.jsonl when the run was cut short before it."""
    path = run / "probe.json"
    if path.exists():
        probe = json.loads(path.read_text())
        return (probe[0] if probe else {}) if isinstance(probe, list) else probe
    if not (run / "raw.jsonl").exists():
        return {}
    for line in (run / "raw.jsonl").read_text().splitlines():
        inner = json.loads(line).get("line", "")
        if '"type":"probe"' in inner:
            return json.loads(inner)
    return {}


def per_accel(probe: dict[str, Any]) -> dict[str, Any]:
    """The probe's ceilings per accelerator; an older probe's top-level figures are the CPU's."""
    if probe.get("ceilings"):
        return dict(probe["ceilings"])
    return {"cpu": {"device_name": "cpu", "bandwidth_gbs": probe.get("bandwidth_gbs", float("nan")),
                    "bandwidth_kernel": probe.get("bandwidth_kernel", ""),
                    "matmul_gflops": {"*": probe.get("matmul_gflops", float("nan"))}}}


def ceilings_text(probe: dict[str, Any]) -> list[str]:
    lines = ["ceilings (probe):"]
    for accel, figures in sorted(per_accel(probe).items()):
        if "error" in figures:
            lines.append(f"  {accel}: not probed: {figures['error']}")
            continue
        matmul = ", ".join(f"{d} {g:,.0f}" for d, g in sorted(figures["matmul_gflops"].items()))
        lines.append(f"  {accel} ({figures.get('device_name', accel)}): bandwidth "
                     f"{figures['bandwidth_gbs']:,.1f} GB/s ({figures['bandwidth_kernel']}); "
                     f"matmul GFLOP/s {matmul}")
        stream = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(figures.get("stream_gbs", {}).items()))
        lines.append(f"      STREAM GB/s: {stream}; in-place add {figures.get('inplace_add_gbs', 0):,.0f}")
    return lines


def case_rows(run: Path, probe: dict[str, Any]) -> pd.DataFrame:
    cases = pd.read_parquet(run / "cases.parquet")
    steps = pd.read_parquet(run / "steps.parquet")
    measured = steps.loc[~steps["warmup"]]
    if "zero_grad_ns" not in measured.columns:  # stored before zero_grad was its own phase
        measured = measured.assign(zero_grad_ns=0)
    medians = measured.groupby("case_id", observed=True)[["step_ns", "update_ns", "zero_grad_ns"]].median()
    medians.columns = ["med_step_ns", "med_update_ns", "med_zero_grad_ns"]
    frame = cases.set_index("case_id").join(medians)
    for col in ("flops_per_step", "update_bytes_per_step", "accel", "model_config"):
        if col not in frame.columns:  # no case got far enough to report it
            frame[col] = float("nan")
    ceilings = per_accel(probe)

    def ceiling(row: pd.Series, key: str) -> float:
        figures = ceilings.get(str(row.get("accel") or "cpu"), {})
        if key == "matmul":
            matmul = figures.get("matmul_gflops") or {}
            return float(matmul.get(str(row["dtype"]), matmul.get("*", float("nan"))))
        return float(figures.get("bandwidth_gbs", float("nan")))

    frame["update_gbs"] = frame["update_bytes_per_step"] / frame["med_update_ns"]
    frame["step_gflops"] = frame["flops_per_step"] / frame["med_step_ns"]
    frame["bw_fraction"] = frame["update_gbs"] / frame.apply(ceiling, axis=1, key="bandwidth")
    frame["matmul_fraction"] = frame["step_gflops"] / frame.apply(ceiling, axis=1, key="matmul")
    return frame


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    run = Path(argv[0])
    probe = read_probe(run)
    if not (run / "cases.parquet").exists() and (run / "raw.jsonl").exists():
        from harness.store import write_tables  # a run cut short: the tables from raw.jsonl

        write_tables(run)
    lines = ceilings_text(probe) if probe else ["ceilings: no probe.json in the run"]
    if not (run / "cases.parquet").exists():
        print("\n".join([*lines, f"no cases.parquet in {run}: the run stored no cases"]))
        return 1
    frame = case_rows(run, probe)
    lines.append("")
    lines.append("cases (median step and update; update GB/s and step GFLOP/s as fractions of the "
                 "ceilings of the accelerator the case ran on, matmul in the case's dtype):")
    for case_id, r in frame.sort_index().iterrows():
        if r["status"] not in ("ok", "wrong"):
            lines.append(f"  {case_id}: {r['status']} {r.get('error_kind', '')}: "
                         f"{str(r.get('error_message', ''))[:200]}")
            continue
        if r["status"] == "wrong":
            lines.append(f"  {case_id}: WRONG (failed its correctness check; timings below)")
        lines.append(
            f"  {case_id} [{r.get('model_config', '')}]: step {r['med_step_ns'] / 1e6:.2f} ms, "
            f"update {r['med_update_ns'] / 1e6:.3f} ms, zero_grad {r['med_zero_grad_ns'] / 1e6:.3f} ms; "
            f"update {r['update_gbs']:.1f} GB/s = {r['bw_fraction']:.2%} of bandwidth; "
            f"step {r['step_gflops']:.0f} GFLOP/s = {r['matmul_fraction']:.2%} of {r['dtype']} matmul")
    lines.append("")
    lines.append("correctness (checked on the timed accelerator and dtype, tolerance of the "
                 "parameters' dtype, changing lr, non-zero weight decay):")
    for case_id, r in frame.sort_index().iterrows():
        if not r.get("correct_checked"):
            continue
        lines.append(f"  {case_id}: ok={r['correct_ok']} max_rel_diff {r['correct_max_rel_diff']:.2e} "
                     f"tolerance {r['correct_tolerance']:.0e}")
    lines.append("")
    lines.append("energy:")
    for case_id, r in frame.sort_index().iterrows():
        window = r.get("energy_window_ns")
        lines.append(f"  {case_id}: {r.get('energy_source')} energy_j {r.get('energy_j')} "
                     f"window {window / 1e9 if pd.notna(window) else float('nan'):.2f} s "
                     f"extended steps {r.get('energy_extended_steps')} "
                     f"flags '{r.get('energy_flags', '')}' {r.get('energy_reason', '')}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
