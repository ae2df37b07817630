"""Specification of stored baselines: saved atomically per device, listed, loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.baseline import list_baselines, load_baseline, save_baseline
from harness.errors import ConfigError


def make_run(root: Path, *, device: str = "pixel7", run_id: str = "run-1",
             step_ns: int = 1000) -> Path:
    """A results/<run-id>/ directory with the three files the store writes."""
    run_dir = root / "results" / run_id
    run_dir.mkdir(parents=True)
    pd.DataFrame({"run_id": run_id, "device": device, "case_id": ["c", "c"], "index": [0, 1], "repeat": 0,
                  "warmup": [True, False], "step_ns": [step_ns * 3, step_ns]}
                 ).to_parquet(run_dir / "steps.parquet")
    pd.DataFrame({"run_id": [run_id], "device": [device], "case_id": ["c"], "repeat": [0], "status": ["ok"]}
                 ).to_parquet(run_dir / "cases.parquet")
    manifest = {"run_id": run_id, "created": "2026-11-24T20:00:00Z", "results_version": 1,
                "git": {"commit": "abc123", "dirty": False}, "device": {"name": device}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def test_save_copies_the_tables_and_manifest_under_device_and_name(tmp_path: Path) -> None:
    dest = save_baseline(make_run(tmp_path), tmp_path / "baselines", "main")
    assert dest == tmp_path / "baselines" / "pixel7" / "main"
    assert {p.name for p in dest.iterdir()} == {"steps.parquet", "cases.parquet",
                                                "manifest.json", "baseline.json"}


def test_save_leaves_no_temporary_directory_behind(tmp_path: Path) -> None:
    save_baseline(make_run(tmp_path), tmp_path / "baselines", "main")
    assert [p.name for p in (tmp_path / "baselines" / "pixel7").iterdir()] == ["main"]


def test_saving_over_an_existing_name_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    save_baseline(run, tmp_path / "baselines", "main")
    with pytest.raises(ConfigError, match="'main' for device 'pixel7' already exists"):
        save_baseline(run, tmp_path / "baselines", "main")


def test_overwrite_replaces_the_baseline_with_the_new_run(tmp_path: Path) -> None:
    save_baseline(make_run(tmp_path), tmp_path / "baselines", "main")
    newer = make_run(tmp_path, run_id="run-2", step_ns=2000)
    save_baseline(newer, tmp_path / "baselines", "main", overwrite=True)
    steps, _, manifest = load_baseline("main", tmp_path / "baselines", "pixel7")
    assert manifest["run_id"] == "run-2" and steps["step_ns"].max() == 6000


def test_a_name_that_is_not_a_plain_directory_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'../escape' is not usable"):
        save_baseline(make_run(tmp_path), tmp_path / "baselines", "../escape")


def test_list_reports_device_name_run_and_commit(tmp_path: Path) -> None:
    save_baseline(make_run(tmp_path), tmp_path / "baselines", "main")
    save_baseline(make_run(tmp_path, device="rpi5", run_id="run-2"), tmp_path / "baselines", "v1")
    found = [(b.device, b.name, b.run_id, b.commit) for b in list_baselines(tmp_path / "baselines")]
    assert found == [("pixel7", "main", "run-1", "abc123"), ("rpi5", "v1", "run-2", "abc123")]


def test_list_of_an_absent_directory_is_empty(tmp_path: Path) -> None:
    assert list_baselines(tmp_path / "nowhere") == []


def test_load_by_path_returns_the_saved_tables(tmp_path: Path) -> None:
    dest = save_baseline(make_run(tmp_path), tmp_path / "baselines", "main")
    steps, cases, manifest = load_baseline(dest)
    assert (len(steps), cases["status"].tolist(), manifest["device"]["name"]) == \
        (2, ["ok"], "pixel7")


def test_load_of_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    save_baseline(make_run(tmp_path), tmp_path / "baselines", "main")
    with pytest.raises(ConfigError, match="no baseline 'nope' for device 'pixel7'.*known: main"):
        load_baseline("nope", tmp_path / "baselines", "pixel7")


def test_saving_a_directory_that_is_not_a_run_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run directory"):
        save_baseline(tmp_path, tmp_path / "baselines", "main")


def test_a_replaced_baseline_stays_in_the_names_numbered_history(tmp_path: Path) -> None:
    from harness.baseline import baseline_history

    root = tmp_path / "baselines"
    save_baseline(make_run(tmp_path), root, "main")
    save_baseline(make_run(tmp_path, run_id="run-2", step_ns=2000), root, "main", overwrite=True)
    save_baseline(make_run(tmp_path, run_id="run-3", step_ns=3000), root, "main", overwrite=True)
    history = baseline_history(root, "pixel7", "main")
    assert [(b.number, b.run_id) for b in history] == [(1, "run-1"), (2, "run-2"), (3, "run-3")]
    assert history[-1].path == root / "pixel7" / "main"
    assert sorted(p.name for p in (root / "pixel7" / "main.history").iterdir()) == ["0001", "0002"]
    assert [b.name for b in list_baselines(root)] == ["main"]  # the history is not a baseline of its own
    _, _, first = load_baseline(root / "pixel7" / "main.history" / "0001")
    assert first["run_id"] == "run-1"
