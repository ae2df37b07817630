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
