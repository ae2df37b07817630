"""Usage and configuration mistakes: one clear message and exit code 2, never a traceback."""

import pytest

from harness.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--device", "nope"], "unknown device 'nope'"),
        (["bench", "--suite", "smok"], "did you mean 'smoke'"),
        (["bench", "--kernel", "fuse"], "did you mean 'fused'"),
        (["bench", "--threads", "two"], "--threads: expected integers, got 'two'"),
        (["bench", "--steps", "0"], "--steps: must be ≥ 1"),
        (["bench", "--bogus"], "unrecognized arguments: --bogus"),
        (["report", "/nonexistent"], "is not a run directory"),
        (["gate", "--baseline", "b", "--candidate", "c", "--run-drift", "1.5"], "--run-drift: must be a fraction"),
        (["gate", "--baseline", "b"], "the following arguments are required: --candidate"),
    ],
)
def test_bad_input_exits_2_with_one_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_profile_with_a_misspelt_key_exits_2_naming_file_and_key(tmp_path, capsys):
    profile = tmp_path / "board.toml"
    profile.write_text('name = "board"\n[agent]\npyhton = ["python3"]\n')
    assert main(["bench", "--device", str(profile)]) == 2
    err = capsys.readouterr().err
    assert f"{profile}: agent.pyhton: unknown key 'pyhton'; did you mean 'python'?" in err


def test_list_shows_workloads_optimizers_kernels_suites_and_devices(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("mobilenet_v2", "bert_tiny", "ds_cnn", "nag", "adamw", "fused", "smoke", "local"):
        assert name in out


def test_cli_lab_builds_its_parsers_without_importing_cli():
    import ast
    from pathlib import Path

    import harness.cli_lab

    tree = ast.parse(Path(harness.cli_lab.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "harness.cli" not in imported


def test_an_optimizer_alias_selects_the_registered_optimizer():
    from harness.cli import build_parser
    from harness.cli_options import filters_from

    args = build_parser().parse_args(["bench", "--optimizer", "nesterov,AdamW", "--optimizer", "sgdm"])
    assert filters_from(args).optimizers == ("nag", "adamw", "momentum")


def test_a_filter_value_that_no_case_uses_is_reported_as_a_note():
    from harness.plan import Filters
    from harness.selection import select

    chosen = select(Filters(workloads=("bert_tiny",), optimizers=("nag",), kernels=("forloop", "flat")))
    assert {c.kernel for c in chosen.cases} == {"forloop"}
    assert len(chosen.notes) == 1 and chosen.notes[0].startswith("--kernel flat: no case of suite 'smoke'")


def test_the_seed_defaults_to_the_suites_and_the_filter_replaces_it():
    from harness.plan import Filters, load_suite
    from harness.selection import select

    assert select(Filters(workloads=("bert_tiny",))).seed == int(load_suite("smoke").data.get("seed", 0))
    chosen = select(Filters(workloads=("bert_tiny",), seed=7))
    assert chosen.seed == 7 and {c.seed for c in chosen.cases} == {7}


@pytest.mark.parametrize("flag", [["--kernel", "fused"], ["--processes", "2"], ["--isolate"], ["--study", "optimizers"],
                                  ["--run-id", "x"]])
def test_resume_refuses_an_option_that_changes_the_plan(flag, tmp_path, capsys):
    assert main(["bench", "--resume", str(tmp_path), *flag]) == 2
    assert f"drop {flag[0]}" in capsys.readouterr().err


def test_a_run_id_works_where_a_run_path_does(tmp_path, capsys):
    (tmp_path / "R1").mkdir()
    assert main(["report", "R1", "--out", str(tmp_path)]) == 2  # found under --out, but empty
    assert f"{tmp_path / 'R1'} is not a run directory" in capsys.readouterr().err


def test_a_report_of_two_runs_goes_to_its_own_directory_not_into_a_run(tmp_path, capsys):
    from reports.synthetic import SyntheticSpec, write_synthetic_run

    one = write_synthetic_run(tmp_path / "R1", SyntheticSpec(run_id="R1", steps=8, workloads=("mlp",),
                                                             onnx=False, calibration=False))
    two = write_synthetic_run(tmp_path / "R2", SyntheticSpec(run_id="R2", device="pixel7", steps=8,
                                                             workloads=("mlp",), onnx=False, calibration=False))
    assert main(["report", "R1", "R2", "--out", str(tmp_path), "--format", "md"]) == 0
    written = tmp_path / "combined-R1+R2" / "report.md"
    assert capsys.readouterr().out.strip() == str(written.resolve())
    assert written.is_file() and not (one / "report.md").exists() and not (two / "report.md").exists()


def test_a_run_id_works_for_gate_and_baseline_save_too(tmp_path, capsys, monkeypatch):
    import harness.cli_gate

    monkeypatch.setattr(harness.cli_gate, "DEFAULT_RESULTS", tmp_path)
    assert main(["gate", "--baseline", "b", "--candidate", "R9"]) == 2
    assert f"{tmp_path / 'R9'}" in capsys.readouterr().err
    assert main(["baseline", "save", "--run", "R9", "--dir", str(tmp_path / "b")]) == 2
    assert f"{tmp_path / 'R9'}" in capsys.readouterr().err
