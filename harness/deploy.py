"""Ship the agent: the ``workloads`` package as one zipapp named by its content hash.

The bundle is rebuilt only when a source file changes, and pushed to the device only when
a file of that name is not already in the profile's work directory.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DeviceError, HarnessError
from harness.profiles import Profile
from harness.transports.base import Connection

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "workloads"
CACHE_DIR = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "odt-harness"))
_MAIN = b"from workloads.agent import leave, main\nleave(main())\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    path: Path
    digest: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Deployment:
    """Where the agent lives on a device and how to start it."""

    workdir: str
    bundle_path: str
    python: tuple[str, ...]
    bytes_pushed: int

    def argv(self, command: str) -> list[str]:
        return [*self.python, self.bundle_path, command]


def _sources(package_dir: Path) -> list[Path]:
    return sorted(
        p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts
    )


def build_bundle(package_dir: Path = PACKAGE_DIR, cache_dir: Path = CACHE_DIR) -> Bundle:
    """Zip the package deterministically; the name carries the hash of its content."""
    files = _sources(package_dir)
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(package_dir.parent).as_posix()
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    short = digest.hexdigest()[:16]
    target = cache_dir / "bundles" / f"agent-{short}.pyz"
    if target.is_file():
        return Bundle(target, short)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("__main__.py", _EPOCH), _MAIN)
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(package_dir.parent).as_posix(), _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        tmp.write(buf.getvalue())
    os.replace(tmp.name, target)
    return Bundle(target, short)


def host_python(profile: Profile) -> tuple[str, ...]:
    """The profile's agent python, with ``@host`` meaning the Python running the harness."""
    import sys

    return tuple(sys.executable if part == "@host" else part for part in profile.agent.python)


def resolve_workdir(conn: Connection, python: tuple[str, ...], workdir: str) -> str:
    """Ask the device's Python for the absolute work directory (expanding ``~``), creating it.

    This is also the first check that the profile's Python runs at all.
    """
    lines: list[str] = []
    code = (
        "import os,sys;d=os.path.abspath(os.path.expanduser(sys.argv[1]));"
        "os.makedirs(d,exist_ok=True);print(d)"
    )
    result = conn.run([*python, "-c", code, workdir], deadline_s=60, on_stdout_line=lines.append)
    if not result.ok or not lines:
        raise DeviceError(
            f"the device's python {' '.join(python)!r} could not prepare the work directory "
            f"{workdir!r} (exit {result.exit_code}): {result.stderr.strip()[-500:]}; "
            "check [agent].python and [agent].workdir in the profile"
        )
    return lines[-1].strip()


def free_bytes(conn: Connection, python: tuple[str, ...], directory: str) -> int | None:
    """Bytes free for this user under ``directory`` on the device; None when it cannot say."""
    lines: list[str] = []
    code = "import os,sys;s=os.statvfs(sys.argv[1]);print(s.f_bavail*s.f_frsize)"
    result = conn.run([*python, "-c", code, directory], deadline_s=60, on_stdout_line=lines.append)
    try:
        return int(lines[-1]) if result.ok and lines else None
    except ValueError:
        return None


def deploy(conn: Connection, profile: Profile, bundle: Bundle) -> Deployment:
    """Make sure the bundle is on the device; push it only when that hash is not there."""
    python = host_python(profile)
    workdir = resolve_workdir(conn, python, profile.agent.workdir)
    remote = f"{workdir.rstrip('/')}/{bundle.name}"
    if conn.exists(remote):
        log.info("bundle %s already on %s: 0 bytes pushed", bundle.name, profile.name)
        return Deployment(workdir, remote, python, 0)
    try:
        sent = conn.push(bundle.path, remote)
    except (OSError, HarnessError) as exc:  # sftp says only "Failure" on a full disk: ask the device
        free = free_bytes(conn, python, workdir)
        size = bundle.path.stat().st_size
        if free is not None and free < size:
            raise DeviceError(
                f"{profile.name} is out of space: its work directory {workdir!r} has {free} bytes "
                f"free and the agent bundle needs {size}; free space there or point [agent].workdir "
                "at a filesystem with room"
            ) from exc
        if isinstance(exc, HarnessError):
            raise
        raise DeviceError(f"pushing the agent bundle to {remote!r} on {profile.name} failed: {exc}; "
                          "check [agent].workdir in the profile") from exc
    log.info("pushed bundle %s to %s: %d bytes", bundle.name, profile.name, sent)
    return Deployment(workdir, remote, python, sent)
