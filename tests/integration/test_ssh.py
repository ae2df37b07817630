"""The ssh transport against a real OpenSSH server on 127.0.0.1 (see tests/integration/sshd.py).

The server runs on this machine, so "server side" checks (is a process left? was a file
created?) look at this machine directly.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import ConfigError, TransientError
from harness.transports.base import STDERR_TAIL_BYTES, Connection
from harness.transports.ssh import SSHConnection

pytest.register_assert_rewrite("tests.integration.sshd")
from tests.conftest import account_home  # noqa: E402
from tests.integration.sshd import SshdServer, free_port, keygen  # noqa: E402

# the sshd fixtures (sshd_server, ssh_conn) live in tests/integration/sshd.py
pytest_plugins = ["tests.integration.sshd"]
pytestmark = pytest.mark.integration

TEN_MB = 10 * 1024 * 1024


def run_lines(conn: SSHConnection, argv: list[str], **kwargs: object) -> tuple[object, list[str]]:
    lines: list[str] = []
    result = conn.run(argv, deadline_s=kwargs.pop("deadline_s", 30.0), on_stdout_line=lines.append,
                      **kwargs)  # type: ignore[arg-type]
    return result, lines


def remote_processes_matching(marker: str, wait_s: float = 5.0) -> list[str]:
    """Command lines of processes on the server that contain ``marker`` (polls until none)."""
    end = time.monotonic() + wait_s
    while True:
        found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout.splitlines()
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.1)


def ssh_fingerprint(pub_key: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub_key)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


# -- running commands ------------------------------------------------------------------------


def test_an_ssh_connection_satisfies_the_connection_protocol(ssh_conn: SSHConnection) -> None:
    assert isinstance(ssh_conn, Connection)
    assert ssh_conn.name == "ssh"


def test_run_reports_the_exit_code(ssh_conn: SSHConnection) -> None:
    result, _ = run_lines(ssh_conn, ["sh", "-c", "exit 7"])
    assert (result.exit_code, result.timed_out, result.ok) == (7, False, False)


def test_run_streams_stdout_lines_in_order(ssh_conn: SSHConnection) -> None:
    result, lines = run_lines(ssh_conn, ["sh", "-c", "echo one; echo two; printf three"])
    assert result.ok
    assert lines == ["one", "two", "three"]


def test_stderr_is_kept_without_the_wrappers_pid_line(ssh_conn: SSHConnection) -> None:
    result, _ = run_lines(ssh_conn, ["sh", "-c", "echo oops >&2"])
    assert result.stderr == "oops\n"


def test_stdin_is_delivered_to_the_command(ssh_conn: SSHConnection) -> None:
    payload = b'{"case": "smoke"}\nsecond line\n'
    _, lines = run_lines(ssh_conn, ["cat"], stdin=payload)
    assert lines == ['{"case": "smoke"}', "second line"]


def test_env_and_cwd_are_applied(ssh_conn: SSHConnection, tmp_path: Path) -> None:
    value = "a b 'c' \"d\" $HOME"
    _, lines = run_lines(ssh_conn, ["sh", "-c", 'pwd; printf "%s\\n" "$ODT_VALUE"'],
                         cwd=str(tmp_path), env={"ODT_VALUE": value})
    assert lines == [str(tmp_path), value]


def test_ten_megabytes_of_stdout_arrive_without_a_hang(ssh_conn: SSHConnection) -> None:
    line = "x" * 1023
    received = []
    result = ssh_conn.run(["sh", "-c", f"yes {line} | head -c {TEN_MB}"], deadline_s=120,
                          on_stdout_line=lambda text: received.append(len(text) + 1))
    assert result.ok
    assert sum(received) == TEN_MB


def test_ten_megabytes_of_stderr_do_not_block_the_command(ssh_conn: SSHConnection) -> None:
    result, lines = run_lines(ssh_conn, ["sh", "-c", f"yes {'e' * 1023} | head -c {TEN_MB} >&2; echo done"],
                              deadline_s=120)
    assert result.ok and lines == ["done"]
    assert len(result.stderr) == STDERR_TAIL_BYTES


def test_a_deadline_kills_the_whole_remote_process_tree(ssh_conn: SSHConnection) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"  # a sleep duration nobody else uses
    result, _ = run_lines(ssh_conn, ["sh", "-c", 'sleep "$1" & sleep "$1" & echo started; wait', "sh", marker],
                          deadline_s=1.0)
    assert result.timed_out and result.exit_code is None and result.signal == signal.SIGKILL
    assert remote_processes_matching(marker) == []


def test_ctrl_c_kills_the_remote_process_tree(ssh_conn: SSHConnection) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    main = threading.main_thread().ident

    def interrupt_when_started(line: str) -> None:
        if line == "started":
            signal.pthread_kill(main, signal.SIGINT)

    # Python's own Ctrl-C handler, as in a user's terminal (pytest-xdist workers ignore SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            ssh_conn.run(["sh", "-c", 'sleep "$1" & sleep "$1" & echo started; wait', "sh", marker],
                         deadline_s=60, on_stdout_line=interrupt_when_started)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert remote_processes_matching(marker) == []


def test_an_error_in_the_line_sink_stops_the_command_and_is_raised(ssh_conn: SSHConnection) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"

    def reject(line: str) -> None:
        raise ValueError(f"bad line {line!r}")

    with pytest.raises(ValueError, match="bad line 'started'"):
        ssh_conn.run(["sh", "-c", 'echo started; sleep "$1"', "sh", marker], deadline_s=60,
                     on_stdout_line=reject)
    assert remote_processes_matching(marker) == []


def test_children_left_behind_by_a_finished_command_are_killed(ssh_conn: SSHConnection) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    result, lines = run_lines(ssh_conn, ["sh", "-c", 'sleep "$1" & echo done', "sh", marker])
    assert result.ok and lines == ["done"]
    assert remote_processes_matching(marker) == []


def test_a_command_killed_by_a_signal_has_no_exit_code(ssh_conn: SSHConnection) -> None:
    result, _ = run_lines(ssh_conn, ["sh", "-c", "kill -TERM $$"])
    assert result.exit_code is None and not result.timed_out and not result.ok


def test_a_link_that_drops_mid_command_is_a_transient_error(ssh_conn: SSHConnection) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"

    def drop_the_link(line: str) -> None:  # the line is the pid of sshd's session process
        os.kill(int(line), signal.SIGKILL)

    try:
        with pytest.raises(TransientError, match="dropped while running"):
            ssh_conn.run(["sh", "-c", 'echo $PPID; exec sleep "$1"', "sh", marker], deadline_s=60,
                         on_stdout_line=drop_the_link)
    finally:  # the harness cannot reach the device any more; clean up as its owner would
        for line in remote_processes_matching(marker, wait_s=0):
            os.kill(int(line.split()[0]), signal.SIGKILL)


HOSTILE = [
    "; rm -rf {victim}",
    "$(touch {pwned})",
    "`touch {pwned}`",
    "a\nb; touch {pwned}",
    "it's \"quoted\" \\ and 'single'",
    "${{HOME}} $PATH * ? [a] ~ &|<>",
    "ünïcödé ✓ 中文",
    "-n",
    "",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_argv_values_arrive_verbatim_and_run_nothing(
    ssh_conn: SSHConnection, tmp_path: Path, template: str
) -> None:
    victim, pwned = tmp_path / "victim", tmp_path / "pwned"
    victim.write_text("still here")
    value = template.format(victim=victim, pwned=pwned)
    _, lines = run_lines(ssh_conn, ["printf", "%s\\n", value], cwd=str(tmp_path))
    assert "\n".join(lines) == value
    assert victim.exists() and not pwned.exists()


def test_a_leading_tilde_in_argv_means_the_remote_home(ssh_conn: SSHConnection) -> None:
    _, lines = run_lines(ssh_conn, ["printf", "%s\\n", "~/x"])
    assert lines == [str(account_home() / "x")]


# -- files ------------------------------------------------------------------------------------


def test_push_creates_parent_directories_and_returns_the_size(ssh_conn: SSHConnection, tmp_path: Path) -> None:
    local = tmp_path / "bundle.pyz"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    remote = tmp_path / "device" / "deep" / "bundle.pyz"
    assert ssh_conn.push(local, str(remote)) == local.stat().st_size
    assert hashlib.sha256(remote.read_bytes()).digest() == hashlib.sha256(local.read_bytes()).digest()
    assert sorted(p.name for p in remote.parent.iterdir()) == ["bundle.pyz"]  # no .part left


def test_push_replaces_an_existing_file(ssh_conn: SSHConnection, tmp_path: Path) -> None:
    local, remote = tmp_path / "new", tmp_path / "remote"
    local.write_bytes(b"new contents")
    remote.write_bytes(b"old contents that are longer")
    ssh_conn.push(local, str(remote))
    assert remote.read_bytes() == b"new contents"


def test_pull_copies_the_remote_file_intact(ssh_conn: SSHConnection, tmp_path: Path) -> None:
    remote = tmp_path / "raw.jsonl"
    remote.write_bytes(os.urandom(1024 * 1024))
    local = tmp_path / "host" / "raw.jsonl"
    ssh_conn.pull(str(remote), local)
    assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(remote.read_bytes()).digest()


def test_a_leading_tilde_in_a_remote_path_means_the_remote_home(ssh_conn: SSHConnection, tmp_path: Path) -> None:
    name = f".cache/odt-ssh-test-{uuid.uuid4().hex}"
    local = tmp_path / "f"
    local.write_text("home")
    try:
        ssh_conn.push(local, f"~/{name}/f")
        assert (account_home() / name / "f").read_text() == "home"
        assert ssh_conn.exists(f"~/{name}/f")
    finally:
        subprocess.run(["rm", "-rf", str(account_home() / name)], check=True)


def test_read_text_and_exists(ssh_conn: SSHConnection, tmp_path: Path) -> None:
    (tmp_path / "zone_temp").write_text("45000\n")
    assert ssh_conn.read_text(str(tmp_path / "zone_temp")) == "45000\n"
    assert ssh_conn.exists(str(tmp_path / "zone_temp"))
    assert not ssh_conn.exists(str(tmp_path / "missing"))


def test_read_text_of_a_missing_file_raises_file_not_found(ssh_conn: SSHConnection, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ssh_conn.read_text(str(tmp_path / "missing"))


# -- host keys and authentication -----------------------------------------------------------


def test_an_unknown_host_key_is_refused_with_the_fingerprint_and_the_fix(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(ConfigError) as caught:
        sshd_server.connect(known_hosts=str(empty))
    message = str(caught.value)
    assert ssh_fingerprint(sshd_server.workdir / "host_ed25519.pub") in message
    assert "trust_new_host_key = true" in message
    assert f"ssh-keyscan -p {sshd_server.port} 127.0.0.1 >> {empty}" in message
    assert empty.read_text() == ""


def test_trust_new_host_key_records_the_key_in_known_hosts(sshd_server: SshdServer, tmp_path: Path) -> None:
    known = tmp_path / "new" / "known_hosts"
    sshd_server.connect(known_hosts=str(known), trust_new_host_key=True).close()
    assert known.read_text() == f"[127.0.0.1]:{sshd_server.port} {sshd_server.host_key_line}\n"
    sshd_server.connect(known_hosts=str(known)).close()  # now trusted without the flag


def test_a_changed_host_key_is_refused(sshd_server: SshdServer, tmp_path: Path) -> None:
    other = keygen(tmp_path / "impostor", "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {other}\n")
    with pytest.raises(ConfigError, match="has CHANGED") as caught:
        sshd_server.connect(known_hosts=str(known), trust_new_host_key=True)
    assert ssh_fingerprint(tmp_path / "impostor.pub") in str(caught.value)
    assert "ssh-keygen -R" in str(caught.value)


def test_an_unauthorized_key_fails_authentication_naming_user_host_and_key(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    keygen(tmp_path / "stranger", "stranger")
    with pytest.raises(ConfigError, match="authentication failed") as caught:
        sshd_server.connect(identity_file=str(tmp_path / "stranger"))
    message = str(caught.value)
    assert f"{sshd_server.user}@127.0.0.1:{sshd_server.port}" in message
    assert str(tmp_path / "stranger") in message


def test_a_refused_port_is_a_transient_error(sshd_server: SshdServer) -> None:
    with pytest.raises(TransientError, match="cannot reach"):
        sshd_server.connect(port=free_port(), connect_attempts=2)


# -- ~/.ssh/config ----------------------------------------------------------------------------


def write_ssh_config(path: Path, server: SshdServer, *, port: int, extra: str = "") -> Path:
    path.write_text(
        f"Host jump\n  HostName 127.0.0.1\n  Port {server.port}\n  IdentityFile {server.client_key}\n"
        f"Host board\n  HostName 127.0.0.1\n  Port {port}\n  User {server.user}\n"
        f"  IdentityFile {server.client_key}\n{extra}"
    )
    return path


def connect_alias(server: SshdServer, config: Path, **overrides: object) -> SSHConnection:
    return SSHConnection("board", ssh_config=config, known_hosts=str(server.known_hosts),
                         allow_agent=False, look_for_keys=False, connect_attempts=1, **overrides)


def test_a_host_alias_is_resolved_from_the_ssh_config(sshd_server: SshdServer, tmp_path: Path) -> None:
    config = write_ssh_config(tmp_path / "config", sshd_server, port=sshd_server.port)
    with connect_alias(sshd_server, config) as conn:
        result, lines = run_lines(conn, ["echo", "via alias"])
    assert lines == ["via alias"]


def test_the_profiles_port_overrides_the_ssh_config(sshd_server: SshdServer, tmp_path: Path) -> None:
    config = write_ssh_config(tmp_path / "config", sshd_server, port=free_port())
    with connect_alias(sshd_server, config, port=sshd_server.port) as conn:
        assert conn.route.target.port == sshd_server.port


def test_proxy_jump_tunnels_through_the_jump_host(sshd_server: SshdServer, tmp_path: Path) -> None:
    config = write_ssh_config(tmp_path / "config", sshd_server, port=sshd_server.port,
                              extra="  ProxyJump jump\n")
    log = sshd_server.workdir / "sshd.log"
    tunnels_before = log.read_text().count("server_request_direct_tcpip")
    with connect_alias(sshd_server, config) as conn:
        _, lines = run_lines(conn, ["echo", "via jump"])
    assert lines == ["via jump"]
    assert log.read_text().count("server_request_direct_tcpip") == tunnels_before + 1


# -- end to end: `harness bench` over ssh ----------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
# one case of the smoke suite keeps three runs (ssh, ssh again, local) to about a minute
E2E_FILTERS = ("--suite", "smoke", "--workload", "bert_tiny", "--optimizer", "nag", "--kernel", "forloop",
               "--check-steps", "0",
               "--steps", "3", "--warmup", "1", "--no-report", "--no-probe")
PUSHED = re.compile(r"bundle agent-\w+\.pyz: (\d+) bytes pushed")


def write_loopback_profile(path: Path, server: SshdServer, workdir: Path) -> Path:
    """A device profile that reaches this machine through the fixture's sshd."""
    path.write_text(
        'name = "ssh-loopback"\n'
        "[connection]\n"
        f'transport = "ssh"\nhost = "127.0.0.1"\nport = {server.port}\nuser = "{server.user}"\n'
        f'identity_file = "{server.client_key}"\nknown_hosts = "{server.known_hosts}"\n'
        "[agent]\n"
        f'python = ["{sys.executable}"]\nworkdir = "{workdir}"\n'
        "[energy]\n"
        'meter = "auto"\nidle_window_s = 0\n'
    )
    return path


