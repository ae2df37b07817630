"""One harness process measures on a device at a time: an advisory lock per device name.

The lock file records who holds it (pid, host, run id, since when) so that a second
process can say who is in the way. The kernel drops the lock when its holder dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from harness.errors import DeviceBusy
from harness.limits import check_name

LOCK_DIR = Path(os.environ.get("HARNESS_LOCK_DIR", Path.home() / ".cache" / "odt-harness" / "locks"))


class DeviceLock:
    """``with DeviceLock("pixel7", run_id):`` holds the device for this process."""

    def __init__(self, device: str, run_id: str, lock_dir: Path | None = None) -> None:
        self.device = check_name(device, source="profile", key="name")  # it names the lock file
        self.run_id = run_id
        self.path = (lock_dir or LOCK_DIR) / f"{device}.lock"
        self._fd: int | None = None

    def __enter__(self) -> DeviceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} (run {holder.get('run_id')}, "
                f"since {holder.get('since')})" if holder else "another process"
            )
            raise DeviceBusy(
                f"device {self.device!r} is being measured by {who}; wait for it to finish "
                f"or stop it (lock file {self.path})"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": self.run_id,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data else {}
    except (OSError, ValueError):
        return {}
