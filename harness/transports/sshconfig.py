"""Reaching an SSH device: host-key trust and logging in, hop by hop.

Aliases are resolved in :mod:`harness.transports.sshroute` (``ssh -G`` when OpenSSH's client
is installed, paramiko's parser otherwise); a value set in the device profile wins over the
config file.

Host keys are checked against a known_hosts file and an unknown key is *refused* unless the
profile says ``trust_new_host_key = true``: a benchmark harness must not silently talk to
whatever answers on the board's address. See
https://docs.paramiko.org/en/stable/api/client.html (MissingHostKeyPolicy) and
https://docs.paramiko.org/en/stable/api/hostkeys.html.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import paramiko

from harness.errors import ConfigError, HarnessError, TransientError
from harness.transports.sshroute import SSH_PORT, Endpoint, Route

log = logging.getLogger(__name__)

def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def load_known_hosts(client: paramiko.SSHClient, path: Path) -> None:
    """Load a known_hosts file into the client (read-only: paramiko never rewrites it)."""
    if not path.is_file():
        return
    try:
        client.get_host_keys().load(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise ConfigError(f"cannot read known_hosts {str(path)!r}: {exc}; fix or move the file") from None


def keyscan_hint(endpoint: Endpoint, known_hosts: Path) -> str:
    port = f"-p {endpoint.port} " if endpoint.port != SSH_PORT else ""
    return f"ssh-keyscan {port}{endpoint.hostname} >> {known_hosts}"


class RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuse a server whose key is not in known_hosts, saying how to trust it."""

    def __init__(self, endpoint: Endpoint, known_hosts: Path, source: str) -> None:
        self.endpoint, self.known_hosts, self.source = endpoint, known_hosts, source

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise ConfigError(
            f"the host key of {hostname} ({key.get_name()} {fingerprint(key)}) is not in "
            f"{self.known_hosts}, so the connection was refused. Compare the fingerprint with "
            f"the device's (on the device: ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub); "
            f"then either set trust_new_host_key = true under [connection] for one run (the key "
            f"is then recorded in {self.known_hosts}), or record it yourself: "
            f"{keyscan_hint(self.endpoint, self.known_hosts)}",
            source=self.source,
            key="connection.trust_new_host_key",
        )


