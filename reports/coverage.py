"""What a run measured and what it did not: one row per planned case that has no measurement.

A report must never look healthy when nothing was measured. The manifest lists every planned
case per device; the cases table holds the ones that produced a result. A case is *not
measured* when it failed, was wrong, or has no row at all (the device was unreachable, busy,
or refused before the case ran: then the device's own outcome message is the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pandas as pd

from reports.tables import Column, status_class

COLUMNS = ("run_id", "device", "case_id", "repeat", "status", "reason")
TABLE_COLUMNS = [Column("device", "device"), Column("case_id", "case"), Column("repeat", "repeat"),
                 Column("status", "status"), Column("reason", "reason"), Column("run_id", "run")]
ROW_CLASS = status_class
MEASURED = ("ok", "wrong")  # timed; a wrong case is reported as wrong in the correctness table


@dataclass(frozen=True)
class Coverage:
    """Planned and measured counts, and a row with its reason for every case not measured."""

    planned: int
    measured: int
    unmeasured: pd.DataFrame  # COLUMNS
    device_problems: tuple[str, ...]  # "local: busy — <message>" for devices that did not finish

    @property
    def nothing_measured(self) -> bool:
        return self.measured == 0

    def headline(self) -> str:
        """One sentence for the top of a report or a terminal ("" when every case was measured)."""
        if self.planned == 0 and self.measured == 0:
            return "Nothing was measured: the run holds no cases."
        why = f" ({'; '.join(self.device_problems)})" if self.device_problems else ""
        if self.nothing_measured:
            return f"Nothing was measured: 0 of {self.planned} planned cases produced a measurement{why}."
        if len(self.unmeasured):
            return (f"{len(self.unmeasured)} of {max(self.planned, self.measured + len(self.unmeasured))} "
                    f"planned cases were not measured{why}; see the table of cases not measured.")
        return ""


def _planned(manifest: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(device, case_id, repeat) of every planned case: ``case_order`` in run order, the
    repeat from the stored case specs beside it (or counted, for an older manifest)."""
    devices = [str(d.get("name", "")) for d in manifest.get("devices", []) if isinstance(d, Mapping)]
    order = [str(c) for c in manifest.get("case_order", []) or []]
    specs = manifest.get("cases") or []
    if len(specs) == len(order) and all(isinstance(s, Mapping) for s in specs):
        keys = [(cid, int(spec.get("repeat", 0) or 0)) for cid, spec in zip(order, specs, strict=True)]
    else:
        seen: dict[str, int] = {}
        keys = []
        for cid in order:
            keys.append((cid, seen.get(cid, 0)))
            seen[cid] = seen.get(cid, 0) + 1
    return [(d, cid, rep) for d in devices for cid, rep in keys]


def _outcomes(manifest: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    out = {}
    for o in manifest.get("device_outcomes", []) or []:
        if isinstance(o, Mapping):
            out[str(o.get("device", ""))] = (str(o.get("status", "")), str(o.get("message", "") or ""))
    return out


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def coverage(cases: pd.DataFrame, manifests: Iterable[Mapping[str, Any]]) -> Coverage:
    """Compare the stored cases with every manifest's plan."""
    rows: list[dict[str, Any]] = []
    planned = 0
    problems: list[str] = []
    have = set()
    if not cases.empty:
        ids = cases["base_case_id"] if "base_case_id" in cases else cases["case_id"]  # reports.load's split
        have = set(zip(cases["run_id"].astype(str), cases["device"].astype(str), ids.astype(str),
                       cases.get("repeat", pd.Series(0, index=cases.index)).fillna(0).astype(int), strict=True))
    for manifest in manifests:
        run_id = str(manifest.get("run_id", ""))
        outcomes = _outcomes(manifest)
        for device, (status, message) in outcomes.items():
            if status and status != "ok":
                problems.append(f"{device}: {status}" + (f" — {message}" if message else ""))
        plan = _planned(manifest)
        planned += len(plan)
        for device, case_id, repeat in plan:
            if (run_id, device, case_id, repeat) in have:
                continue
            status, message = outcomes.get(device, ("", ""))
            if status in ("", "ok"):
                status, message = "missing", message or "no result was recorded for this case (run interrupted?)"
            rows.append({"run_id": run_id, "device": device, "case_id": case_id, "repeat": repeat,
                         "status": status, "reason": message})
    measured = 0
    if not cases.empty:
        done = cases["status"].astype(str).isin(MEASURED)
        failed = cases.loc[~done]
        measured = int(done.sum())
        for _, r in failed.iterrows():
            kind, msg = _text(r.get("error_kind")), _text(r.get("error_message"))
            rows.append({"run_id": str(r["run_id"]), "device": str(r["device"]), "case_id": str(r["case_id"]),
                         "repeat": int(r.get("repeat", 0) or 0), "status": str(r["status"]),
                         "reason": f"{kind}: {msg}" if kind and msg else (kind or msg or "no reason recorded")})
    planned = max(planned, len(cases))  # a run without a plan in its manifest: its own cases
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return Coverage(planned, measured, frame, tuple(problems))