def harness_bench(device: str, out: Path, run_id: str, lock_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_LOCK_DIR": str(lock_dir)}  # others' runs on "local" do not block ours
    return subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--processes", "1", "--isolate", "--device", device, *E2E_FILTERS, "--out", str(out),
         "--run-id", run_id], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def bench_runs(sshd_server: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Two `harness bench` runs over ssh and one local run of the same plan."""
    tmp = tmp_path_factory.mktemp("bench-over-ssh")
    profile = write_loopback_profile(tmp / "ssh-loopback.toml", sshd_server, tmp / "device")
    out, locks = tmp / "results", tmp / "locks"
    runs = {}
    for run_id, device in (("ssh-1", str(profile)), ("ssh-2", str(profile)), ("local", "local")):
        runs[run_id] = (out / run_id, harness_bench(device, out, run_id, locks))
    return runs


@pytest.mark.slow
def test_a_bench_run_over_ssh_finishes_every_case_ok(bench_runs: dict[str, tuple]) -> None:
    run_dir, proc = bench_runs["ssh-1"]
    assert proc.returncode == 0, proc.stderr
    cases = pd.read_parquet(run_dir / "cases.parquet")
    assert len(cases) == 1 and set(cases["status"]) == {"ok"}
    assert len(pd.read_parquet(run_dir / "steps.parquet")) > 0


@pytest.mark.slow
def test_results_over_ssh_have_the_columns_of_a_local_run(bench_runs: dict[str, tuple]) -> None:
    (ssh_dir, _), (local_dir, local) = bench_runs["ssh-1"], bench_runs["local"]
    assert local.returncode == 0, local.stderr
    for table in ("steps.parquet", "cases.parquet"):
        assert list(pd.read_parquet(ssh_dir / table).columns) == list(pd.read_parquet(local_dir / table).columns)


@pytest.mark.slow
def test_a_second_run_over_ssh_pushes_no_bundle_bytes(bench_runs: dict[str, tuple]) -> None:
    (_, first), (_, second) = bench_runs["ssh-1"], bench_runs["ssh-2"]
    assert second.returncode == 0, second.stderr
    assert int(PUSHED.search(first.stderr).group(1)) > 0
    assert int(PUSHED.search(second.stderr).group(1)) == 0
