"""Agents a dead host left running on a device: recorded before they start, reaped later.

Every agent process the runner starts is the leader of its own process group on the device.
Its group id reaches :meth:`AgentLedger.started` through the transport's ``on_start`` hook
*before* the agent gets its case on stdin, and is written (fsync'd) to two places:

- ``<run dir>/agents.jsonl``: the run's own record (started / ended / reaped / gone);
- ``<lock dir>/<device>.agents.json``: the device's pending list, which the next run on that
  device reads whatever its run directory (the lock dir is where the device lock lives).

A group leaves the pending list when its command returns. If the harness dies (SIGKILL,
power cut) while an agent runs, the agent can outlive it: sshd and adbd only close its
pipes, and an agent inside a long step does not write until the step ends. ``--resume`` and
any later run on that device hold the device lock, connect, and call :meth:`AgentLedger.reap`
before measuring: each pending group that still runs an agent bundle (``agent-*.pyz`` in a
member's command line, so a reused pid of an unrelated process is never killed) is killed
with SIGKILL and reported; the rest are reported gone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.transports.base import Connection

log = logging.getLogger(__name__)

# Kill each pending group that still runs an agent bundle; print "reaped N" or "gone N".
REAP_SCRIPT = r"""
for pg in "$@"; do
  hit=
  for st in /proc/[0-9]*/stat; do
    read -r _pid _comm _state _ppid grp _rest < "$st" 2>/dev/null || continue
    [ "$grp" = "$pg" ] || continue
    case "$(tr '\000' ' ' < "${st%/stat}/cmdline" 2>/dev/null)" in
      *agent-*.pyz*) hit=1 ;;
    esac
  done
  if [ -n "$hit" ]; then
    kill -9 -- "-$pg" 2>/dev/null || kill -9 "-$pg" 2>/dev/null
    echo "reaped $pg"
  else
    echo "gone $pg"
  fi
done
"""


def _fsync_append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_replace(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AgentLedger:
    """The agent process groups of one device: recorded, cleared, and reaped after a crash.

    Used only while holding the device's lock, so one process writes the device file at a time.
    """

    def __init__(self, device: str, run_dir: Path, lock_dir: Path | None = None) -> None:
        from harness.locks import LOCK_DIR

        self.device = device
        self.run_id = run_dir.name
        self.run_file = run_dir / "agents.jsonl"
        self.device_file = (lock_dir or LOCK_DIR) / f"{device}.agents.json"

    def _record(self, event: str, pgid: int, **extra: Any) -> None:
        _fsync_append(self.run_file, {"device": self.device, "event": event, "pgid": pgid,
                                      "at_ns": time.time_ns(), **extra})

    def _device_list(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.device_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read %s (%s); starting a new list", self.device, self.device_file, exc)
            return []
        return [e for e in data.get("agents", []) if isinstance(e, dict) and isinstance(e.get("pgid"), int)]

    def _write_device_list(self, entries: list[dict[str, Any]]) -> None:
        self.device_file.parent.mkdir(parents=True, exist_ok=True)
        _fsync_replace(self.device_file, {"device": self.device, "agents": entries})

    def started(self, pgid: int, case_id: str = "", attempt: int = 0) -> None:
        """Record a group before its agent gets its case (the transport's ``on_start``)."""
        try:
            self._record("started", pgid, case_id=case_id, attempt=attempt, run_id=self.run_id)
            entries = [e for e in self._device_list() if e["pgid"] != pgid]
            entries.append({"pgid": pgid, "run_id": self.run_id, "case_id": case_id,
                            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            self._write_device_list(entries)
        except OSError as exc:  # never start an agent that a crash could orphan unrecorded
            raise HarnessError(f"cannot record the agent's process group {pgid} of {self.device} "
                               f"({exc.strerror or exc}); free space in {self.run_file.parent} and "
                               f"{self.device_file.parent}, then resume the run") from exc

    def ended(self, pgid: int) -> None:
        """The group's command returned (the transport killed what was left of it)."""
        try:
            self._record("ended", pgid)
            self._write_device_list([e for e in self._device_list() if e["pgid"] != pgid])
        except OSError as exc:  # it stays pending: the next run finds it gone
            log.warning("%s: cannot record that process group %d ended: %s", self.device, pgid, exc)

    def pending(self) -> list[int]:
        """Groups started and never seen to end: the device's list and this run's record."""
        groups = [e["pgid"] for e in self._device_list()]
        if self.run_file.is_file():
            open_groups: dict[int, bool] = {}
            for line in self.run_file.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a torn last line
                if rec.get("device") == self.device and isinstance(rec.get("pgid"), int):
                    open_groups[rec["pgid"]] = rec.get("event") == "started"
            groups += [g for g, still_open in open_groups.items() if still_open]
        return sorted({g for g in groups if g > 1})

    def reap(self, conn: Connection, extra: tuple[int, ...] = ()) -> dict[int, str]:
        """Kill pending groups that still run an agent; returns ``{pgid: "reaped" | "gone"}``."""
        groups = sorted(set(self.pending()) | {g for g in extra if g > 1})
        if not groups:
            return {}
        lines: list[str] = []
        result = conn.run(["sh", "-c", REAP_SCRIPT, "sh", *map(str, groups)], deadline_s=60,
                          on_stdout_line=lines.append)
        outcome = {int(p): word for word, p in (ln.split() for ln in lines if len(ln.split()) == 2)
                   if word in ("reaped", "gone") and p.isdigit()}
        if not result.ok or set(outcome) != set(groups):
            log.warning("%s: could not check leftover agent groups %s (exit %s): %s", self.device, groups,
                        result.exit_code, result.stderr.strip()[-300:])
            return outcome  # still pending: the next connection tries again
        for pgid, word in outcome.items():
            self._record(word, pgid)
            if word == "reaped":
                log.warning("%s: killed agent process group %d left running by an earlier harness "
                            "process (crashed or killed) before measuring", self.device, pgid)
        self._write_device_list([e for e in self._device_list() if e["pgid"] not in outcome])
        return outcome
