"""Property-based: whatever profiles, suites, CLI filters and agent lines contain, only the
harness's own error types come out (never a KeyError, TypeError or a traceback)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import build_parser
from harness.cli_options import filters_from
from harness.errors import ConfigError
from harness.plan import Suite, expand
from harness.profiles import parse_profile
from workloads.schema import ProtocolError, parse_line

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
keys = st.sampled_from(["name", "connection", "agent", "cpu", "energy", "thermal", "transport", "host",
                        "python", "clusters", "pin", "meter", "zones", "bogus", "port", "env"])


def _toml_value(v: object) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else "nan"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


@SETTINGS
@given(st.dictionaries(keys, st.one_of(values, st.dictionaries(keys, values, max_size=4)), max_size=5))
def test_any_profile_content_gives_a_profile_or_a_config_error(data):
    text = "\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items())
    try:
        parse_profile(text, source="devices/h.toml", default_name="h")
    except ConfigError as exc:
        assert str(exc).startswith("devices/h.toml")


@SETTINGS
@given(st.text(max_size=200))
def test_any_profile_text_gives_a_profile_or_a_config_error(text):
    try:
        parse_profile(text, source="devices/h.toml", default_name="h")
    except ConfigError:
        pass


suite_keys = st.sampled_from(["steps", "warmup", "seed", "threads", "batch", "dtype", "check_steps",
                              "options", "hparams", "timeout_s", "modes", "accel", "nonsense"])
matrix_keys = st.sampled_from(["workloads", "optimizers", "kernels", "threads", "batch", "dtype", "modes"])
names = st.one_of(st.sampled_from(["*", "bert_tiny", "nag", "fused", "fp32", "eager", "lion", "x"]), values)


@SETTINGS
@given(st.dictionaries(suite_keys, values, max_size=4),
       st.lists(st.dictionaries(matrix_keys, st.one_of(names, st.lists(names, max_size=3)), max_size=3), max_size=3))
def test_any_suite_expands_or_gives_a_config_error(top, matrix):
    data = {**top, "matrix": matrix}
    try:
        cases = expand(Suite("h", "", data, "suites/h.toml"))
    except ConfigError:
        return
    assert cases and all(c.steps >= 1 for c in cases)


flag_values = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["--workload", "--optimizer", "--kernel", "--threads", "--batch",
                                           "--dtype", "--mode", "--accel", "--steps", "--warmup",
                                           "--check-steps", "--seed"]),
                          flag_values), max_size=5))
def test_any_cli_filter_gives_a_plan_or_a_config_error(pairs):
    argv = ["bench"] + [x for pair in pairs for x in pair]
    try:
        args = build_parser().parse_args(argv)
        expand(Suite("smoke", "", {"matrix": [{"workloads": ["*"], "optimizers": ["nag"], "kernels": ["forloop"]}]},
                     "smoke.toml"), filters_from(args))
    except ConfigError:
        pass


@SETTINGS
@given(st.one_of(st.text(max_size=300), values.map(json.dumps),
                 st.dictionaries(st.sampled_from(["v", "type", "case_id", "index", "warmup", "phases_ns",
                                                  "step_ns", "loss", "cases_ok", "cases_failed", "x"]),
                                 values, max_size=8).map(json.dumps)))
def test_any_agent_line_parses_or_gives_a_protocol_error(line):
    try:
        parse_line(line)
    except ProtocolError:
        pass


@SETTINGS
@given(st.fixed_dictionaries({"v": st.just(1), "type": st.sampled_from(["step", "bye", "case_end", "meter"])},
                             optional={"case_id": values, "index": values, "warmup": values, "phases_ns": values,
                                       "step_ns": values, "loss": values, "cases_ok": values}).map(json.dumps))
def test_any_well_typed_header_with_any_fields_parses_or_gives_a_protocol_error(line):
    try:
        parse_line(line)
    except ProtocolError:
        pass


# -- every field, hostile values: ranges, names, control characters --------------------------

import dataclasses  # noqa: E402
import math  # noqa: E402
import typing  # noqa: E402

from harness.limits import NAME_RE, PROFILE_RANGES, SUITE_RANGES  # noqa: E402
from harness.profiles import Profile  # noqa: E402

HOSTILE_STRINGS = ["../../../../tmp/x", "/tmp/x", "a/b", "..", ".", "a\nb", "a\x00b", "\x1b[31m", "",
                   "-oProxyCommand=touch /tmp/p", "x" * 300, "ok_name", "~/w"]
HOSTILE_NUMBERS = [2**63, -(2**63) - 1, 10**20, 10**400, -1, 0, 1, 70000, 4464,
                   math.nan, math.inf, -math.inf, 1e308, -1e-300, 0.5]
hostile_scalar = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.sampled_from(HOSTILE_NUMBERS),
                           st.integers(), st.floats(), st.booleans(), st.text(max_size=8))
hostile = st.one_of(hostile_scalar, st.lists(hostile_scalar, max_size=3),
                    st.dictionaries(st.sampled_from(["big", "PATH", "a b", "1x", "K"]), hostile_scalar, max_size=2))


def _toml(v: object) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(x)}" for k, x in v.items()) + " }"
    return _toml_value(v)


def _profile_fields() -> list[tuple[str, str]]:
    """(section, key) of every profile field, top-level ones with section ""."""
    out = []
    hints = typing.get_type_hints(Profile)
    for f in dataclasses.fields(Profile):
        if f.name == "path":
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            out += [(f.name, g.name) for g in dataclasses.fields(hints[f.name])]
        else:
            out.append(("", f.name))
    return out


PROFILE_FIELDS = _profile_fields()


def _numbers_of(obj: object) -> list[tuple[str, object]]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += [(f"{f.name}.{k}", v) for k, v in _numbers_of(value)]
        else:
            out.append((f.name, value))
    return out


def _no_control(text: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


@SETTINGS
@given(st.sampled_from(PROFILE_FIELDS), hostile)
def test_every_profile_field_takes_a_hostile_value_or_names_the_file_and_key(field, value):
    section, key = field
    text = (f"{key} = {_toml(value)}\n" if not section else f"[{section}]\n{key} = {_toml(value)}\n")
    if section != "connection":
        text += '[connection]\ntransport = "local"\n'
    try:
        profile = parse_profile(text, source="devices/h.toml", default_name="h")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("devices/h.toml") and "\n" not in message.split(": ", 2)[1]
        return
    assert NAME_RE.match(profile.name) and set(profile.name) != {"."}
    for where, v in _numbers_of(profile):
        if isinstance(v, float):
            assert math.isfinite(v), where
        rng = PROFILE_RANGES.get(where)
        if rng is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
            assert rng.low <= v <= rng.high, where
        if isinstance(v, str) and where != "description":
            assert _no_control(v), where
    for k, v in profile.agent.env.items():
        assert "\0" not in v and k.isidentifier()


SUITE_FIELDS = ["steps", "warmup", "seed", "check_steps", "warmup_max", "timeout_s", "threads", "batch",
                "hparams", "options", "dtype", "modes", "warmup_until_stable"]


@SETTINGS
@given(st.sampled_from(SUITE_FIELDS), hostile, st.booleans())
def test_every_suite_field_takes_a_hostile_value_or_names_the_file_and_key(key, value, in_matrix):
    if key == "hparams":
        value = {"nag": {"lr": value}}
    elif key == "options":
        value = {"bert_tiny": {"seq_len": value}}
    block = {"workloads": ["bert_tiny"], "optimizers": ["nag"], "kernels": ["forloop"]}
    data: dict = {"matrix": [block]}
    if in_matrix and key in ("threads", "batch", "dtype", "modes"):
        block[key] = value
    else:
        data[key] = value
    try:
        cases = expand(Suite("h", "", data, "suites/h.toml"))
    except ConfigError as exc:
        assert str(exc).startswith("suites/h.toml")
        return
    for case in cases:
        for name in ("steps", "warmup", "seed", "check_steps", "threads", "batch", "timeout_s"):
            v = getattr(case, name)
            assert math.isfinite(v) and SUITE_RANGES[name].low <= v <= SUITE_RANGES[name].high, name
        for v in case.hparams.values():
            assert math.isfinite(v)


@SETTINGS
@given(st.sampled_from(["--threads", "--batch", "--steps", "--warmup", "--check-steps", "--seed",
                        "--processes"]),
       st.sampled_from(["0", "-1", "1", "100000000000000000000", "1e3", "nan", "inf", "4096", "65537"]))
def test_every_numeric_cli_option_is_in_range_or_a_config_error(flag, text):
    from harness.cli_options import filters_from
    from harness.schedule import processes_for

    try:
        args = build_parser().parse_args(["bench", flag, text])
        cases = expand(Suite("smoke", "", {"matrix": [{"workloads": ["bert_tiny"], "optimizers": ["nag"],
                                                       "kernels": ["forloop"]}]}, "smoke.toml"), filters_from(args))
        processes_for({}, args.processes, "smoke.toml")
    except ConfigError as exc:
        assert flag in str(exc) or "argument" in str(exc)
        return
    assert all(1 <= c.threads <= 4096 and 1 <= c.batch <= 65536 and 1 <= c.steps <= 10**6
               and 0 <= c.check_steps <= 10_000 for c in cases)


# -- end to end through the CLI: exit 2, nothing outside the run, and the run resumes ------------

CLI_SETTINGS = settings(max_examples=40, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _files(root) -> set:
    return {p for p in root.rglob("*") if p.is_file()}


@CLI_SETTINGS
@given(st.sampled_from(PROFILE_FIELDS), hostile)
def test_a_hostile_profile_exits_2_writes_only_inside_the_run_and_resumes(tmp_path_factory, monkeypatch, field, value):
    import harness.bench
    import harness.locks
    import harness.run
    from harness.bench import resume_plan
    from harness.cli import main
    from harness.deploy import Bundle

    tmp = tmp_path_factory.mktemp("cli")
    section, key = field
    text = f"{key} = {_toml(value)}\n" if not section else f"[{section}]\n{key} = {_toml(value)}\n"
    if section != "connection":
        text += '[connection]\ntransport = "local"\n'
    (tmp / "h.toml").write_text(text)
    monkeypatch.chdir(tmp)
    monkeypatch.setattr(harness.locks, "LOCK_DIR", tmp / "locks")
    monkeypatch.setattr(harness.bench, "build_bundle", lambda: Bundle(tmp / "agent-0.pyz", "0"))

    def refuse(profile):  # every device refuses at connect time, as a bad host key does
        raise ConfigError("refused by the test", source=profile.path, key="connection.host")

    monkeypatch.setattr(harness.run, "connect", refuse)
    before = _files(tmp)
    code = main(["bench", "--device", str(tmp / "h.toml"), "--suite", "smoke", "--workload", "bert_tiny",
                 "--optimizer", "nag", "--kernel", "forloop", "--no-report", "--no-probe", "--processes", "1",
                 "--out", str(tmp / "results"), "--run-id", "r1"])
    assert code == 2
    run_dir = tmp / "results" / "r1"
    for path in _files(tmp) - before:
        inside_run = run_dir in path.parents
        lock = path.parent == tmp / "locks" and NAME_RE.match(path.name)
        assert inside_run or lock, f"{path} is outside the run directory"
    if (run_dir / "manifest.json").is_file():  # the profile loaded: the refused run can resume
        plan = resume_plan(run_dir, ["harness", "bench", "--resume", str(run_dir)])
        assert [len(c) for c in plan.cases.values()] == [1]


step_values = st.one_of(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", str(2**64), "-1", "null",
                                         "\"x\"", "true", "[]", "{}"]), st.integers().map(str))


@CLI_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["step_ns", "loss", "index", "summary", "meter"]), step_values),
                min_size=1, max_size=6), st.booleans())
def test_whatever_a_case_reports_the_tables_are_writable_and_the_run_resumes(tmp_path_factory, reports, torn):
    from harness import store
    from harness.bench import resume_plan
    from harness.plan import Case

    tmp = tmp_path_factory.mktemp("agent")
    run_dir = tmp / "run"
    run_dir.mkdir()
    case = Case(workload="bert_tiny", domain="nlp", optimizer="nag", kernel="forloop", threads=1, batch=4,
                dtype="fp32", steps=3, warmup=0, seed=0, check_steps=0)
    (tmp / "p.toml").write_text('name = "p"\n')
    store.write_json(run_dir / "manifest.json", {
        "results_version": store.RESULTS_VERSION, "run_id": "run", "status": "running", "cases": [dataclasses.asdict(case)],
        "devices": [{"name": "p", "path": str(tmp / "p.toml")}]})
    raw = store.RawLog(run_dir / "raw.jsonl")
    for i, (field, token) in enumerate(reports):
        if field == "summary":
            record = {"v": 1, "type": "case_end", "case_id": case.case_id, "wall_ns": 1, "peak_rss_bytes": 1,
                      "state_bytes": 1, "summary": {"x": "@T"},
                      "correctness": {"checked": False, "max_rel_diff": "@T"}}
        elif field == "meter":
            record = {"v": 1, "type": "meter", "case_id": case.case_id, "name": "energy_j", "value": "@T",
                      "source": "measured:x"}
        else:
            record = {"v": 1, "type": "step", "case_id": case.case_id, "index": i, "warmup": False,
                      "phases_ns": {"forward": 5}, "step_ns": 5, "loss": 0.5, field: "@T"}
        line = json.dumps(record, separators=(",", ":")).replace('"@T"', token)  # tokens JSON cannot hold
        raw.agent_line("p", case.case_id, 1, line)
    raw.close()
    if torn:  # the host died mid-write
        with open(run_dir / "raw.jsonl", "a") as f:
            f.write('{"device":"p","case_id":"' + case.case_id + '","line":"{\\"v\\":1,')
    steps, cases = store.write_tables(run_dir)
    assert all(math.isfinite(x) for x in steps["step_ns"])
    plan = resume_plan(run_dir, ["harness", "bench", "--resume", str(run_dir)])
    finished = set(cases.loc[cases["status"].isin(["ok", "wrong"]), "case_id"])
    assert [c.case_id for c in plan.cases["p"]] == ([] if case.case_id in finished else [case.case_id])
