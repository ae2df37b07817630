"""A foreign board: Debian trixie's own Python 3.13 and torch 2.6 behind a real Dropbear.

The board (``.ci/build-board.sh``, fixture in tests/integration/dropbear.py) has no SFTP, a
non-root login, Debian's packages only (no onnxruntime, no C++ compiler), and versions that
are not the host's. One ``harness bench`` runs two cases of the smoke suite on it: NAG's
``forloop`` kernel, which must finish with the board's versions recorded, and NAG's ``ort``
kernel, which the board cannot run and must refuse with a message saying what is missing.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.register_assert_rewrite("tests.integration.dropbear")
from harness.transports.ssh import SSHConnection  # noqa: E402
from tests.integration.dropbear import (  # noqa: E402
    BOARD_PYTHON,
    BOARD_UID,
    CONNECT_TIMEOUT_S,
    MACHINES,
    BoardServer,
)

pytest_plugins = ["tests.integration.dropbear"]
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# nox -s board_arm64 keeps the run (HARNESS_BOARD_RESULTS) and allows for emulation's pace
RESULTS = os.environ.get("HARNESS_BOARD_RESULTS", "")
RUN_TIMEOUT_S = float(os.environ.get("HARNESS_BOARD_RUN_TIMEOUT_S", "900"))
# one workload, NAG, few steps: the case that must run, and the one the board must refuse
BOARD_SUITE = """\
description = "one NAG case the board runs, one it cannot (no onnxruntime)"
steps = 5
warmup = 1
check_steps = 3
processes = 1   # both variants share one agent process (workloads/paired.py): one torch import

[[matrix]]
workloads = ["bert_tiny"]
optimizers = ["nag"]
kernels = ["forloop", "ort"]

[options.bert_tiny]   # a small vocabulary and sequence: the case tests the board, not the model
vocab_size = 256
seq_len = 16
"""


def board_records(run_dir: Path, kind: str) -> list[dict]:
    """The agent's records of one type from the run's raw.jsonl (envelopes unwrapped)."""
    found = []
    for line in (run_dir / "raw.jsonl").read_text().splitlines():
        envelope = json.loads(line)
        if "line" in envelope:  # an agent line; the harness's own events have no "line"
            rec = json.loads(envelope["line"])
            if rec.get("type") == kind:
                found.append(rec)
    return found


@pytest.fixture(scope="module")
def board_run(dropbear_board: BoardServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("board-bench")
    profile = dropbear_board.write_profile(tmp / "trixie-board.toml")
    suite = tmp / "board.toml"
    suite.write_text(BOARD_SUITE)
    out = Path(RESULTS) if RESULTS else tmp / "results"
    run_id = f"board-{dropbear_board.arch}-{time.strftime('%Y%m%dT%H%M%S')}"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--device", str(profile), "--suite", str(suite), "--no-report",
         "--no-probe", "--out", str(out), "--run-id", run_id], cwd=REPO, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S)
    return out / run_id, proc


def test_the_board_is_dropbear_without_sftp_and_a_non_root_login(dropbear_board: BoardServer) -> None:
    conn = SSHConnection(
        dropbear_board.host, port=dropbear_board.port, user=dropbear_board.user,
        identity_file=str(dropbear_board.client_key), known_hosts=str(dropbear_board.known_hosts),
        allow_agent=False, look_for_keys=False, connect_attempts=1, connect_timeout_s=CONNECT_TIMEOUT_S)
    try:
        lines: list[str] = []
        result = conn.run(["id", "-u"], deadline_s=30, on_stdout_line=lines.append)
        assert result.ok and lines == [str(BOARD_UID)]
        assert conn.file_transfer == "exec"
    finally:
        conn.close()
    assert not (dropbear_board.root / "usr/lib/sftp-server").exists()
    assert not (dropbear_board.root / "usr/lib/openssh/sftp-server").exists()


@pytest.mark.slow
def test_a_smoke_case_runs_on_the_boards_own_python_and_torch(board_run: tuple[Path, subprocess.CompletedProcess[str]],
                                                              dropbear_board: BoardServer) -> None:
    run_dir, proc = board_run
    assert (run_dir / "cases.parquet").is_file(), proc.stderr[-3000:]
    cases = pd.read_parquet(run_dir / "cases.parquet").set_index("kernel")
    assert cases.loc["forloop", "status"] == "ok", proc.stderr[-3000:]
    steps = pd.read_parquet(run_dir / "steps.parquet")
    assert len(steps[(steps["kernel"] == "forloop") & ~steps["warmup"]]) == 5
    (hello, *_) = board_records(run_dir, "hello")
    # the board's versions, not this machine's (the host runs its own Python and torch)
    assert hello["python"].startswith("3.13.") and hello["torch"].startswith("2.6.")
    assert hello["machine"] == MACHINES[dropbear_board.arch]
    assert (hello["python"], hello["torch"]) != (platform.python_version(), __import__("torch").__version__)
    assert hello["env"]["optional"]["onnxruntime"] is None and hello["env"]["optional"]["cxx"] is None
    # the bundle went over the exec channel into the non-root user's home, not SFTP
    pushed = list((dropbear_board.home / ".cache" / "odt-harness").glob("agent-*.pyz"))
    assert pushed and all(os.stat(p).st_uid == BOARD_UID for p in pushed)
    assert "Pubkey auth succeeded for 'odt'" in dropbear_board.log_path.read_text()


@pytest.mark.slow
def test_a_kernel_the_board_cannot_run_is_refused_with_what_is_missing(
    board_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, proc = board_run
    cases = pd.read_parquet(run_dir / "cases.parquet").set_index("kernel")
    ort = cases.loc["ort"]
    assert ort["status"] == "failed", proc.stderr[-3000:]
    assert ort["error_kind"] == "MissingCapability"
    for part in ("'onnxruntime'", BOARD_PYTHON, "Python 3.13", "apt install python3-onnxruntime"):
        assert part in ort["error_message"]
    assert not len(pd.read_parquet(run_dir / "steps.parquet").query("kernel == 'ort'"))
