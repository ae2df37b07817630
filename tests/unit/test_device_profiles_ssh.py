"""The SSH board profiles shipped under devices/ load and say what their boards are."""

from __future__ import annotations

import pytest

from harness.profiles import load_profile


@pytest.mark.parametrize("name", ["rpi5", "jetson-orin-nano"])
def test_ssh_board_profiles_load_and_validate(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.connection.transport == "ssh"
    assert profile.agent.python == ("python3",)


def test_rpi5_profile_describes_one_cluster_of_four_cores_and_the_pmic_meter() -> None:
    profile = load_profile("rpi5")
    assert profile.connection.host == "rpi5"
    assert dict(profile.cpu.clusters) == {"big": (0, 1, 2, 3)}
    assert profile.energy.meter == "vcgencmd"
    assert profile.thermal.zones == ("cpu-thermal",)
    assert profile.agent.workdir == "~/.cache/odt-harness"


def test_jetson_profile_describes_two_clusters_and_the_ina3221_rails() -> None:
    profile = load_profile("jetson-orin-nano")
    assert profile.connection.host == "jetson"
    assert dict(profile.cpu.clusters) == {"cluster0": (0, 1, 2, 3), "cluster1": (4, 5)}
    assert profile.energy.meter == "jetson-ina3221"
    assert set(profile.energy.rails) == {"input", "cpu_gpu_cv", "soc"}
    assert {"cpu-thermal", "gpu-thermal", "soc0-thermal"} <= set(profile.thermal.zones)
