"""Reaching an SSH device: ``~/.ssh/config`` aliases, host-key trust, and logging in.

Aliases are resolved with :class:`paramiko.SSHConfig` the way ``ssh(1)`` resolves them
(HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump, ProxyCommand,
UserKnownHostsFile); a value set in the device profile wins over the config file.
See https://docs.paramiko.org/en/stable/api/config.html and ssh_config(5)
(https://man.openbsd.org/ssh_config) for the keywords and ProxyJump's
``[user@]host[:port]`` hop syntax.

Host keys are checked against a known_hosts file and an unknown key is *refused* unless the
profile says ``trust_new_host_key = true``: a benchmark harness must not silently talk to
whatever answers on the board's address. See
https://docs.paramiko.org/en/stable/api/client.html (MissingHostKeyPolicy) and
https://docs.paramiko.org/en/stable/api/hostkeys.html.
"""

from __future__ import annotations

import base64
import getpass
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

log = logging.getLogger(__name__)

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
SSH_PORT = 22
MAX_JUMPS = 8


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to log in to, after alias resolution."""

    alias: str  # what the user wrote (profile host or ProxyJump hop)
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    proxy_command: str = ""

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts files use: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.hostname if self.port == SSH_PORT else f"[{self.hostname}]:{self.port}"

    def describe(self) -> str:
        via = f" (alias {self.alias!r})" if self.alias != self.hostname else ""
        return f"{self.user}@{self.hostname}:{self.port}{via}"


@dataclass(frozen=True)
class Route:
    """The target and the jump hosts in front of it, first hop first."""

    target: Endpoint
    jumps: tuple[Endpoint, ...]
    known_hosts: Path


def load_ssh_config(path: Path | str | None) -> paramiko.SSHConfig:
    """Parse an ssh_config file; a missing default file is an empty config."""
    cfg_path = Path(path).expanduser() if path is not None else DEFAULT_SSH_CONFIG.expanduser()
    if not cfg_path.is_file():
        if path is not None:
            raise ConfigError(f"no ssh config file at {str(cfg_path)!r}", key="ssh_config")
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(cfg_path))
    except (OSError, paramiko.ConfigParseError) as exc:
        raise ConfigError(f"cannot parse ssh config {str(cfg_path)!r}: {exc}") from None


def _parse_hop(hop: str) -> tuple[str, str, int]:
    """``[ssh://][user@]host[:port]`` -> (user, host, port); empty user / 0 port mean unset."""
    text = hop.strip()
    if text.startswith("ssh://"):
        text = text[len("ssh://"):]
    user, _, hostport = text.rpartition("@")
    host, port = hostport, 0
    if hostport.startswith("["):  # [v6addr]:port
        inner, _, rest = hostport[1:].partition("]")
        host, port_text = inner, rest.lstrip(":")
        port = int(port_text) if port_text else 0
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":")
        if not port_text.isdigit():
            raise ConfigError(f"ProxyJump hop {hop!r} has a bad port; write [user@]host[:port]")
        port = int(port_text)
    if not host:
        raise ConfigError(f"ProxyJump hop {hop!r} names no host; write [user@]host[:port]")
    return user, host, port


def _endpoint(config: paramiko.SSHConfig, alias: str, *, user: str = "", port: int = 0,
              identity_file: str = "") -> tuple[Endpoint, str]:
    """Resolve one alias; explicit values win over the config. Also returns its ProxyJump."""
    entry = config.lookup(alias)
    files = (identity_file,) if identity_file else tuple(entry.get("identityfile", ()))
    resolved = Endpoint(
        alias=alias,
        hostname=entry.get("hostname", alias),
        port=port or int(entry.get("port", SSH_PORT)),
        user=user or entry.get("user", "") or getpass.getuser(),
        identity_files=tuple(os.path.expanduser(f) for f in files),
        identities_only=entry.get("identitiesonly", "no").lower() == "yes",
        proxy_command=entry.get("proxycommand", "") if entry.get("proxycommand", "none") != "none" else "",
    )
    jump = entry.get("proxyjump", "")
    return resolved, "" if jump.lower() == "none" else jump


def resolve_route(
    host: str,
    *,
    port: int = 0,
    user: str = "",
    identity_file: str = "",
    known_hosts: str = "",
    ssh_config: Path | str | None = None,
) -> Route:
    """Resolve a profile's host (alias or name) into the endpoints to connect through.

    Each ProxyJump hop is itself looked up in the config (its HostName, User, Port and keys);
    a hop's own ProxyJump is not followed, as ``ssh -J`` does not either.
    """
    config = load_ssh_config(ssh_config)
    target, jump_spec = _endpoint(config, host, user=user, port=port, identity_file=identity_file)
    jumps: list[Endpoint] = []
    for hop in filter(None, (h.strip() for h in jump_spec.split(","))):
        hop_user, hop_host, hop_port = _parse_hop(hop)
        jumps.append(_endpoint(config, hop_host, user=hop_user, port=hop_port)[0])
    if len(jumps) > MAX_JUMPS:
        raise ConfigError(f"ProxyJump for {host!r} has {len(jumps)} hops; at most {MAX_JUMPS}")
    if jumps and target.proxy_command:
        raise ConfigError(f"{host!r} sets both ProxyJump and ProxyCommand in the ssh config; keep one")
    entry = config.lookup(host)
    config_known = (entry.get("userknownhostsfile") or "").split()
    chosen = known_hosts or (config_known[0] if config_known else "") or str(DEFAULT_KNOWN_HOSTS)
    return Route(target=target, jumps=tuple(jumps), known_hosts=Path(chosen).expanduser())


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
            clients.append(_connect_one(hop, sock, route.known_hosts, options))
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


def _connect_one(hop: Endpoint, sock: paramiko.Channel | None, known_hosts: Path,
                 options: LinkOptions) -> paramiko.SSHClient:
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
        error = _connect_error(hop, exc, half_open, known_hosts, options.source)
        raise error from (None if error is exc or isinstance(exc, HarnessError) else exc)
    except BaseException:
        client.close()
        raise
    if options.keepalive_s > 0:
        client.get_transport().set_keepalive(max(1, round(options.keepalive_s)))
    return client


def _connect_error(hop: Endpoint, exc: Exception, half_open: bool, known_hosts: Path,
                   source: str) -> Exception:
    """Classify a failed login: configuration (fail fast) or transient (retry with backoff)."""
    if isinstance(exc, HarnessError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return changed_host_key_error(hop, exc, known_hosts, source)
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
            f"holds it (ssh-add -l)", source=source, key="connection.identity_file")
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"cannot resolve host {hop.hostname!r} ({exc.strerror}); add a 'Host "
                           f"{hop.alias}' entry with its HostName to ~/.ssh/config",
                           source=source, key="connection.host")
    if isinstance(exc, (*_LINK_ERRORS, paramiko.ProxyCommandFailure)):
        return TransientError(f"cannot reach {hop.describe()}: {exc or type(exc).__name__}; check "
                              f"that the device is on and that `ssh {hop.alias}` works")
    return exc
