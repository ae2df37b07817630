"""A run against an unreachable device: exit code 1, and the report's first line says that
nothing was measured (read in headless Chromium, as a person would see it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_report_browser import CHROMIUM, CHROMIUM_ARGS, _need

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def unreachable_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp = tmp_path_factory.mktemp("unreachable")
    profile = tmp / "nowhere.toml"
    profile.write_text(
        'name = "nowhere"\n[connection]\ntransport = "ssh"\nhost = "127.0.0.1"\n'
        f'port = {_closed_port()}\nuser = "nobody"\nconnect_timeout_s = 2\n'
        '[agent]\npython = ["python3"]\nretries = 0\n')
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--device", str(profile), "--workload", "bert_tiny",
         "--optimizer", "nag", "--kernel", "forloop,foreach", "--steps", "2", "--processes", "1", "--out", str(tmp),
         "--run-id", "r", "--json", str(tmp / "summary.json")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc, tmp / "r"


def test_a_run_that_measured_nothing_exits_non_zero_and_says_so(unreachable_run):
    import json

    proc, run_dir = unreachable_run
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("Nothing was measured: 0 of 2 planned cases")
    summary = json.loads((run_dir.parent / "summary.json").read_text())
    assert summary["nothing_measured"] and summary["measured"] == 0 and summary["exit_code"] == 1
    assert {r["status"] for r in summary["not_measured"]} <= {"unreachable", "transient", "not-run"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["nothing_measured"] and manifest["cases_measured"] == 0 and manifest["cases_planned"] == 2


def test_the_reports_first_line_in_a_browser_says_nothing_was_measured(unreachable_run):
    _, run_dir = unreachable_run
    _need(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package (pip install playwright)")
        raise
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(180_000)  # a loaded 2-core host takes its time with 4 MB of inline script
        page.goto((run_dir / "report.html").as_uri(), wait_until="load")
        first = page.evaluate("document.body.innerText.trim().split('\\n')[0]")
        rows = page.eval_on_selector_all("#t-not-measured tbody tr", "rs => rs.map(r => r.innerText)")
        title = page.title()
        browser.close()
    assert first.startswith("Nothing was measured: 0 of 2 planned cases produced a measurement")
    assert "nowhere: unreachable" in first
    assert title.startswith("Nothing measured")
    assert len(rows) == 2 and all("reach" in r for r in rows)  # unreachable, or cannot reach
