"""The adb transport against a real adbd (Debian's AOSP build) and the real adb server.

adbd runs on this host in its own network namespace (see tests/integration/adbd.py), so the
"device" shares this machine's filesystem: remote paths are under the test's tmp_path, and
the device side of a check (is a process still alive?) is asked through the transport too.
Two device states a real adbd cannot be put into are shown with a protocol double at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import ConfigError, DeviceError, TransientError
from harness.profiles import Profile, parse_profile
from harness.transports import connect
from harness.transports.adb import AdbConnection
from harness.transports.pinning import pin_prefix
from tests.integration.adbd import (  # noqa: F401 - adb_sandbox is a fixture
    AdbSandbox,
    FakeAdbServer,
    adb_sandbox,
    require_real_parts,
    running_sandbox,
)

pytestmark = pytest.mark.integration

HOSTILE_VALUES = [
    "; touch CANARY",
    "$(touch CANARY)",
    "`touch CANARY`",
    "a\nb; touch CANARY",
    "it's \"quoted\" \\ back",
    "ünïcødé ✓ 日本",
    "",
    "*",
    "~",
    "$HOME ${PATH}",
    "-c",
    "a|touch CANARY&",
]
ECHO_ARGV = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def adb_profile(sandbox: AdbSandbox, *, serial: str | None = None, root: str = "none",
                server: str | None = None) -> Profile:
    """A profile for the sandbox's device, as a person would write it."""
    return parse_profile(
        f"""
        name = "adbd-sandbox"
        [connection]
        transport = "adb"
        serial = "{sandbox.serial if serial is None else serial}"
        adb_server = "{server or sandbox.adb_server}"
        [agent]
        python = ["{sys.executable}"]
        root = "{root}"
        """,
        source="adbd-sandbox.toml",
    )


@pytest.fixture(scope="module")
def conn(adb_sandbox: AdbSandbox) -> AdbConnection:  # noqa: F811 - the imported fixture
    connection = connect(adb_profile(adb_sandbox))
    assert isinstance(connection, AdbConnection)
    return connection


def run_lines(connection: AdbConnection, argv: list[str], **kwargs: object) -> tuple[list[str], object]:
    lines: list[str] = []
    result = connection.run(argv, on_stdout_line=lines.append, deadline_s=kwargs.pop("deadline_s", 60), **kwargs)
    return lines, result


# ---- connecting and listing -------------------------------------------------------------


def test_the_real_adb_client_lists_the_sandbox_device_as_online(adb_sandbox: AdbSandbox) -> None:  # noqa: F811
    listing = adb_sandbox.adb("devices").stdout.splitlines()
    assert f"{adb_sandbox.serial}\tdevice" in listing


def test_connect_opens_the_device_the_profile_names(conn: AdbConnection, adb_sandbox: AdbSandbox) -> None:  # noqa: F811
    assert (conn.name, conn.serial) == ("adb", adb_sandbox.serial)


