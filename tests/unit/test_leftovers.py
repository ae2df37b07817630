"""The agent ledger on the local transport: groups recorded before stdin, cleared when the
command returns, and leftovers of a dead host killed only when they run an agent bundle."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from harness.errors import HarnessError
from harness.leftovers import AgentLedger
from harness.transports.local import LocalConnection


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.fixture()
def ledger(tmp_path: Path) -> AgentLedger:
    run_dir = tmp_path / "run-1"
    run_dir.mkdir()
    return AgentLedger("dev", run_dir, lock_dir=tmp_path / "locks")


@pytest.fixture()
def sleepers() -> Iterator[dict[str, subprocess.Popen]]:
    """Two process-group leaders: one looks like an agent bundle, one does not."""
    code = "import time; time.sleep(600)"
    procs = {
        "agent": subprocess.Popen([sys.executable, "-c", code, "/w/agent-0123abcd.pyz", "run"], start_new_session=True),
        "other": subprocess.Popen([sys.executable, "-c", code, "not-ours"], start_new_session=True),
    }
    yield procs
    for proc in procs.values():
        proc.kill()
        proc.wait()


def test_a_group_is_recorded_before_the_command_reads_its_stdin(ledger: AgentLedger) -> None:
    seen: list[int] = []

    def record(pgid: int) -> None:
        ledger.started(pgid, "case-a", 1)
        seen.append(pgid)
        assert ledger.pending() == [pgid]  # on disk before the command gets its input

    lines: list[str] = []
    result = LocalConnection().run(["sh", "-c", "read x; echo got $x $$"], stdin=b"hello\n", deadline_s=30,
                                   on_stdout_line=lines.append, on_start=record)
    assert result.ok and lines == [f"got hello {seen[0]}"]
    ledger.ended(seen[0])
    assert ledger.pending() == []


def test_an_error_while_recording_kills_the_command_and_is_raised(ledger: AgentLedger, tmp_path: Path) -> None:
    def broken(pgid: int) -> None:
        raise HarnessError(f"cannot record {pgid}")

    start = time.monotonic()
    with pytest.raises(HarnessError, match="cannot record"):
        LocalConnection().run(["sleep", "60"], deadline_s=120, on_stdout_line=lambda _: None, on_start=broken)
    assert time.monotonic() - start < 30


def test_reap_kills_a_leftover_agent_and_spares_a_reused_pid(
    ledger: AgentLedger, sleepers: dict[str, subprocess.Popen], tmp_path: Path,
) -> None:
    agent, other = sleepers["agent"].pid, sleepers["other"].pid
    ledger.started(agent, "case-a", 1)
    ledger.started(other, "case-b", 1)  # as if the pid had been reused by an unrelated process
    # a later run on the same device (another run directory) finds them in the device's list
    later_dir = tmp_path / "run-2"
    later_dir.mkdir()
    later = AgentLedger("dev", later_dir, lock_dir=tmp_path / "locks")
    assert later.reap(LocalConnection()) == {agent: "reaped", other: "gone"}
    sleepers["agent"].wait(10)
    assert sleepers["agent"].returncode == -signal.SIGKILL
    assert _alive(other)
    assert later.pending() == []
    events = [json.loads(line)["event"] for line in (later_dir / "agents.jsonl").read_text().splitlines()]
    assert sorted(events) == ["gone", "reaped"]


def test_nothing_pending_runs_nothing(ledger: AgentLedger) -> None:
    class NoRun:
        def run(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("no command expected")

    assert ledger.reap(NoRun()) == {}  # type: ignore[arg-type]
