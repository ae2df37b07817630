"""A report never looks healthy when nothing was measured: planned vs stored cases."""

from __future__ import annotations

import pandas as pd

from reports.coverage import coverage


def _manifest(run_id: str = "r1", devices: tuple[str, ...] = ("pixel7",), status: str = "ok",
              message: str = "", ids: tuple[str, ...] = ("a", "b", "c")) -> dict:
    return {"run_id": run_id, "devices": [{"name": d} for d in devices], "case_order": list(ids),
            "cases": [{"repeat": 0} for _ in ids],
            "device_outcomes": [{"device": d, "status": status, "message": message} for d in devices]}


def _cases(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": "r1", "device": "pixel7", "case_id": c, "repeat": 0, "status": s,
                          "error_kind": k, "error_message": "link dropped" if k else ""}
                         for c, s, k in rows])


def test_an_unreachable_device_with_no_cases_says_nothing_was_measured_and_why():
    cov = coverage(pd.DataFrame(), [_manifest(status="unreachable", message="pixel7 stayed unreachable")])
    assert cov.nothing_measured and cov.planned == 3 and cov.measured == 0
    assert cov.headline().startswith("Nothing was measured: 0 of 3 planned cases")
    assert "pixel7: unreachable — pixel7 stayed unreachable" in cov.headline()
    assert list(cov.unmeasured["status"]) == ["unreachable"] * 3
    assert set(cov.unmeasured["reason"]) == {"pixel7 stayed unreachable"}


def test_a_run_with_only_a_transient_case_measured_nothing():
    cov = coverage(_cases([("a", "transient", "transient")]), [_manifest(ids=("a",))])
    assert cov.nothing_measured
    assert cov.unmeasured.iloc[0][["case_id", "status", "reason"]].tolist() == [
        "a", "transient", "transient: link dropped"]


def test_failed_and_missing_cases_are_rows_with_their_reason_beside_measured_ones():
    cov = coverage(_cases([("a", "ok", ""), ("b", "failed", "timeout")]), [_manifest()])
    assert not cov.nothing_measured and cov.measured == 1 and cov.planned == 3
    by_case = dict(zip(cov.unmeasured["case_id"], cov.unmeasured["status"], strict=True))
    assert by_case == {"b": "failed", "c": "missing"}
    assert cov.headline().startswith("2 of 3 planned cases were not measured")


def test_a_wrong_case_counts_as_measured_and_a_complete_run_has_no_headline():
    cov = coverage(_cases([("a", "ok", ""), ("b", "wrong", ""), ("c", "ok", "")]), [_manifest()])
    assert cov.measured == 3 and cov.unmeasured.empty and cov.headline() == ""


def test_repeats_are_planned_cases_of_their_own():
    manifest = _manifest(ids=("a", "a"))
    manifest["cases"] = [{"repeat": 0}, {"repeat": 1}]
    cov = coverage(_cases([("a", "ok", "")]), [manifest])
    assert cov.planned == 2 and cov.unmeasured[["case_id", "repeat"]].values.tolist() == [["a", 1]]


def test_cases_split_per_process_by_the_reader_match_their_planned_case():
    manifest = _manifest(ids=("a", "a"))
    manifest["cases"] = [{"repeat": 0}, {"repeat": 1}]
    cases = _cases([("a-r0", "ok", ""), ("a-r1", "ok", "")]).assign(base_case_id="a", repeat=[0, 1])
    assert coverage(cases, [manifest]).unmeasured.empty
