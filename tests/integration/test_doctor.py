"""`harness doctor` reports each check with the fix for what failed."""

import pytest

from harness.cli import main

pytestmark = pytest.mark.integration


def test_doctor_on_local_finds_python_and_torch(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_LOCK_DIR", str(tmp_path))
    assert main(["doctor", "--device", "local"]) == 0
    out = capsys.readouterr().out
    assert "[ok  ] reachable" in out and "[ok  ] python" in out
    assert "[ok  ] torch          python 3." in out and "torch 2." in out
    assert "free space" in out and "thermal zones" in out and "energy meter" in out


def test_doctor_names_the_fix_for_a_missing_python(capsys, tmp_path):
    profile = tmp_path / "broken.toml"
    profile.write_text('name = "broken"\n[agent]\npython = ["/nonexistent/python3"]\n'
                       f'workdir = "{tmp_path}/work"\n')
    assert main(["doctor", "--device", str(profile)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] python" in out
    assert "fix: install Python ≥ 3.10 on the device or set [agent].python" in out
