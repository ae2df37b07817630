"""The Pixel 7 profile, and the pure parts of the adb transport a profile drives.

Device selection, server addresses, quoting and pinning are pure functions: tested here
with values, not with a device. The transport itself is tested against a real adbd in
tests/integration/test_adb.py.
"""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ConfigError, DeviceError, TransientError
from harness.profiles import load_profile
from harness.transports.adb import choose_serial, parse_server, shell_line, wrap_root
from harness.transports.pinning import pin_prefix
from tests.fixtures.sysfs import PIXEL7_RAILS
from workloads.meters.base import group_channels

# ---- devices/pixel7.toml ----------------------------------------------------------------


def test_pixel7_profile_loads_as_a_rooted_adb_device() -> None:
    profile = load_profile("pixel7")
    assert (profile.connection.transport, profile.agent.root, profile.energy.meter) == ("adb", "su", "odpm")


def test_pixel7_python_is_termux_given_as_one_path_because_su_wraps_the_whole_line() -> None:
    assert load_profile("pixel7").agent.python == ("/data/data/com.termux/files/usr/bin/python3",)


def test_pixel7_clusters_are_tensor_g2_little_mid_big() -> None:
    clusters = load_profile("pixel7").cpu.clusters
    assert dict(clusters) == {"little": (0, 1, 2, 3), "mid": (4, 5), "big": (6, 7)}


def test_pixel7_pins_the_agent_to_the_x1_cores() -> None:
    cpu = load_profile("pixel7").cpu
    assert pin_prefix(cpu.clusters[cpu.pin]) == ["taskset", "c0"]


@pytest.mark.parametrize(
    ("rail", "group"),
    [
        ("S2M_VDD_CPUCL2", "cpu_big"),
        ("S3M_VDD_CPUCL1", "cpu_mid"),
        ("S4M_VDD_CPUCL0", "cpu_little"),
        ("S5M_VDD_INT", "fabric"),
        ("S1M_VDD_MIF", "memory"),
        ("S4S_VDD2H_MEM", "memory"),
        ("S5S_VDDQ_MEM", "memory"),
        ("S10S_VDD2L", "memory"),
        ("S2S_VDD_G3D", "gpu"),
        ("S9M_VDD_G3D", "gpu"),
        ("S8S_VDD_G3D_L2", "gpu"),
        ("S2S_VDD_G3D_L2", "gpu"),
        ("S10M_VDD_TPU", "tpu"),
        ("S10S_VDD_TPU", "tpu"),
        ("S9S_VDD_AOC", "aoc"),
        ("L2S_VDD_AOC_RET", "aoc"),
        ("S6M_VDD_CPUCL2_M", "other"),
        ("VSYS_PWR_MODEM", "other"),
        ("VSYS_PWR_DISPLAY", "other"),
    ],
)
def test_pixel7_rail_groups_put_each_odpm_rail_where_it_belongs(rail: str, group: str) -> None:
    groups = load_profile("pixel7").energy.rails
    assert group_channels({rail: 1.0}, groups) == {group: 1.0}


def test_pixel7_rail_groups_cover_every_cpu_rail_of_the_fixture_tree() -> None:
    groups = load_profile("pixel7").energy.rails
    rails = [r for pmic in PIXEL7_RAILS.values() for r in pmic if "CPUCL" in r]
    grouped = group_channels(dict.fromkeys(rails, 1.0), groups)
    assert grouped == {"cpu_big": 1.0, "cpu_mid": 1.0, "cpu_little": 1.0}


# ---- pinning ------------------------------------------------------------------------------


@pytest.mark.parametrize(("cores", "mask"), [([0], "1"), ([0, 1, 2, 3], "f"), ([4, 5], "30"), ([7, 6, 6], "c0")])
def test_pin_prefix_is_taskset_with_a_hex_mask(cores: list[int], mask: str) -> None:
    assert pin_prefix(cores) == ["taskset", mask]


@pytest.mark.parametrize("cores", [[], [-1], [True], [4096]])
def test_pin_prefix_refuses_cores_that_are_not_core_ids(cores: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"cpu\.clusters"):
        pin_prefix(cores)


# ---- adb server address and device choice ------------------------------------------------


def test_an_empty_adb_server_means_the_default_local_server() -> None:
    assert parse_server("") == ("127.0.0.1", 5037)


def test_an_adb_server_is_host_colon_port() -> None:
    assert parse_server("10.0.0.2:5038") == ("10.0.0.2", 5038)


@pytest.mark.parametrize("bad", ["localhost", "host:", ":5037", "host:99999", "host:abc"])
def test_a_malformed_adb_server_names_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"connection\.adb_server.*" + repr(bad).replace("\\", "\\\\")):
        parse_server(bad, source="x.toml")


def test_the_named_serial_is_chosen_among_several() -> None:
    assert choose_serial([("A", "device"), ("B", "device")], "B") == "B"


def test_the_only_device_is_chosen_without_a_serial() -> None:
    assert choose_serial([("A", "device")], "") == "A"


def test_no_device_at_all_is_transient() -> None:
    with pytest.raises(TransientError, match="no adb device attached"):
        choose_serial([], "")


def test_several_devices_without_a_serial_is_a_config_error_on_connection_serial() -> None:
    with pytest.raises(ConfigError, match=r"connection\.serial.*A \(device\), B \(offline\)"):
        choose_serial([("A", "device"), ("B", "offline")], "")


@pytest.mark.parametrize("state", ["offline", "authorizing", "connecting", "recovery"])
def test_a_device_that_may_come_back_is_transient(state: str) -> None:
    with pytest.raises(TransientError, match=state):
        choose_serial([("A", state)], "A")


def test_an_unauthorized_device_says_to_accept_the_rsa_prompt() -> None:
    with pytest.raises(DeviceError, match="accept the RSA prompt on the phone"):
        choose_serial([("A", "unauthorized")], "")


def test_a_device_without_usb_permission_says_to_install_udev_rules() -> None:
    with pytest.raises(DeviceError, match="udev rules"):
        choose_serial([("A", "no")], "")


# ---- quoting ------------------------------------------------------------------------------

_ARG = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=20)


@given(st.lists(_ARG, min_size=1, max_size=6))
def test_shell_line_splits_back_into_the_same_argv(argv: list[str]) -> None:
    assert shlex.split(shell_line(argv)) == argv


@given(_ARG)
def test_su_wraps_the_whole_command_line_as_one_argument(command: str) -> None:
    assert shlex.split(wrap_root(command, "su")) == ["su", "-c", command]


def test_cwd_and_env_become_a_quoted_prefix() -> None:
    line = shell_line(["python3", "-V"], cwd="/data/local/tmp/a b", env={"X": "$(y)"})
    assert line == "cd '/data/local/tmp/a b' && X='$(y)' python3 -V"


def test_an_env_name_that_is_not_a_shell_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="'X Y'"):
        shell_line(["true"], env={"X Y": "1"})
