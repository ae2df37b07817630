"""The plots of a smoke-shaped report as Chromium draws them: no raw column names in legends,
readable log-axis ticks, loss curves that stay apart, no single-column stability table.

Saves a screenshot to ``test-artifacts/report-plots.png`` for a person to look at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import reports
from reports.synthetic import SyntheticSpec, write_synthetic_run
from tests.integration.test_report_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _need

pytestmark = pytest.mark.integration
RAW_NAME = re.compile(r"(_ns|_bytes|_j|_gbs|_gflops|_khz|_c)$")
# 3 workloads × 3 optimizers × 2 kernels = 18 loss curves, like the smoke suite
SMOKE_LIKE = SyntheticSpec(workloads=("mlp", "cnn", "rnn"), optimizers=("nag", "adam", "sgd"),
                           kernels=("forloop", "foreach"), steps=40, warmup_steps=3, wrong_kernel=None,
                           onnx=False, calibration=False, noise_sigma=0.1)


@pytest.fixture(scope="module")
def page_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _need(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package (pip install playwright)")
        raise
    root = tmp_path_factory.mktemp("plots")
    report = reports.build_report([write_synthetic_run(root / "run", SMOKE_LIKE)], root / "report.html")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(180_000)  # a loaded 2-core host takes its time with 4 MB of inline script
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0")
        data = page.evaluate("""() => {
          const plots = {};
          for (const gd of document.querySelectorAll('.js-plotly-plot')) {
            const layout = gd._fullLayout, axes = [];
            for (const key of Object.keys(layout)) {
              const ax = layout[key];
              if (/^[xy]axis\\d*$/.test(key) && ax && ax.type === 'log' && ax._vals)
                axes.push({key, ticks: ax._vals.map(v => ({x: v.x, text: v.text}))});
            }
            plots[gd.id] = {
              legend: Array.from(gd.querySelectorAll('.legendtext')).map(t => t.textContent),
              traces: gd.data.map(t => ({name: t.name, show: t.showlegend !== false,
                                         colour: (t.line || {}).color, dash: (t.line || {}).dash})),
              logAxes: axes};
          }
          const thermal = document.querySelector('#t-thermal');
          return {plots, thermalColumns: thermal ? thermal.querySelectorAll('thead th').length : 0,
                  thermalSentence: !!document.querySelector('#t-thermal-none, #t-thermal-one')};
        }""")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-plots.png"), full_page=True)
        browser.close()
    return data


def test_no_legend_shows_a_raw_column_name(page_data):
    legends = {pid: p["legend"] for pid, p in page_data["plots"].items() if p["legend"]}
    assert legends, "no plot has a legend"
    raw = {pid: [t for t in names if RAW_NAME.search(t.strip())] for pid, names in legends.items()}
    assert not any(raw.values()), raw
    assert "whole step" in legends["plot-forest_kernels"]


def test_every_log_axis_tick_is_labelled_in_full(page_data):
    axes = [(pid, a) for pid, p in page_data["plots"].items() for a in p["logAxes"]]
    assert axes, "no log axis drawn"
    for pid, axis in axes:
        texts = [t["text"] for t in axis["ticks"]]
        assert len(texts) >= 2 and len(set(texts)) == len(texts), (pid, axis["key"], texts)
        for tick in axis["ticks"]:  # plotly's log x is log10(value)
            shown = float(re.sub(r"[^0-9.]", "", tick["text"].replace(",", "")))
            value = 10 ** tick["x"] if axis["key"].startswith(("x", "y")) else tick["x"]
            assert shown == pytest.approx(value, rel=0.02), (pid, axis["key"], tick)


def test_eighteen_loss_curves_each_have_their_own_colour_and_dash(page_data):
    traces = page_data["plots"]["plot-loss_steps"]["traces"]
    styles = {t["name"]: (t["colour"], t["dash"]) for t in traces}
    assert len(styles) == 6  # optimizer · kernel, the same style in every workload's panels
    assert len(set(styles.values())) == len(styles)
    assert len({t["colour"] for t in traces}) <= 3  # a colour per optimizer, not per line


def test_the_stability_section_is_never_a_single_column_table(page_data):
    from reports.tables import ID

    assert page_data["thermalSentence"] or page_data["thermalColumns"] > len(ID) + 1
