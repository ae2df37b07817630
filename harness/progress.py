"""Progress where a person looks: one bar per device, the current case and its ETA."""

from __future__ import annotations

import sys
import threading
from typing import Any

from harness.plan import Case


class Progress:
    """Steps of the current case on a tqdm bar; the description counts cases done."""

    def __init__(self, device: str, position: int, total_cases: int, *, enabled: bool = True) -> None:
        self.device = device
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
            desc = f"{self.device} [{self.done + 1}/{self.total_cases}] {case.case_id}"
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
            print(f"[{self.device} {self.done}/{self.total_cases}] {self._case.case_id}: {mark}",
                  file=sys.stderr, flush=True)
