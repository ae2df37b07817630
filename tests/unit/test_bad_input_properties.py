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
                                           "--dtype", "--mode", "--accel", "--steps", "--warmup", "--seed"]),
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