class RecordNewHostKey(paramiko.MissingHostKeyPolicy):
    """Accept an unknown key once and append it to known_hosts (as ``ssh`` does with accept-new)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as out:
            out.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("trusted the new host key of %s (%s %s) and recorded it in %s",
                    hostname, key.get_name(), fingerprint(key), self.known_hosts)


def changed_host_key_error(endpoint: Endpoint, exc: paramiko.BadHostKeyException,
                           known_hosts: Path, source: str) -> ConfigError:
    """The message for a host key that differs from the recorded one."""
    return ConfigError(
        f"the host key of {endpoint.known_hosts_name} has CHANGED: {known_hosts} records "
        f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)} but the server offered "
        f"{exc.key.get_name()} {fingerprint(exc.key)}. This is expected after reinstalling the "
        f"device, and is also what an impostor looks like. If you know why it changed, remove "
        f"the old entry with: ssh-keygen -R '{endpoint.known_hosts_name}' -f {known_hosts} "
        f"and connect again with trust_new_host_key = true",
        source=source,
        key="connection.known_hosts",
    )


def _short(key: paramiko.PKey) -> str:
    name = key.get_name()
    if "ed25519" in name:
        return "ed25519"
    if "ecdsa" in name:
        return "ecdsa"
    return "rsa"


# -- connecting ---------------------------------------------------------------------------

_LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)
T = TypeVar("T")


@dataclass(frozen=True)
class LinkOptions:
    """How to log in: host-key trust, timeouts, key sources, and the profile path for errors."""

    trust_new_host_key: bool = False
    timeout_s: float = 10.0
    keepalive_s: float = 15.0
    allow_agent: bool = True
    look_for_keys: bool = True
    source: str = ""


def with_retries(action: Callable[[], T], *, attempts: int, what: str, first_delay_s: float = 0.5) -> T:
    """Run ``action``; retry a :class:`TransientError` with exponential backoff."""
    delay_s = first_delay_s
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return action()
        except TransientError as exc:
            if attempt >= attempts:
                raise TransientError(f"{exc} (gave up after {attempt} attempts at {what})") from exc
            log.info("%s failed (%s); retrying in %.1f s", what, exc, delay_s)
            time.sleep(delay_s)
            delay_s *= 2
    raise AssertionError("unreachable")


def open_route(route: Route, options: LinkOptions) -> list[paramiko.SSHClient]:
    """Log in to every hop in turn, each through a tunnel from the previous; target last."""
    hops = [*route.jumps, route.target]
    clients: list[paramiko.SSHClient] = []
    sock: paramiko.Channel | None = None
    try:
        for i, hop in enumerate(hops):
            clients.append(_connect_one(hop, sock, route, options))
            if i + 1 < len(hops):
                sock = _tunnel(clients[-1], hop, hops[i + 1], options)
    except BaseException:
        for client in reversed(clients):
            client.close()
        raise
    return clients


def _tunnel(client: paramiko.SSHClient, jump: Endpoint, there: Endpoint, options: LinkOptions) -> paramiko.Channel:
    """A direct-tcpip channel from ``jump`` to the next hop (what ``ssh -J`` does)."""
    try:
        return client.get_transport().open_channel(
            "direct-tcpip", (there.hostname, there.port), ("127.0.0.1", 0), timeout=options.timeout_s)
    except paramiko.ChannelException as exc:
        if exc.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
            raise ConfigError(f"jump host {jump.describe()} refuses TCP forwarding; set "
                              f"AllowTcpForwarding yes in its sshd_config", source=options.source) from None
        raise TransientError(f"jump host {jump.describe()} cannot reach {there.describe()}: {exc}") from exc
    except _LINK_ERRORS as exc:
        raise TransientError(f"jump host {jump.describe()} dropped the link: {exc}") from exc


def _connect_one(hop: Endpoint, sock: paramiko.Channel | None, route: Route,
                 options: LinkOptions) -> paramiko.SSHClient:
    known_hosts = route.known_hosts
    client = paramiko.SSHClient()
    load_known_hosts(client, known_hosts)
    client.set_missing_host_key_policy(
        RecordNewHostKey(known_hosts) if options.trust_new_host_key
        else RefuseUnknownHostKey(hop, known_hosts, options.source))
    if sock is None and hop.proxy_command:
        sock = paramiko.ProxyCommand(hop.proxy_command)
    try:
        client.connect(
            hop.hostname, port=hop.port, username=hop.user,
            key_filename=list(hop.identity_files) or None, timeout=options.timeout_s,
            banner_timeout=options.timeout_s, auth_timeout=options.timeout_s,
            allow_agent=options.allow_agent,
            look_for_keys=options.look_for_keys and not hop.identities_only, sock=sock)
    except Exception as exc:
        transport = client.get_transport()
        half_open = transport is not None and transport.is_active() and not transport.is_authenticated()
        client.close()
        error = _connect_error(hop, exc, half_open, route, options.source)
        raise error from (None if error is exc or isinstance(exc, HarnessError) else exc)
    except BaseException:
        client.close()
        raise
    if options.keepalive_s > 0:
        client.get_transport().set_keepalive(max(1, round(options.keepalive_s)))
    return client


def _connect_error(hop: Endpoint, exc: Exception, half_open: bool, route: Route,
                   source: str) -> Exception:
    """Classify a failed login: configuration (fail fast) or transient (retry with backoff)."""
    if isinstance(exc, HarnessError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return changed_host_key_error(hop, exc, route.known_hosts, source)
    keys = ", ".join(hop.identity_files) or "the default keys in ~/.ssh"
    if isinstance(exc, paramiko.PasswordRequiredException):
        return ConfigError(f"the identity file for {hop.describe()} ({keys}) is encrypted; load it "
                           f"into ssh-agent with ssh-add: the harness never asks for passphrases",
                           source=source, key="connection.identity_file")
    # an SSHException on a link that is up but not logged in means no key was accepted
    if isinstance(exc, paramiko.AuthenticationException) or (half_open and isinstance(exc, paramiko.SSHException)):
        return ConfigError(
            f"authentication failed for {hop.describe()} ({exc}). Check the user, the identity "
            f"file ({keys}; identity_file under [connection] or IdentityFile in ~/.ssh/config), "
            f"that its public key is in ~/.ssh/authorized_keys on the device, or that ssh-agent "
            f"holds it (ssh-add -l){route.limits()}", source=source, key="connection.identity_file")
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"cannot resolve host {hop.hostname!r} ({exc.strerror}); add a 'Host "
                           f"{hop.alias}' entry with its HostName to ~/.ssh/config{route.limits()}",
                           source=source, key="connection.host")
    if isinstance(exc, (*_LINK_ERRORS, paramiko.ProxyCommandFailure)):
        return TransientError(f"cannot reach {hop.describe()}: {exc or type(exc).__name__}; check "
                              f"that the device is on and that `ssh {hop.alias}` works{route.limits()}")
    return exc
