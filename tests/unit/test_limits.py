"""Ranges, names and text checks at the edge: profiles, suites, run ids, and what manifests keep."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.limits import PROFILE_RANGES, SUITE_RANGES, check_name
from harness.manifest import public_profile, redact_manifest
from harness.profiles import Profile, parse_profile
from harness.store import make_run_dir

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def _parse(text: str) -> Profile:
    return parse_profile(text, source="devices/x.toml", default_name="x")


def test_every_numeric_profile_field_has_a_range_and_the_docs_list_it() -> None:
    hints = typing.get_type_hints(Profile)
    numeric = []
    for f in dataclasses.fields(Profile):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            for g, gtp in typing.get_type_hints(tp).items():
                if gtp in (int, float) or "int" in str(gtp) and "Mapping" in str(gtp):
                    numeric.append(f"{f.name}.{g}")
    assert numeric and set(numeric) <= set(PROFILE_RANGES)
    docs = DOCS.read_text()
    for key, rng in {**PROFILE_RANGES, **SUITE_RANGES}.items():
        assert f"`{key}` | {rng.text()} |" in docs, key


@pytest.mark.parametrize("text, key", [
    ("[connection]\nport = 70000", "connection.port"),
    ("[connection]\nport = 100000000000000000000", "connection.port"),
    ("[connection]\nkeepalive_s = inf", "connection.keepalive_s"),
    ("[agent]\ncase_timeout_s = nan", "agent.case_timeout_s"),
    ("[cpu]\nthreads = 100000000000000000000", "cpu.threads"),
    ("[cpu]\nclusters = { big = [4, 99999] }", "cpu.clusters.big[1]"),
    ("[energy]\ncpu_max_w = 1e400", "energy.cpu_max_w"),
])
def test_out_of_range_numbers_are_one_line_errors_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(text)
    assert str(err.value).startswith(f"devices/x.toml: {key}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["../../../../tmp/x", "/tmp/x", "a/b", "..", ".", "", "-x", "a\nb", "x" * 101])
def test_a_name_that_could_leave_its_directory_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="devices/x.toml: name: .*(not a valid name|needs a name)"):
        _parse(f'name = "{name.encode("unicode_escape").decode()}"')


@pytest.mark.parametrize("name", ["pixel7", "rpi5-lab.2", "jetson_orin+nano", "a"])
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name, source="s", key="k") == name


@pytest.mark.parametrize("text, key", [
    ('[agent]\nworkdir = "/tmp/a\\nb"', "agent.workdir"),
    ('[agent]\nenv = { A = "x\\u0000y" }', "agent.env.A"),
    ('[agent]\nenv = { "1BAD" = "x" }', "agent.env.1BAD"),
    ('[agent]\nenv = { A = "x" }\nrecord_env = ["B"]', "agent.record_env"),
    ('[connection]\ntransport = "ssh"\nhost = "-oProxyCommand=x"', "connection.host"),
])
def test_text_that_would_reach_a_shell_is_checked_at_load(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"devices/x.toml: {key}: "):
        _parse(text)


def test_run_ids_that_are_not_names_are_refused(tmp_path: Path) -> None:
    for bad in ("../escape", "/tmp/x", "..", "a/b"):
        with pytest.raises(ConfigError, match="--run-id"):
            make_run_dir(tmp_path / "results", bad)
    assert not (tmp_path / "escape").exists()


def test_manifests_keep_env_names_and_a_hash_and_only_marked_values() -> None:
    profile = _parse('[agent]\nenv = { TOKEN = "s3cret", OMP_NUM_THREADS = "2" }\nrecord_env = ["OMP_NUM_THREADS"]')
    env = public_profile(profile)["agent"]["env"]
    assert env["names"] == ["OMP_NUM_THREADS", "TOKEN"]
    assert env["values"] == {"OMP_NUM_THREADS": "2"} and len(env["sha256"]) == 64
    assert "s3cret" not in repr(public_profile(profile))
    other = public_profile(_parse('[agent]\nenv = { TOKEN = "other", OMP_NUM_THREADS = "2" }'))
    assert other["agent"]["env"]["sha256"] != env["sha256"]


def test_an_old_manifest_with_env_values_is_redacted_on_resume() -> None:
    old = {"devices": [{"profile": {"agent": {"env": {"TOKEN": "s3cret"}, "record_env": []}}}],
           "device": {"profile": {"agent": {"env": {"TOKEN": "s3cret"}}}}}
    assert "s3cret" not in repr(redact_manifest(old))


def test_device_outcomes_after_a_resume_cover_every_pass() -> None:
    import pandas as pd

    from harness.bench import merged_outcomes
    from harness.run import DeviceOutcome

    manifest: dict = {}
    first = [DeviceOutcome("d", "some-failed", cases_ok=1, cases_failed=1, bytes_pushed=100)]
    merged_outcomes(manifest, first, pd.DataFrame({"device": ["d", "d"], "status": ["ok", "failed"]}))
    second = [DeviceOutcome("d", "ok", cases_ok=1, cases_failed=0, bytes_pushed=0)]
    merged = merged_outcomes(manifest, second, pd.DataFrame({"device": ["d", "d"], "status": ["ok", "ok"]}))
    assert merged == [{**vars(second[0]), "status": "ok", "cases_ok": 2, "cases_failed": 0,
                       "bytes_pushed": 100, "passes": 2}]
    assert [p["device_outcomes"][0]["status"] for p in manifest["passes"]] == ["some-failed", "ok"]