def test_the_only_attached_device_is_chosen_when_no_serial_is_given(
    adb_sandbox: AdbSandbox, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    assert AdbConnection.from_profile(adb_profile(adb_sandbox, serial="")).serial == adb_sandbox.serial


def test_android_serial_names_the_device_when_the_profile_does_not(
    adb_sandbox: AdbSandbox, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("ANDROID_SERIAL", "10.213.255.254:5555")
    with pytest.raises(TransientError, match=r"no adb device with serial '10\.213\.255\.254:5555'"):
        AdbConnection.from_profile(adb_profile(adb_sandbox, serial=""))


def test_an_unknown_serial_is_transient_and_lists_the_attached_devices(adb_sandbox: AdbSandbox) -> None:  # noqa: F811
    with pytest.raises(TransientError, match=rf"attached: {adb_sandbox.serial} \(device\)"):
        AdbConnection.from_profile(adb_profile(adb_sandbox, serial="emulator-5554"))


def test_two_real_devices_and_no_serial_is_a_config_error_naming_the_key(
    adb_sandbox: AdbSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    with running_sandbox(tmp_path) as second:  # a second adbd in its own namespace
        assert "connected" in adb_sandbox.adb("connect", second.serial).stdout
        try:
            with pytest.raises(ConfigError, match=r"connection\.serial.*several adb devices"):
                AdbConnection.from_profile(adb_profile(adb_sandbox, serial=""))
        finally:
            adb_sandbox.adb("disconnect", second.serial)


def test_an_adb_server_that_does_not_answer_is_transient(adb_sandbox: AdbSandbox) -> None:  # noqa: F811
    with pytest.raises(TransientError, match="adb -P 9 start-server"):
        AdbConnection.from_profile(adb_profile(adb_sandbox, server="127.0.0.1:9"))


def test_adb_root_mode_is_accepted_when_adbd_runs_as_root(adb_sandbox: AdbSandbox) -> None:  # noqa: F811
    assert AdbConnection.from_profile(adb_profile(adb_sandbox, root="adb-root")).root == "adb-root"


# ---- running commands -------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 127, 255])
def test_the_exit_code_comes_through_shell_protocol_v2(conn: AdbConnection, code: int) -> None:
    _, result = run_lines(conn, ["sh", "-c", f"exit {code}"])
    assert result.exit_code == code


def test_stderr_is_kept_apart_from_stdout(conn: AdbConnection) -> None:
    lines, result = run_lines(conn, ["sh", "-c", "echo out; echo err >&2; echo out2"])
    assert (lines, result.stderr) == (["out", "out2"], "err\n")


def test_stdin_is_delivered_byte_for_byte(conn: AdbConnection) -> None:
    data = os.urandom(300_000)
    lines, result = run_lines(conn, ["sha256sum"], stdin=data)
    assert result.exit_code == 0 and lines[0].split()[0] == hashlib.sha256(data).hexdigest()


def test_ten_megabytes_of_output_arrive_without_a_hang(conn: AdbConnection) -> None:
    script = "import sys\nfor i in range(200_000): sys.stdout.write(f'{i:09d}' + 'x' * 50 + '\\n')"
    count = [0, 0]

    def sink(line: str) -> None:
        count[0] += 1
        count[1] += len(line) + 1

    result = conn.run([sys.executable, "-c", script], deadline_s=120, on_stdout_line=sink)
    assert (result.exit_code, count) == (0, [200_000, 12_000_000])


def test_a_last_line_without_newline_is_delivered(conn: AdbConnection) -> None:
    lines, _ = run_lines(conn, ["printf", "a\\nb"])
    assert lines == ["a", "b"]


def test_cwd_and_env_are_applied(conn: AdbConnection, tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['ODT_X'])"
    lines, _ = run_lines(conn, [sys.executable, "-c", code], cwd=str(tmp_path), env={"ODT_X": "$(x) 'y'"})
    assert lines == [str(tmp_path), "$(x) 'y'"]


def test_an_invalid_env_name_is_refused_before_reaching_the_shell(conn: AdbConnection) -> None:
    with pytest.raises(ConfigError, match="'A;B'"):
        run_lines(conn, ["true"], env={"A;B": "1"})


@pytest.mark.parametrize("root", ["none", "su"])
def test_hostile_argv_values_arrive_verbatim_and_run_nothing(
    adb_sandbox: AdbSandbox, tmp_path: Path, root: str  # noqa: F811
) -> None:
    connection = AdbConnection.from_profile(adb_profile(adb_sandbox, root=root))
    lines, result = run_lines(connection, [*ECHO_ARGV, *HOSTILE_VALUES], cwd=str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert json.loads(lines[0]) == HOSTILE_VALUES
    assert list(tmp_path.iterdir()) == []


def test_the_pin_prefix_confines_the_remote_process_to_the_cores(conn: AdbConnection) -> None:
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    lines, _ = run_lines(conn, [*pin_prefix([0]), sys.executable, "-c", code])
    assert lines == ["[0]"]


def test_a_deadline_kills_the_remote_process_tree(conn: AdbConnection) -> None:
    # The command starts two background sleepers and a foreground one, reports their pids,
    # and never ends by itself.
    script = "sleep 300 & echo $!; sleep 300 & echo $!; echo $$; sleep 300"
    lines, result = run_lines(conn, ["sh", "-c", script], deadline_s=2)
    assert result.timed_out and result.exit_code is None and len(lines) == 3
    # asked on the device side: every pid is gone (or a zombie waiting to be reaped)
    probe = "for p in \"$@\"; do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); " \
            "[ -n \"$s\" ] && [ \"$s\" != Z ] && echo alive $p; done; true"
    alive, _ = run_lines(conn, ["sh", "-c", probe, "probe", *lines])
    assert alive == []


def test_the_process_group_reaches_on_start_before_the_command_reads_stdin(conn: AdbConnection,
                                                                           tmp_path: Path) -> None:
    from harness.leftovers import AgentLedger

    (tmp_path / "run").mkdir()
    ledger = AgentLedger("adbd-sandbox", tmp_path / "run", lock_dir=tmp_path / "locks")
    seen: list[int] = []

    def record(pgid: int) -> None:
        ledger.started(pgid)
        seen.append(pgid)
        assert ledger.pending() == [pgid]  # on disk before the command gets its input

    lines, result = run_lines(conn, ["sh", "-c", "read x; echo \"$x\"; cut -d' ' -f5 /proc/$$/stat"],
                              stdin=b"hello\n", on_start=record)
    assert result.ok and lines == ["hello", str(seen[0])]


def test_a_leftover_agent_is_reaped_over_adb(conn: AdbConnection, tmp_path: Path) -> None:
    from harness.leftovers import AgentLedger

    (tmp_path / "run").mkdir()
    ledger = AgentLedger("adbd-sandbox", tmp_path / "run", lock_dir=tmp_path / "locks")
    # an "agent" in its own session that outlives the shell that started it, as after a host crash
    lines, result = run_lines(conn, ["sh", "-c", f"setsid {sys.executable} -c 'import time; time.sleep(600)' "
                                     "/w/agent-0123abcd.pyz </dev/null >/dev/null 2>&1 & echo $!"])
    pgid = int(lines[0])
    try:
        ledger.started(pgid)
        assert Path(f"/proc/{pgid}").exists()
        assert ledger.reap(conn) == {pgid: "reaped"}
        for _ in range(100):
            if not Path(f"/proc/{pgid}").exists() or " Z " in Path(f"/proc/{pgid}/stat").read_text():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the leftover agent is still running")
    finally:
        subprocess.run(["kill", "-9", str(pgid)], capture_output=True)


def test_adbd_dying_during_a_command_is_a_transient_error(tmp_path: Path) -> None:
    require_real_parts()
    with running_sandbox(tmp_path) as sandbox:  # its own adbd: this test kills it
        connection = AdbConnection.from_profile(adb_profile(sandbox))

        def kill_adbd_on_first_line(line: str) -> None:
            os.kill(sandbox.adbd_pid, signal.SIGKILL)

        with pytest.raises(TransientError, match="adb link to"):
            connection.run(["sh", "-c", "echo started; sleep 30"], deadline_s=60,
                           on_stdout_line=kill_adbd_on_first_line)


# ---- files ------------------------------------------------------------------------------


def test_push_then_pull_round_trips_bytes_exactly(conn: AdbConnection, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3_000_001))
    remote = str(tmp_path / "device" / "nested" / "payload.bin")
    sent = conn.push(src, remote)
    back = tmp_path / "back" / "payload.bin"
    conn.pull(remote, back)
    assert sent == 3_000_001 and back.read_bytes() == src.read_bytes()


def test_push_replaces_an_existing_file_and_leaves_no_temporary(conn: AdbConnection, tmp_path: Path) -> None:
    remote_dir = tmp_path / "device"
    remote_dir.mkdir()
    (remote_dir / "app.pyz").write_bytes(b"old")
    src = tmp_path / "new.pyz"
    src.write_bytes(b"new contents")
    conn.push(src, str(remote_dir / "app.pyz"))
    assert [p.name for p in remote_dir.iterdir()] == ["app.pyz"]
    assert (remote_dir / "app.pyz").read_bytes() == b"new contents"


def test_su_mode_moves_files_through_the_staging_dir_and_cleans_it(
    adb_sandbox: AdbSandbox, tmp_path: Path  # noqa: F811
) -> None:
    connection = AdbConnection.from_profile(adb_profile(adb_sandbox, root="su"))
    connection.staging_dir = str(tmp_path / "staging")
    (tmp_path / "staging").mkdir()
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100_000))
    remote = str(tmp_path / "root-owned" / "payload.bin")
    connection.push(src, remote)
    connection.pull(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert list((tmp_path / "staging").iterdir()) == []


def test_exists_tells_whether_a_push_can_be_skipped(conn: AdbConnection, tmp_path: Path) -> None:
    src = tmp_path / "agent-0123abcd.pyz"
    src.write_bytes(b"zipapp")
    remote = str(tmp_path / "device" / src.name)
    before = conn.exists(remote)
    conn.push(src, remote)
    assert (before, conn.exists(remote)) == (False, True)


def test_the_device_has_sha256sum_so_pushes_are_hash_checked(conn: AdbConnection) -> None:
    assert conn.has_sha256()


def test_read_text_returns_the_file_as_is(conn: AdbConnection, tmp_path: Path) -> None:
    (tmp_path / "zone").write_text("42000")
    assert conn.read_text(str(tmp_path / "zone")) == "42000"


def test_read_text_of_a_missing_file_raises_file_not_found(conn: AdbConnection, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        conn.read_text(str(tmp_path / "nope"))


def test_pull_of_a_missing_file_is_a_device_error_and_leaves_nothing(conn: AdbConnection, tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="nope"):
        conn.pull(str(tmp_path / "nope"), tmp_path / "out" / "x")
    assert list((tmp_path / "out").iterdir()) == []


# ---- protocol doubles: states a real adbd cannot be put into ------------------------------


def fake_profile(server: FakeAdbServer, serial: str = "") -> Profile:
    return parse_profile(
        f'name = "fake"\n[connection]\ntransport = "adb"\nserial = "{serial}"\n'
        f'adb_server = "127.0.0.1:{server.port}"\n',
        source="fake.toml",
    )


def test_an_unauthorized_device_is_a_device_error_that_says_to_accept_the_prompt() -> None:
    # Debian's adbd runs without an auth socket ("authentication not required"), so only a
    # double can list a device as unauthorized, as the adb server does before the RSA prompt.
    server = FakeAdbServer([("R5CT1234", "unauthorized")])
    try:
        with pytest.raises(DeviceError, match="accept the RSA prompt on the phone"):
            AdbConnection.from_profile(fake_profile(server))
    finally:
        server.close()


def test_a_device_without_shell_v2_is_refused() -> None:
    # Every adbd since Android 7 (including Debian's) has shell_v2; only a double lacks it.
    server = FakeAdbServer([("OLD1", "device")], features="cmd,stat_v2")
    try:
        with pytest.raises(DeviceError, match="lacks shell protocol v2"):
            AdbConnection.from_profile(fake_profile(server))
    finally:
        server.close()


# ---- end to end: the whole harness over adb, compared with the local transport ------------

BENCH_ARGS = ["--suite", "smoke", "--workload", "ds_cnn", "--optimizer", "nag", "--kernel", "forloop,fused",
              "--steps", "3", "--warmup", "1", "--check-steps", "2", "--no-report", "--no-probe"]


def bench(profile_toml: Path, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """Run ``python -m harness bench`` on one profile; return its cases, steps and file names."""
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--processes", "1", "--device", str(profile_toml), "--out", str(out), *BENCH_ARGS],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run_dir,) = out.iterdir()
    files = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.parent.name != "logs"}
    return pd.read_parquet(run_dir / "cases.parquet"), pd.read_parquet(run_dir / "steps.parquet"), files


@pytest.mark.slow
def test_bench_over_adb_gives_results_shaped_like_the_local_transport(
    adb_sandbox: AdbSandbox, tmp_path: Path  # noqa: F811
) -> None:
    # The "device" is this host behind adbd, so its Python is this Python; the smoke suite is
    # cut to one workload and two of its NAG kernels, sharing one agent process per transport.
    adb_toml, local_toml = tmp_path / "adb.toml", tmp_path / "local.toml"
    adb_toml.write_text(
        f'name = "adbd-sandbox-e2e"\n[connection]\ntransport = "adb"\nserial = "{adb_sandbox.serial}"\n'
        f'adb_server = "{adb_sandbox.adb_server}"\n[agent]\npython = ["{sys.executable}"]\n'
        f'workdir = "{tmp_path}/adb-work"\n[energy]\nidle_window_s = 0\n'
    )
    local_toml.write_text(
        f'name = "local-ref-adb-e2e"\n[connection]\ntransport = "local"\n[agent]\n'
        f'python = ["{sys.executable}"]\nworkdir = "{tmp_path}/local-work"\n[energy]\nidle_window_s = 0\n'
    )
    adb_cases, adb_steps, adb_files = bench(adb_toml, tmp_path / "adb-out")
    local_cases, local_steps, local_files = bench(local_toml, tmp_path / "local-out")
    assert set(adb_cases["status"]) == {"ok"}
    assert adb_files == local_files
    assert dict(adb_cases.dtypes) == dict(local_cases.dtypes)
    assert dict(adb_steps.dtypes) == dict(local_steps.dtypes)
    assert sorted(adb_cases["case_id"]) == sorted(local_cases["case_id"])
    assert len(adb_steps) == len(local_steps)
