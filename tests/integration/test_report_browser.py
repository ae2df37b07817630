"""The HTML report in a real browser: Debian's Chromium, headless, driven by playwright.

Skips when Chromium or playwright is missing, unless ``HARNESS_REQUIRE_REAL_PARTS=1``
(CI), which turns the skip into a failure. Never runs ``playwright install``: the browser
is the system's ``/usr/bin/chromium``. Saves a full-page screenshot to
``test-artifacts/report.png`` for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reports
from reports.synthetic import SyntheticSpec, write_synthetic_run

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _need(available: bool, what: str) -> None:
    """The project's real-parts policy: skip when missing, fail when CI requires it."""
    if available:
        return
    if os.environ.get("HARNESS_REQUIRE_REAL_PARTS") == "1":
        pytest.fail(f"missing {what} (HARNESS_REQUIRE_REAL_PARTS=1 makes this a failure)")
    pytest.skip(f"missing {what}")


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    run = write_synthetic_run(root / "run", SyntheticSpec(steps=50, warmup_steps=3,
                                                          noise_sigma=0.15))
    return reports.build_report([run], root / "report.html")


@pytest.fixture(scope="module")
def browser_page(report_path: Path) -> Iterator[tuple[Any, list[str]]]:
    _need(Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None,
          f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package (pip install playwright)")
        raise
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: problems.append(f"network request: {r.url}")
                if not r.url.startswith(("file:", "data:", "blob:", "about:")) else None)
        page.goto(report_path.as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0")
        yield page, problems
        browser.close()


def _column_values(page: Any, table_id: str, col: int) -> list[float]:
    return page.eval_on_selector_all(
        f"#{table_id} tbody tr", f"rows => rows.map(r => parseFloat(r.cells[{col}]"
        ".getAttribute('data-sort')))")


def _header_index(page: Any, table_id: str, title: str) -> int:
    titles = page.eval_on_selector_all(f"#{table_id} thead th", "ths => ths.map(t => t.textContent)")
    return titles.index(title)


def test_report_opens_without_console_errors_or_network(browser_page: tuple[Any, list[str]]
                                                         ) -> None:
    _, problems = browser_page
    assert problems == []


def test_every_plot_renders_an_svg(browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    plot_ids = page.eval_on_selector_all(".plotly-graph-div", "els => els.map(e => e.id)")
    assert len(plot_ids) >= 8
    for plot_id in plot_ids:
        assert page.locator(f"#{plot_id} .plotly .main-svg").count() > 0, plot_id


def test_study_calibration_and_inference_plots_render(browser_page: tuple[Any, list[str]]
                                                     ) -> None:
    page, _ = browser_page
    for plot_id in ("plot-profile", "plot-study", "plot-onnx"):
        assert page.locator(f"#{plot_id} .plotly .main-svg").count() > 0, plot_id
    assert page.locator("#t-calibration-verdicts tbody tr").count() > 0


def test_clicking_a_header_sorts_the_table(browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    col = _header_index(page, "t-cases", "median step (ms)")
    page.click(f"#t-cases thead th[data-col='{col}']")
    ascending = _column_values(page, "t-cases", col)
    page.click(f"#t-cases thead th[data-col='{col}']")
    descending = _column_values(page, "t-cases", col)
    assert ascending == sorted(ascending) and descending == sorted(descending, reverse=True)


def test_filter_box_hides_rows_that_do_not_match(browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    page.fill("input[data-table='t-cases']", "mlp foreach")
    visible = page.eval_on_selector_all(
        "#t-cases tbody tr", "rows => rows.filter(r => r.style.display !== 'none')"
        ".map(r => r.textContent)")
    page.fill("input[data-table='t-cases']", "")
    assert visible and all("mlp" in row and "foreach" in row for row in visible)


def test_answer_sentences_are_shown_first(browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    first_section = page.eval_on_selector("main section", "s => s.id")
    assert first_section == "answer" and page.locator("#answer li.headline").count() > 0


def test_full_page_screenshot_is_saved(browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "report.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
