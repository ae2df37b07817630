"""Resolving a profile's ssh host into the endpoints to log in to, as ``ssh(1)`` would.

When the OpenSSH client is installed, the answer comes from ``ssh -G ALIAS`` (OpenSSH
prints the configuration it would use without connecting), so ``Include``, ``Match``,
``CanonicalizeHostname``, ``/etc/ssh/ssh_config`` and the first-value-wins rules are exactly
OpenSSH's. Identity files are tried in the config's order, and files that do not exist on
this machine are skipped, as ``ssh`` skips them.

Without the OpenSSH client, paramiko's :class:`paramiko.SSHConfig` reads ``~/.ssh/config``
alone. Its limits (no ``Include``, ``Match`` only in part, no ``/etc/ssh/ssh_config``) are
named in the messages that may stem from them and in docs/ssh.md.

A value set in the device profile (port, user, identity_file, known_hosts) wins over the
config. ProxyJump hops are ``[ssh://][user@]host[:port]``, each resolved the same way;
a hop's own ProxyJump is not followed.
References: ssh(1) ``-G``, ssh_config(5) (https://man.openbsd.org/ssh_config),
https://docs.paramiko.org/en/stable/api/config.html.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
SSH_PORT = 22
MAX_JUMPS = 8
OPENSSH = "openssh"  # Route.resolver values
PARAMIKO = "paramiko"
PARAMIKO_LIMITS = ("the OpenSSH client (ssh) is not installed, so ~/.ssh/config was read by "
                   "paramiko's parser, which does not follow Include, evaluates Match only in part "
                   "and ignores /etc/ssh/ssh_config; install openssh-client to resolve hosts exactly "
                   "as ssh does")


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to log in to, after alias resolution."""

    alias: str  # what the user wrote (profile host or ProxyJump hop)
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()  # existing files only, in the config's order
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
    resolver: str = OPENSSH  # which parser read the config: "openssh" (ssh -G) or "paramiko"

    def limits(self) -> str:
        """A sentence naming the resolver's limits, for messages; "" for OpenSSH's own."""
        return f" (note: {PARAMIKO_LIMITS})" if self.resolver == PARAMIKO else ""


def openssh_client() -> str | None:
    """The OpenSSH client's path, or None; ``HARNESS_SSH_RESOLVER=paramiko`` forces the fallback."""
    if os.environ.get("HARNESS_SSH_RESOLVER", "") == PARAMIKO:
        return None
    return shutil.which("ssh")


def _config_path(path: Path | str | None) -> Path | None:
    """The explicit config file (checked to exist), or None for the default ones."""
    if path is None:
        return None
    cfg_path = Path(path).expanduser()
    if not cfg_path.is_file():
        raise ConfigError(f"no ssh config file at {str(cfg_path)!r}", key="ssh_config")
    return cfg_path


def _check_name(name: str, what: str) -> None:
    if not name or name.startswith("-") or any(c.isspace() or ord(c) < 32 for c in name):
        raise ConfigError(f"{what} {name!r} is not a host name or ssh alias (it is empty, starts with '-' "
                          "or holds whitespace or control characters)", key="connection.host")


def existing_identities(files: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The identity files that exist here, in order; missing ones are skipped as ssh skips them."""
    expanded = [os.path.expanduser(f) for f in files]
    kept = tuple(f for f in expanded if os.path.isfile(f))
    for missing in sorted(set(expanded) - set(kept)):
        log.debug("identity file %s does not exist here; skipped as ssh skips it", missing)
    return kept


def expand_proxy_command(command: str, hostname: str, port: int, user: str, alias: str) -> str:
    """Expand ssh_config's %h %p %r %n %% tokens in a ProxyCommand (ssh -G leaves them)."""
    out, i = [], 0
    tokens = {"h": hostname, "p": str(port), "r": user, "n": alias, "%": "%"}
    while i < len(command):
        if command[i] == "%" and i + 1 < len(command) and command[i + 1] in tokens:
            out.append(tokens[command[i + 1]])
            i += 2
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


# -- OpenSSH: ssh -G -----------------------------------------------------------------------

def openssh_options(ssh: str, alias: str, *, user: str, port: int, config: Path | None) -> dict[str, list[str]]:
    """``ssh -G``'s answer for ``alias``: option name (lower case) -> values in order."""
    argv = [ssh, "-G", *(["-F", str(config)] if config else []), *(["-l", user] if user else []),
            *(["-p", str(port)] if port else []), "--", alias]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"`{' '.join(argv)}` could not run: {exc}", key="connection.host") from None
    if proc.returncode != 0:
        why = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ConfigError(f"OpenSSH cannot read the ssh config for {alias!r}: {why}; check it with "
                          f"`ssh -G {alias}`", key="connection.host")
    options: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key.lower(), []).append(value.strip())
    return options


def _openssh_endpoint(ssh: str, alias: str, config: Path | None, *, user: str = "", port: int = 0,
                      identity_file: str = "") -> tuple[Endpoint, str, list[str]]:
    """One alias through ssh -G: (endpoint, its ProxyJump, its UserKnownHostsFile list)."""
    opts = openssh_options(ssh, alias, user=user, port=port, config=config)

    def one(key: str, default: str = "") -> str:
        return (opts.get(key) or [default])[0]

    hostname, real_port, real_user = one("hostname", alias), int(one("port", str(SSH_PORT))), one("user")
    proxy = one("proxycommand", "none")
    files = [identity_file] if identity_file else opts.get("identityfile", [])
    endpoint = Endpoint(
        alias=alias, hostname=hostname, port=real_port, user=real_user or getpass.getuser(),
        identity_files=existing_identities(files),
        identities_only=one("identitiesonly", "no").lower() == "yes",
        proxy_command="" if proxy.lower() == "none" else expand_proxy_command(
            proxy, hostname, real_port, real_user, alias),
    )
    jump = one("proxyjump", "none")
    known = " ".join(opts.get("userknownhostsfile", [])).split()
    return endpoint, "" if jump.lower() == "none" else jump, known


