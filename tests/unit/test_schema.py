"""The agent protocol: good lines are accepted, anything else is rejected with the line quoted."""

import dataclasses
import json

import pytest

from workloads import schema
from workloads.schema import ProtocolError, parse_line


def _step(**over):
    data = {"v": schema.PROTOCOL_VERSION, "type": "step", "case_id": "c", "index": 0, "warmup": False,
            "phases_ns": {"data": 1, "forward": 2}, "step_ns": 3, "loss": 0.5}
    data.update(over)
    return json.dumps(data)


def test_every_record_round_trips_through_a_line():
    records = [
        schema.Hello("0", "3.11", "2.13", "linux", "x86_64", 2, {"a": 1}),
        schema.Probe(2, 10.5, "triad", 50.0),
        schema.CaseStart("c", {"workload": "w"}, 10, 40),
        schema.Step("c", 1, True, {"data": 5}, 5, 1.25),
        schema.Meter("c", "energy_j", 1.5, "J", "measured:rapl"),
        schema.CaseEnd("c", 10, 2, 100, 2048, 40, {"ok": True}),
        schema.Error("c", "ValueError", "bad"),
        schema.Bye(1, 0),
    ]
    for rec in records:
        assert parse_line(schema.dump_line(rec)) == rec


def test_a_step_line_is_accepted():
    rec = parse_line(_step())
    assert isinstance(rec, schema.Step) and rec.phases_ns == {"data": 1, "forward": 2}


def test_a_stored_version_one_line_reads_where_the_caller_accepts_it():
    rec = parse_line(_step(v=1), schema.READABLE_VERSIONS)
    assert isinstance(rec, schema.Step) and rec.round == -1
    with pytest.raises(ProtocolError, match="protocol version 1"):
        parse_line(_step(v=1))  # a live agent must speak this version


def test_non_finite_loss_travels_as_null_and_comes_back_as_nan():
    line = schema.dump_line(schema.Step("c", 0, False, {}, 1, float("nan")))
    assert '"loss":null' in line
    assert parse_line(line).loss != parse_line(line).loss  # NaN


@pytest.mark.parametrize(
    "line, message",
    [
        ("hello world", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (_step(v=1), "protocol version 1, this host speaks 2"),
        (_step(type="steps"), "unknown record type 'steps'"),
        (_step(extra=1), "unknown field(s) ['extra']"),
        (json.dumps({"v": 2, "type": "bye", "cases_ok": 1}), "missing field 'cases_failed'"),
        (_step(index="3"), "field 'index' should be int"),
        (_step(warmup=1), "field 'warmup' should be bool"),
        (_step(phases_ns={"data": 1.5}), "field 'phases_ns'"),
        ("", "empty line"),
    ],
)
def test_a_malformed_line_is_rejected_with_the_line_quoted(line, message):
    with pytest.raises(ProtocolError) as err:
        parse_line(line)
    assert message in str(err.value)
    if line:
        assert line[:40] in str(err.value)


def test_every_field_annotation_is_checked():
    for cls in schema.RECORD_TYPES.values():
        for f in dataclasses.fields(cls):
            sample = {"str": "x", "int": 1, "float": 1.0, "bool": True}.get(str(f.type), {})
            schema._check_type(f.name, sample, str(f.type), "")
