"""Progress where a person looks: one bar per device, the current case and the run's ETA.

The ETA is the mean wall time of the cases this device has finished times the cases left
(shown from the second case on), so a long run says when it will end.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

from harness.plan import Case


class Progress:
    """Steps of the current case on a tqdm bar; the description counts cases done."""

    def __init__(self, device: str, position: int, total_cases: int, *, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self._clock = clock
        self._started = clock()
        self.position = position
        self.total_cases = total_cases
        self.done = 0
        self.failed = 0
        self.enabled = enabled and sys.stderr.isatty()  # a bar on a terminal, a line per case elsewhere
        self._bar: Any = None
        self._lock = threading.Lock()

    def start_case(self, case: Case) -> None:
        from tqdm import tqdm

        self._case = case
        with self._lock:
            if self._bar is not None:
                self._bar.close()
            eta = self.eta_s()
            desc = f"{self.device} [{self.done + 1}/{self.total_cases}" + (
                f", run ETA {format_duration(eta)}]" if eta is not None else "]") + f" {case.case_id}"
            self._bar = tqdm(
                total=case.warmup + case.steps, desc=desc, position=self.position, leave=False,
                unit="step", disable=not self.enabled, dynamic_ncols=True, file=sys.stderr,
            )

    def step(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(1)

    def restart_case(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.reset()

    def end_case(self, status: str) -> None:
        with self._lock:
            self.done += 1
            if status != "ok":
                self.failed += 1
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        if not self.enabled:
            mark = "ok" if status == "ok" else status.upper()
            eta = self.eta_s()
            left = f" (ETA {format_duration(eta)})" if eta is not None and self.done < self.total_cases else ""
            print(f"[{self.device} {self.done}/{self.total_cases}] {self._case.case_id}: {mark}{left}",
                  file=sys.stderr, flush=True)

    def eta_s(self) -> float | None:
        """Seconds until this device's last case ends, from the mean of the cases done (None before one)."""
        if self.done == 0:
            return None
        per_case = (self._clock() - self._started) / self.done
        return per_case * max(self.total_cases - self.done, 0)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
