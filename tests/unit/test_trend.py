"""`harness trend`: a metric per case across runs and across a baseline's numbered history."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.baseline import save_baseline
from harness.cli import main


def _run(root: Path, run_id: str, created: str, commit: str, step_ms: dict[str, float]) -> Path:
    run = root / run_id
    run.mkdir(parents=True)
    rows = [{"run_id": run_id, "device": "pixel7", "case_id": c, "repeat": r, "status": "ok",
             "median_step_ns": ms * 1e6 * (1 + 0.01 * r)} for c, ms in step_ms.items() for r in (0, 1, 2)]
    pd.DataFrame(rows).to_parquet(run / "cases.parquet")
    pd.DataFrame([{"run_id": run_id, "device": "pixel7", "case_id": c, "repeat": 0, "index": 0,
                   "warmup": False, "step_ns": ms * 1e6} for c, ms in step_ms.items()]
                 ).to_parquet(run / "steps.parquet")
    (run / "manifest.json").write_text(json.dumps({
        "run_id": run_id, "created": created, "git": {"commit": commit, "dirty": False},
        "device": {"name": "pixel7"}, "results_version": 1}))
    return run


def test_runs_are_columns_oldest_first_with_their_commits(tmp_path, capsys):
    _run(tmp_path, "b", "2026-11-02T00:00:00Z", "bbbbbbbbbbbb", {"x": 12.0, "y": 5.0})
    _run(tmp_path, "a", "2026-11-01T00:00:00Z", "aaaaaaaaaaaa", {"x": 10.0})
    assert main(["trend", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["[1]", "a", "commit", "aaaaaaaaaa"]
    assert out[2].split()[:4] == ["[2]", "b", "commit", "bbbbbbbbbb"]
    x = next(line for line in out if " x " in line)
    assert x.split()[2:] == ["10.10", "12.12", "+20.0%"]  # the median of three processes per run
    y = next(line for line in out if " y " in line)
    assert y.split()[2:] == ["—", "5.05"]


def test_a_baselines_history_is_a_trend_across_its_numbers(tmp_path, capsys):
    root = tmp_path / "baselines"
    save_baseline(_run(tmp_path, "r1", "2026-11-01T00:00:00Z", "c1", {"x": 10.0}), root, "main")
    save_baseline(_run(tmp_path, "r2", "2026-11-02T00:00:00Z", "c2", {"x": 9.0}), root, "main", overwrite=True)
    assert main(["trend", "--baseline", "main", "--baselines-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pixel7/main#1" in out and "pixel7/main#2" in out and "-10.0%" in out


def test_an_unknown_metric_names_the_numeric_columns(tmp_path, capsys):
    _run(tmp_path, "a", "2026-11-01T00:00:00Z", "c", {"x": 1.0})
    assert main(["trend", "a", "--out", str(tmp_path), "--metric", "energy_j"]) == 2
    assert "no column 'energy_j'; numeric columns: median_step_ns, repeat" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["trend", "--baseline", "nope"], ["trend", "missing-run"]])
def test_nothing_to_show_is_a_clear_error(tmp_path, capsys, argv):
    assert main([*argv, "--out", str(tmp_path), "--baselines-dir", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
