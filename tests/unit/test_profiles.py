"""Device profiles are validated on load; every mistake names the file, the key and the fix."""

import pytest

from harness.errors import ConfigError
from harness.profiles import known_devices, load_profile, parse_profile, resolve_device


def _parse(text: str):
    return parse_profile(text, source="devices/x.toml", default_name="x")


def test_the_local_profile_loads():
    p = load_profile("local")
    assert p.connection.transport == "local" and p.name == "local"


def test_every_shipped_profile_is_valid():
    for name in known_devices():
        assert load_profile(name).name


def test_a_misspelt_key_is_refused_with_the_nearest_valid_key():
    with pytest.raises(ConfigError) as err:
        _parse('[connection]\ntransprt = "ssh"\n')
    assert str(err.value) == "devices/x.toml: connection.transprt: unknown key 'transprt'; did you mean 'transport'?"


def test_a_misspelt_section_is_refused():
    with pytest.raises(ConfigError, match="did you mean 'thermal'"):
        _parse("[thermall]\nhot_c = 1\n")


@pytest.mark.parametrize(
    "text, key, message",
    [
        ('[connection]\ntransport = "usb"', "connection.transport", "not one of local, ssh, adb"),
        ("[agent]\ncase_timeout_s = -5", "agent.case_timeout_s", "must be in 1 … 604800"),
        ('[agent]\ncase_timeout_s = "long"', "agent.case_timeout_s", "expected a number"),
        ("[agent]\npython = 3", "agent.python", "expected a list of str"),
        ("[connection]\nport = true", "connection.port", "expected an integer"),
        ("[cpu]\nclusters = { big = [6, 7] }\npin = \"little\"", "cpu.pin", "does not define"),
        ('[connection]\ntransport = "ssh"', "connection.host", "needs a host"),
        ("[energy]\nmeter = \"cpu-model\"\ncpu_idle_w = 2.0", "energy.cpu_max_w", "cpu_max_w > cpu_idle_w"),
        ("[energy]\nsample_interval_s = 0", "energy.sample_interval_s", "must be in 0.001 … 60"),
    ],
)
def test_bad_values_name_the_key(text, key, message):
    with pytest.raises(ConfigError) as err:
        _parse(text)
    assert f"devices/x.toml: {key}: " in str(err.value)
    assert message in str(err.value)


def test_malformed_toml_names_the_file():
    with pytest.raises(ConfigError, match=r"^devices/x.toml: not valid TOML"):
        _parse("[connection\n")


def test_an_unknown_device_lists_the_known_profiles():
    with pytest.raises(ConfigError) as err:
        resolve_device("nope")
    assert "unknown device 'nope'" in str(err.value) and "local" in str(err.value)


def test_a_profile_can_be_given_by_path(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text('name = "board"\n[connection]\ntransport = "ssh"\nhost = "b"\n')
    assert load_profile(str(path)).connection.host == "b"


def test_clusters_become_tuples_of_core_ids():
    p = _parse('[cpu]\nclusters = { little = [0, 1], big = [2, 3] }\npin = "big"')
    assert p.cpu.clusters["big"] == (2, 3)
