"""`harness doctor`: which failed checks matter for a profile, and advice for how it is reached."""

from __future__ import annotations

import pytest

from harness.doctor import Check, advice, matters, verdict
from harness.profiles import parse_profile

LOCAL = parse_profile('name = "vm"\n', source="vm.toml", default_name="vm")
PHONE = parse_profile('name = "phone"\n[connection]\ntransport = "adb"\n[thermal]\ncooldown_c = 40\n',
                      source="phone.toml", default_name="phone")
NAMED_METER = parse_profile('name = "pi"\n[energy]\nmeter = "vcgencmd"\n', source="pi.toml", default_name="pi")


def _fail(name: str, state: str = "absent") -> Check:
    return Check(name, False, "no zones exposed", "agent's generic fix", state)


def test_a_vm_without_thermal_zones_is_not_told_to_root_a_phone():
    text = advice(_fail("thermal zones"), LOCAL)
    assert "VMs and containers" in text and "root" not in text


def test_a_phone_with_unreadable_zones_is_told_how_to_get_root():
    assert '[agent].root = "su"' in advice(_fail("thermal zones", "unreadable"), PHONE)


@pytest.mark.parametrize("profile, name, needed", [
    (LOCAL, "thermal zones", False), (PHONE, "thermal zones", True),  # a cooldown needs temperatures
    (LOCAL, "energy meter", False), (NAMED_METER, "energy meter", True),  # a named meter must be there
    (LOCAL, "cpu frequency", False), (LOCAL, "torch", True),
])
def test_a_failure_matters_when_the_profile_needs_what_failed(profile, name, needed):
    assert matters(_fail(name), profile) is needed


def test_the_exit_verdict_counts_what_matters_unless_strict():
    checks = [Check("torch", True, "2.13"), Check("cpu frequency", False, "none", matters=False)]
    assert verdict(checks) == (True, "ready to measure; cpu frequency failed but this profile does not "
                                     "need them (--strict fails on them)")
    assert verdict(checks, strict=True)[0] is False
    assert verdict([Check("torch", False, "no torch")])[0] is False