# -- paramiko's parser (fallback) ----------------------------------------------------------

def load_ssh_config(path: Path | str | None) -> paramiko.SSHConfig:
    """Parse an ssh_config file with paramiko; a missing default file is an empty config."""
    cfg_path = _config_path(path) or DEFAULT_SSH_CONFIG.expanduser()
    if not cfg_path.is_file():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(cfg_path))
    except (OSError, paramiko.ConfigParseError) as exc:
        raise ConfigError(f"cannot parse ssh config {str(cfg_path)!r}: {exc} (note: {PARAMIKO_LIMITS})") from None


def _paramiko_endpoint(config: paramiko.SSHConfig, alias: str, *, user: str = "", port: int = 0,
                       identity_file: str = "") -> tuple[Endpoint, str, list[str]]:
    entry = config.lookup(alias)
    files = [identity_file] if identity_file else list(entry.get("identityfile", ()))
    proxy = entry.get("proxycommand", "none")
    endpoint = Endpoint(
        alias=alias,
        hostname=entry.get("hostname", alias),
        port=port or int(entry.get("port", SSH_PORT)),
        user=user or entry.get("user", "") or getpass.getuser(),
        identity_files=existing_identities(files),
        identities_only=entry.get("identitiesonly", "no").lower() == "yes",
        proxy_command="" if proxy.lower() == "none" else proxy,
    )
    jump = entry.get("proxyjump", "")
    return endpoint, "" if jump.lower() == "none" else jump, (entry.get("userknownhostsfile") or "").split()


def parse_hop(hop: str) -> tuple[str, str, int]:
    """``[ssh://][user@]host[:port]`` -> (user, host, port); empty user / 0 port mean unset."""
    text = hop.strip()
    if text.startswith("ssh://"):
        text = text[len("ssh://"):]
    user, _, hostport = text.rpartition("@")
    host, port = hostport, 0
    if hostport.startswith("["):  # [v6addr]:port
        inner, _, rest = hostport[1:].partition("]")
        host, port_text = inner, rest.lstrip(":")
        if port_text and not port_text.isdigit():
            raise ConfigError(f"ProxyJump hop {hop!r} has a bad port; write [user@]host[:port]")
        port = int(port_text) if port_text else 0
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":")
        if not port_text.isdigit():
            raise ConfigError(f"ProxyJump hop {hop!r} has a bad port; write [user@]host[:port]")
        port = int(port_text)
    if not host:
        raise ConfigError(f"ProxyJump hop {hop!r} names no host; write [user@]host[:port]")
    if not 0 <= port <= 65535:
        raise ConfigError(f"ProxyJump hop {hop!r} has port {port}, outside 1..65535")
    return user, host, port


def resolve_route(
    host: str,
    *,
    port: int = 0,
    user: str = "",
    identity_file: str = "",
    known_hosts: str = "",
    ssh_config: Path | str | None = None,
) -> Route:
    """Resolve a profile's host (alias or name) into the endpoints to connect through."""
    _check_name(host, "host")
    if identity_file and not os.path.isfile(os.path.expanduser(identity_file)):
        raise ConfigError(f"identity file {identity_file!r} does not exist on this machine; fix the "
                          "path or remove the key to use the ssh config's IdentityFile lines",
                          key="connection.identity_file")
    config_file = _config_path(ssh_config)
    ssh = openssh_client()
    if ssh is not None:
        def lookup(alias: str, **kw: object) -> tuple[Endpoint, str, list[str]]:
            return _openssh_endpoint(ssh, alias, config_file, **kw)  # type: ignore[arg-type]
    else:
        parsed = load_ssh_config(config_file)

        def lookup(alias: str, **kw: object) -> tuple[Endpoint, str, list[str]]:
            return _paramiko_endpoint(parsed, alias, **kw)  # type: ignore[arg-type]

    target, jump_spec, config_known = lookup(host, user=user, port=port, identity_file=identity_file)
    jumps: list[Endpoint] = []
    for hop in filter(None, (h.strip() for h in jump_spec.split(","))):
        hop_user, hop_host, hop_port = parse_hop(hop)
        _check_name(hop_host, "ProxyJump hop")
        jumps.append(lookup(hop_host, user=hop_user, port=hop_port)[0])
    if len(jumps) > MAX_JUMPS:
        raise ConfigError(f"ProxyJump for {host!r} has {len(jumps)} hops; at most {MAX_JUMPS}")
    if jumps and target.proxy_command:
        raise ConfigError(f"{host!r} sets both ProxyJump and ProxyCommand in the ssh config; keep one")
    chosen = known_hosts or (config_known[0] if config_known else "") or str(DEFAULT_KNOWN_HOSTS)
    return Route(target=target, jumps=tuple(jumps), known_hosts=Path(chosen).expanduser(),
                 resolver=OPENSSH if ssh is not None else PARAMIKO)
