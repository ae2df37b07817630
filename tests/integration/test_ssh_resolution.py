"""Host resolution follows OpenSSH: the harness connects exactly where ``ssh ALIAS`` does.

The fixture's real sshd is reached through an ssh_config that uses ``Include``, ``Match`` and
two ``IdentityFile`` lines of which the first does not exist on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.transports.ssh import SSHConnection
from harness.transports.sshroute import OPENSSH, PARAMIKO, expand_proxy_command, resolve_route

pytest.register_assert_rewrite("tests.integration.sshd")
from tests.integration.sshd import SshdServer  # noqa: E402

pytest_plugins = ["tests.integration.sshd"]
pytestmark = pytest.mark.integration

ALIAS = "odt-board"


def write_included_config(tmp_path: Path, server: SshdServer) -> Path:
    """A main config that Includes the alias's file; the port comes from a Match block."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "board.conf").write_text(
        f"Host {ALIAS}\n"
        f"  HostName {server.host}\n"
        f"  User {server.user}\n"
        f"  IdentityFile {tmp_path / 'absent_ed25519'}\n"
        f"  IdentityFile {server.client_key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {server.known_hosts}\n"
        f"Match originalhost {ALIAS}\n"
        f"  Port {server.port}\n"
    )
    main = tmp_path / "ssh_config"
    main.write_text(f"Include {tmp_path / 'conf.d'}/*.conf\nHost *\n  Port 1\n  BatchMode yes\n")
    return main


def server_side(line: str) -> tuple[str, str]:
    """(server address, server port) from $SSH_CONNECTION."""
    words = line.split()
    return words[2], words[3]


def test_include_match_and_a_missing_first_identity_connect_where_ssh_does(
    sshd_server: SshdServer, tmp_path: Path,
) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client is not installed")
    config = write_included_config(tmp_path, sshd_server)
    by_ssh = subprocess.run(["ssh", "-F", str(config), ALIAS, "echo $SSH_CONNECTION; id -un"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert by_ssh.returncode == 0, by_ssh.stderr
    lines: list[str] = []
    with SSHConnection(ALIAS, ssh_config=config, allow_agent=False, look_for_keys=False,
                       connect_attempts=1) as conn:
        assert conn.route.resolver == OPENSSH
        assert conn.route.target.identity_files == (str(sshd_server.client_key),)
        result = conn.run(["sh", "-c", "echo $SSH_CONNECTION; id -un"], deadline_s=30,
                          on_stdout_line=lines.append)
    assert result.ok
    want = by_ssh.stdout.splitlines()
    assert server_side(lines[0]) == server_side(want[0]) == (sshd_server.host, str(sshd_server.port))
    assert lines[1] == want[1] == sshd_server.user


def test_the_paramiko_fallback_names_its_limits_when_an_included_alias_is_not_found(
    sshd_server: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARNESS_SSH_RESOLVER", PARAMIKO)
    config = write_included_config(tmp_path, sshd_server)
    route = resolve_route(ALIAS, ssh_config=config)
    assert route.resolver == PARAMIKO
    with pytest.raises(ConfigError, match="does not follow Include.*install openssh-client"):
        SSHConnection(f"{ALIAS}.invalid", ssh_config=config, allow_agent=False, look_for_keys=False,
                      connect_attempts=3)


def test_the_paramiko_fallback_skips_a_missing_identity_file_too(
    sshd_server: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARNESS_SSH_RESOLVER", PARAMIKO)
    config = tmp_path / "flat_config"
    config.write_text((write_included_config(tmp_path, sshd_server).parent / "conf.d" / "board.conf")
                      .read_text().replace(f"Match originalhost {ALIAS}\n", ""))
    with SSHConnection(ALIAS, ssh_config=config, allow_agent=False, look_for_keys=False,
                       connect_attempts=1) as conn:
        lines: list[str] = []
        assert conn.run(["echo", "in"], deadline_s=30, on_stdout_line=lines.append).ok
    assert lines == ["in"]


def test_a_profile_identity_file_that_does_not_exist_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="connection.identity_file.*does not exist"):
        resolve_route("somewhere", identity_file=str(tmp_path / "nope"), ssh_config=None)


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/pwned", "a b", "x\ny", ""])
def test_a_host_that_could_be_read_as_an_option_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="connection.host"):
        resolve_route(host)


def test_proxy_command_tokens_are_expanded() -> None:
    assert expand_proxy_command("nc %h %p # %r %n %% %x", "10.0.0.2", 2222, "pi", "rpi") == \
        "nc 10.0.0.2 2222 # pi rpi % %x"


def test_an_unknown_host_key_exits_2_at_once_and_leaves_a_not_run_row(sshd_server: SshdServer, tmp_path: Path) -> None:
    import json
    import os
    import sys

    import pandas as pd

    (tmp_path / "empty_known_hosts").write_text("")
    profile = tmp_path / "stranger.toml"
    profile.write_text(
        'name = "stranger"\n[connection]\ntransport = "ssh"\n'
        f'host = "{sshd_server.host}"\nport = {sshd_server.port}\nuser = "{sshd_server.user}"\n'
        f'identity_file = "{sshd_server.client_key}"\nknown_hosts = "{tmp_path / "empty_known_hosts"}"\n'
        f'[agent]\npython = ["{sys.executable}"]\nworkdir = "{tmp_path / "w"}"\n')
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--device", str(profile), "--suite", "smoke", "--workload",
         "bert_tiny", "--optimizer", "nag", "--kernel", "forloop", "--no-report", "--no-probe", "--out", str(tmp_path / "r"),
         "--run-id", "refused"], cwd=repo, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HARNESS_LOCK_DIR": str(tmp_path / "locks")})
    assert proc.returncode == 2, proc.stderr
    assert "not in" in proc.stderr and "trust_new_host_key" in proc.stderr
    run_dir = tmp_path / "r" / "refused"
    events = [json.loads(line) for line in (run_dir / "raw.jsonl").read_text().splitlines()]
    assert not [e for e in events if e.get("status") == "transient"]  # no retries
    cases = pd.read_parquet(run_dir / "cases.parquet")
    assert len(cases) >= 1  # one row per planned process of the case
    assert set(cases["status"]) == {"not-run"} and set(cases["error_kind"]) == {"config-error"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["device_outcomes"][0]["status"] == "config-error"
