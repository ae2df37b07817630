"""One agent process per unit: a group's lines are filed per case, each case gets its status."""

from __future__ import annotations

import json
from pathlib import Path

from harness.deploy import Deployment
from harness.plan import Filters, expand, load_suite
from harness.profiles import load_profile
from harness.progress import Progress
from harness.run import run_unit
from harness.schedule import groups
from harness.store import RawLog, build_tables, read_raw
from harness.transports.base import RunResult
from workloads import schema


class ScriptedConn:
    """Plays back agent lines for the spec it is given, as a transport would stream them."""

    def __init__(self, lines_for) -> None:
        self.lines_for = lines_for
        self.specs: list[dict] = []

    def run(self, argv, *, stdin=None, deadline_s=0, on_stdout_line=None, cwd=None, env=None,
            on_start=None) -> RunResult:
        if on_start is not None:  # as the real transports do: the group id before the case
            on_start(4242)
        spec = json.loads(stdin)
        self.specs.append(spec)
        for line in self.lines_for(spec):
            on_stdout_line(line)
        return RunResult(exit_code=0, stderr="", wall_ns=1)


def _unit():
    cases = expand(load_suite("smoke"), Filters(workloads=("ds_cnn",), optimizers=("nag",),
                                                kernels=("foreach", "fused"), steps=2, warmup=0))
    return groups(cases)[0]


def _agent(spec: dict) -> list[str]:
    ids = [c["case_id"] for c in spec["cases"]]
    out = [schema.Hello("0", "3", "2", "p", "m", 2)]
    out += [schema.Step(cid, i, False, {"update": 1}, 10, 1.0, round=i) for i in range(2) for cid in ids]
    out.append(schema.Error(ids[1], "RuntimeError", "kernel blew up"))
    out.append(schema.CaseEnd(ids[0], 2, 0, 5, 1 << 20, 8, {"checked": True, "ok": True}, {}))
    out.append(schema.Bye(1, 1))
    return [schema.dump_line(r) for r in out]


def test_a_group_process_files_each_line_under_its_case_and_each_case_gets_its_status(tmp_path: Path):
    unit = _unit()
    conn = ScriptedConn(_agent)
    raw = RawLog(tmp_path / "raw.jsonl")
    deployment = Deployment("/w", "/w/a.pyz", ("python3",), 0)
    statuses = run_unit(conn, deployment, load_profile("local"), unit, 1, raw,
                        Progress("local", 0, 1, enabled=False), tmp_path)
    raw.close()
    ok_id, bad_id = (c.case_id for c in unit.cases)
    assert statuses == {ok_id: "ok", bad_id: "failed"}
    spec = conn.specs[0]
    assert spec["protocol"] == schema.PROTOCOL_VERSION and spec["group"] == unit.group
    assert [c["case_id"] for c in spec["cases"]] == [ok_id, bad_id]
    envelopes = list(read_raw(tmp_path / "raw.jsonl"))
    steps = [e for e in envelopes if '"type":"step"' in e.get("line", "")]
    assert {e["case_id"] for e in steps} == {ok_id, bad_id}
    assert {e["process"] for e in envelopes} == {f"local:{unit.group}:r0:a1"}
    ends = [e for e in envelopes if e.get("event") == "attempt_end"]
    assert [(e["case_id"], e["status"]) for e in ends] == [(ok_id, "ok"), (bad_id, "failed")]
    assert ends[0]["order_seed"] == spec["order_seed"] and ends[0]["rotation"] == 0
    _, cases = build_tables(tmp_path, "run")
    bad = cases.set_index("case_id").loc[bad_id]
    assert bad["error_kind"] == "RuntimeError" and bad["steps"] == 2  # its steps are kept


def test_a_lone_case_is_sent_as_a_case_spec_with_the_protocol_version(tmp_path: Path):
    unit = groups(list(_unit().cases[:1]))[0]
    assert unit.group == ""
    cid = unit.cases[0].case_id
    conn = ScriptedConn(lambda spec: [schema.dump_line(schema.CaseEnd(cid, 0, 0, 1, 1, 1, {}, {}))])
    raw = RawLog(tmp_path / "raw.jsonl")
    statuses = run_unit(conn, Deployment("/w", "/w/a.pyz", ("python3",), 0), load_profile("local"), unit, 3,
                        raw, Progress("local", 0, 1, enabled=False), tmp_path)
    raw.close()
    assert statuses == {cid: "ok"}
    assert conn.specs[0]["case_id"] == cid and conn.specs[0]["protocol"] == schema.PROTOCOL_VERSION
    assert {e["process"] for e in read_raw(tmp_path / "raw.jsonl")} == {f"local:{cid}:r0:a3"}


def test_resume_reruns_each_process_narrowed_to_its_unfinished_cases(tmp_path: Path):
    from harness.bench import new_plan, resume_plan
    from harness.schedule import schedule

    cases = list(expand(load_suite("smoke"), Filters(workloads=("ds_cnn",), optimizers=("nag",), steps=2,
                                                      warmup=0)))
    profile = load_profile("local")
    plan = new_plan([profile], schedule(cases, 2, 0), out=tmp_path, run_id="r", suite="smoke", seed=0,
                    argv=["harness", "bench"], probe=False)
    raw = RawLog(plan.run_dir / "raw.jsonl")
    failed = (cases[0].case_id, 1)
    for unit in plan.cases["local"]:
        for case in unit.cases:
            status = "failed" if (case.case_id, case.repeat) == failed else "ok"
            line = schema.dump_line(schema.CaseEnd(case.case_id, 2, 0, 1, 1, 1, {}, {}))
            raw.agent_line("local", case.case_id, 1, line, case.repeat, group=unit.group,
                           process=unit.process_id("local", 1))
            raw.event("local", case.case_id, 1, "attempt_end", repeat=case.repeat, status=status,
                      spec=case.spec(), group=unit.group, process=unit.process_id("local", 1))
    raw.close()
    resumed = resume_plan(plan.run_dir, ["harness", "bench", "--resume", "r"])
    todo = resumed.cases["local"]
    assert [(u.group, u.repeat, [c.case_id for c in u.cases]) for u in todo] == [("", 1, [failed[0]])]
    assert resumed.first_attempt["local"] == {(failed[0], 1): 2}  # after every attempt of its process
