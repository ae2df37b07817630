"""Specification of the reports package: loading, aggregation, sentences and outputs."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reports
from analysis.load import ResultsError, load_runs
from analysis.stats import bootstrap_medians, bootstrap_medians_resampled, percentile_interval
from reports.build import Aggregates, aggregate_dirs
from reports.synthetic import KERNEL_FACTORS, SyntheticSpec, write_synthetic_run

SPEC = SyntheticSpec(steps=40, warmup_steps=3)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("runs") / "run-a", SPEC)


@pytest.fixture(scope="module")
def agg(run_dir: Path) -> Aggregates:
    return aggregate_dirs([run_dir], n_boot=300)


@pytest.fixture(scope="module")
def html(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = reports.build_report([run_dir], tmp_path_factory.mktemp("out") / "report.html")
    return out.read_text(encoding="utf-8")


# --- loading ---------------------------------------------------------------------------------

def test_load_fails_naming_the_missing_parquet(tmp_path: Path) -> None:
    tmp_path.joinpath("cases.parquet").write_bytes(b"")
    with pytest.raises(ResultsError, match="steps.parquet"):
        load_runs([tmp_path])


def test_load_fills_absent_optional_case_columns(run_dir: Path, tmp_path: Path) -> None:
    cases = pd.read_parquet(run_dir / "cases.parquet").drop(columns=["energy_j", "throttled"])
    cases.to_parquet(tmp_path / "cases.parquet")
    (tmp_path / "steps.parquet").write_bytes((run_dir / "steps.parquet").read_bytes())
    data = load_runs([tmp_path])
    assert data.cases["energy_j"].isna().all() and not data.cases["throttled"].any()


def test_load_concatenates_runs_keeping_run_ids(run_dir: Path, tmp_path: Path) -> None:
    other = write_synthetic_run(tmp_path / "b", replace(SPEC, run_id="run-b", device="pixel7"))
    data = load_runs([run_dir, other])
    assert set(data.cases["run_id"]) == {SPEC.run_id, "run-b"}


# --- statistics ------------------------------------------------------------------------------

def test_bootstrap_median_interval_contains_the_sample_median() -> None:
    values = np.random.default_rng(1).lognormal(size=501)
    lo, hi = percentile_interval(bootstrap_medians(values, 500))
    assert lo <= np.median(values) <= hi


def test_bootstrap_of_constant_sample_is_that_constant() -> None:
    assert np.all(bootstrap_medians(np.full(10, 3.0), 50) == 3.0)


@pytest.mark.parametrize("n", [4, 5])
def test_exact_bootstrap_median_matches_full_enumeration_of_resamples(n: int) -> None:
    import itertools

    data = np.arange(n) * 10.0
    exact: dict[float, float] = {}
    for resample in itertools.product(range(n), repeat=n):
        median = float(np.median(data[list(resample)]))
        exact[median] = exact.get(median, 0.0) + n ** -n
    draws = bootstrap_medians(data, 100_000, np.random.default_rng(3))
    for value, prob in exact.items():
        assert np.mean(draws == value) == pytest.approx(prob, abs=0.006)


def test_exact_bootstrap_median_agrees_with_explicit_resampling_on_large_samples() -> None:
    values = np.random.default_rng(4).lognormal(size=2000)
    fast = bootstrap_medians(values, 4000, np.random.default_rng(5))
    slow = bootstrap_medians_resampled(values, 4000, np.random.default_rng(6))
    spread = np.std(slow)
    assert np.allclose(np.quantile(fast, [0.025, 0.5, 0.975]),
                       np.quantile(slow, [0.025, 0.5, 0.975]), atol=0.15 * spread)


# --- aggregation -----------------------------------------------------------------------------

def test_summary_excludes_warmup_steps(agg: Aggregates) -> None:
    ok = agg.summary.loc[agg.summary["status"] != "failed"]
    assert (ok["n_steps"] == SPEC.steps * SPEC.processes).all()


def test_summary_pools_a_cases_processes_and_shows_their_spread(agg: Aggregates) -> None:
    ok = agg.summary.loc[agg.summary["status"] != "failed"]
    assert (ok["n_processes"] == SPEC.processes).all()
    assert ((ok["process_min_ns"] <= ok["median_step_ns"])
            & (ok["median_step_ns"] <= ok["process_max_ns"])).all()
    assert len(agg.data.processes) == len(agg.summary) * SPEC.processes


def test_summary_median_lies_within_its_interval_and_p10_p90(agg: Aggregates) -> None:
    s = agg.summary
    assert ((s["ci_lo_ns"] <= s["median_step_ns"]) & (s["median_step_ns"] <= s["ci_hi_ns"])).all()
    assert ((s["p10_ns"] <= s["median_step_ns"]) & (s["median_step_ns"] <= s["p90_ns"])).all()


def test_kernel_update_speedup_recovers_the_synthetic_factor(agg: Aggregates) -> None:
    row = agg.kernels.query("optimizer == 'nag' and variant == 'foreach' and metric == 'update_ns'"
                            " and workload == 'mlp'").iloc[0]
    assert row["ci_lo"] <= 1 / KERNEL_FACTORS["foreach"] <= row["ci_hi"]
    assert row["verdict"] == "faster"


def test_kernel_step_speedup_is_diluted_by_the_other_phases(agg: Aggregates) -> None:
    rows = agg.kernels.query("optimizer == 'nag' and variant == 'foreach' and workload == 'mlp'")
    by_metric = rows.set_index("metric")["speedup"]
    assert 1.0 < by_metric["step_ns"] < by_metric["update_ns"]


def test_variant_that_failed_correctness_is_reported_wrong_not_timed(agg: Aggregates) -> None:
    rows = agg.kernels.query("optimizer == 'nag' and variant == 'flat'")
    assert (rows["verdict"] == "wrong").all() and rows["speedup"].isna().all()


def test_optimizers_are_compared_against_nag_with_the_same_kernel(agg: Aggregates) -> None:
    row = agg.optimizers.query("variant == 'adam foreach' and workload == 'cnn'").iloc[0]
    assert row["baseline"] == "nag foreach" and row["verdict"] == "slower"


def test_optimizer_falls_back_to_nag_forloop_when_nag_variant_is_unusable(agg: Aggregates) -> None:
    row = agg.optimizers.query("variant == 'adam flat' and workload == 'cnn'").iloc[0]
    assert row["baseline"] == "nag forloop"


def test_devices_are_compared_when_runs_are_combined(run_dir: Path, tmp_path: Path) -> None:
    other = write_synthetic_run(tmp_path / "b", replace(SPEC, run_id="run-b", device="pixel7"))
    combined = aggregate_dirs([run_dir, other], n_boot=100)
    assert set(combined.devices["baseline"]) == {"local"}
    assert set(combined.devices["variant"]) == {"pixel7"}


def test_warnings_list_wrong_variants(agg: Aggregates) -> None:
    assert set(agg.warnings.loc[agg.warnings["warning"] == "wrong", "kernel"]) == {"flat"}


def test_failed_case_appears_as_warning(tmp_path: Path) -> None:
    d = write_synthetic_run(tmp_path / "f", replace(SPEC, failed_workload="mlp"), False)
    warnings = aggregate_dirs([d], n_boot=50).warnings
    assert "failed" in set(warnings["warning"])


def test_estimated_energy_is_flagged(tmp_path: Path) -> None:
    d = write_synthetic_run(tmp_path / "e", replace(SPEC, energy_source="estimated:cpu-model"),
                            False)
    warnings = aggregate_dirs([d], n_boot=50).warnings
    assert "estimated energy" in set(warnings["warning"])


def test_ceilings_place_update_against_bandwidth(agg: Aggregates) -> None:
    c = agg.ceilings.iloc[0]
    assert c["update_gbs"] == pytest.approx(c["update_bytes_per_step"] / c["median_update_ns"])
    assert c["update_bw_fraction"] == pytest.approx(c["update_gbs"] / 20.0)


# --- headline sentences ----------------------------------------------------------------------

_RATIO = r"(?P<x{0}>[\d.]+)× (?P<dir{0}>faster|slower) than `forloop` \(95 % CI (?P<lo{0}>[\d.]+)–(?P<hi{0}>[\d.]+)×\)"
_KERNEL_SENTENCE = re.compile(
    r"On (?P<dev>\S+), (?P<wl>\w+): NAG `(?P<var>\w+)` is " + _RATIO.format(1)
    + r" per training step .*; the update phase alone is " + _RATIO.format(2))


def _stated(match: re.Match[str], i: int) -> tuple[str, str, str]:
    return match[f"x{i}"], match[f"lo{i}"], match[f"hi{i}"]


def _as_stated(row: pd.Series, direction: str) -> tuple[str, str, str]:
    speed, lo, hi = row["speedup"], row["ci_lo"], row["ci_hi"]
    if direction == "slower":
        speed, lo, hi = 1 / speed, 1 / hi, 1 / lo
    return f"{speed:.2f}", f"{lo:.2f}", f"{hi:.2f}"


def test_kernel_headline_numbers_match_the_kernel_table(agg: Aggregates) -> None:
    kernel_lines = [h for h in agg.headlines if h.table == "kernels"]
    assert kernel_lines
    for h in kernel_lines:
        m = _KERNEL_SENTENCE.search(h.text)
        assert m, h.text
        step_row, update_row = (agg.kernels.loc[i] for i in h.rows)
        assert (m["wl"], m["var"]) == (step_row["workload"], step_row["variant"])
        assert (step_row["metric"], update_row["metric"]) == ("step_ns", "update_ns")
        assert _stated(m, 1) == _as_stated(step_row, m["dir1"])
        assert _stated(m, 2) == _as_stated(update_row, m["dir2"])


def test_optimizer_headline_numbers_match_the_optimizer_table(agg: Aggregates) -> None:
    lines = [h for h in agg.headlines if h.table == "optimizers"]
    assert lines
    for h in lines:
        for i in h.rows:
            row = agg.optimizers.loc[i]
            pattern = re.compile(
                rf"`{row['optimizer']}` is (?P<x>[\d.]+)× (?P<dir>faster|slower) "
                r"\(95 % CI (?P<lo>[\d.]+)–(?P<hi>[\d.]+)×\)")
            m = pattern.search(h.text)
            assert m, h.text
            assert _stated(m, "") == _as_stated(row, m["dir"])


def test_device_sentence_states_no_ratio_for_a_difference_the_engine_does_not_call(
        run_dir: Path, tmp_path: Path) -> None:
    same = write_synthetic_run(tmp_path / "s", replace(SPEC, run_id="run-s", device="pixel7",
                                                       seed=7))
    lines = [h.text for h in aggregate_dirs([run_dir, same], n_boot=100).headlines
             if h.table == "devices"]
    assert lines and all("not clearly different" in t and "×" not in t for t in lines)


def test_two_runs_sentences_quote_each_runs_own_update_ratio(run_dir: Path,
                                                              tmp_path: Path) -> None:
    other = write_synthetic_run(tmp_path / "b", replace(SPEC, run_id="run-b", seed=3))
    combined = aggregate_dirs([run_dir, other], n_boot=50)
    lines = [h for h in combined.headlines if h.table == "kernels" and len(h.rows) == 2]
    assert {combined.kernels.loc[h.rows[0], "run_id"] for h in lines} == {"synthetic-run",
                                                                            "run-b"}
    for h in lines:
        step_row, update_row = (combined.kernels.loc[i] for i in h.rows)
        assert update_row["run_id"] == step_row["run_id"], h.text


def test_headline_names_variants_that_failed_correctness(agg: Aggregates) -> None:
    assert all("`flat`" in h.text for h in agg.headlines if h.table == "kernels")


# --- HTML ------------------------------------------------------------------------------------

def test_html_report_shows_headlines(html: str, agg: Aggregates) -> None:
    assert 'class="headline"' in html and "faster than <code>forloop</code>" in html


def test_html_report_loads_nothing_from_the_network(html: str) -> None:
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?:", html)


def test_unknown_format_is_refused_naming_the_known_ones(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'pdf'.*html"):
        reports.build_report([run_dir], tmp_path / "r", fmt="pdf")


def test_html_report_inlines_plotly_js_exactly_once(html: str) -> None:
    from plotly.offline import get_plotlyjs

    assert html.count(get_plotlyjs()[:300]) == 1


@pytest.mark.parametrize("plot", ["distributions", "phases", "forest_kernels", "forest_optimizers",
                                  "loss_steps", "study", "roofline", "energy", "memory", "thermal"])
def test_html_report_has_plot(html: str, plot: str) -> None:
    assert f'id="plot-{plot}"' in html


def test_loss_curves_are_binned_to_a_bounded_number_of_points(run_dir: Path) -> None:
    from reports.plots import binned_loss

    binned = binned_loss(load_runs([run_dir]).steps, max_points=10)
    assert binned.groupby("case_id", observed=True).size().max() <= 10


# --- Markdown and CSV ------------------------------------------------------------------------

def test_markdown_summary_starts_with_the_answer(run_dir: Path, tmp_path: Path,
                                                agg: Aggregates) -> None:
    text = reports.build_report([run_dir], tmp_path / "s.md", fmt="md").read_text()
    answer = text.split("## Answer", 1)[1].split("##", 1)[0]
    assert "faster than `forloop`" in answer


def test_csv_export_writes_every_table_as_csv_and_parquet(run_dir: Path, tmp_path: Path) -> None:
    out = reports.build_report([run_dir], tmp_path / "tables", fmt="csv")
    names = {p.name for p in out.iterdir()}
    for table in ("cases", "kernels", "optimizers", "energy", "memory", "ceilings", "headlines"):
        assert {f"{table}.csv", f"{table}.parquet"} <= names


def test_csv_export_round_trips_the_kernel_speedups(run_dir: Path, tmp_path: Path,
                                                    agg: Aggregates) -> None:
    out = reports.build_report([run_dir], tmp_path / "tables", fmt="csv")
    exported = pd.read_parquet(out / "kernels.parquet")
    assert np.allclose(exported["speedup"].dropna(), agg.kernels["speedup"].dropna(), rtol=0.01)


def test_report_renders_from_required_columns_only(run_dir: Path, tmp_path: Path) -> None:
    from analysis.schema import CASE_COLUMNS, STEP_COLUMNS

    bare = tmp_path / "bare"
    bare.mkdir()
    pd.read_parquet(run_dir / "steps.parquet", columns=list(STEP_COLUMNS)).to_parquet(
        bare / "steps.parquet")
    pd.read_parquet(run_dir / "cases.parquet", columns=list(CASE_COLUMNS)).to_parquet(
        bare / "cases.parquet")
    html = reports.build_report([bare], tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="plot-distributions"' in html and "No energy readings" in html


def test_report_of_two_devices_has_a_device_section(run_dir: Path, tmp_path: Path) -> None:
    other = write_synthetic_run(tmp_path / "b", replace(SPEC, run_id="run-b", device="pixel7",
                                                         base_step_ns=SPEC.base_step_ns * 1.5))
    html = reports.build_report([run_dir, other], tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="plot-forest_devices"' in html and "On pixel7, mlp" in html


def test_device_headline_numbers_match_the_device_table(run_dir: Path, tmp_path: Path) -> None:
    other = write_synthetic_run(tmp_path / "b", replace(SPEC, run_id="run-b", device="pixel7",
                                                         base_step_ns=SPEC.base_step_ns * 1.5))
    combined = aggregate_dirs([run_dir, other], n_boot=200)
    lines = [h for h in combined.headlines if h.table == "devices"]
    assert lines
    for h in lines:
        row = combined.devices.loc[h.rows[0]]
        m = re.search(r"pixel7 is (?P<x>[\d.]+)× (?P<dir>faster|slower) than local "
                      r"\(95 % CI (?P<lo>[\d.]+)–(?P<hi>[\d.]+)×\)", h.text)
        assert m, h.text
        assert (m["x"], m["lo"], m["hi"]) == _as_stated(row, m["dir"])


def test_noisy_cases_are_flagged_above_the_cv_threshold(tmp_path: Path) -> None:
    d = write_synthetic_run(tmp_path / "n", replace(SPEC, noise_sigma=0.4), False)
    warnings = aggregate_dirs([d], n_boot=50).warnings
    assert (warnings["warning"] == "noisy").sum() == 6 * 2  # every case of 2 workloads × 6


def test_text_from_results_is_escaped_in_the_page(run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = pd.read_parquet(run_dir / "cases.parquet")
    cases.loc[0, ["status", "error_message"]] = ["failed", "<script>alert(1)</script>"]
    cases.to_parquet(bad / "cases.parquet")
    (bad / "steps.parquet").write_bytes((run_dir / "steps.parquet").read_bytes())
    html = reports.build_report([bad], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html


def test_probe_list_gives_each_device_its_own_ceilings(run_dir: Path, tmp_path: Path) -> None:
    import json

    two = tmp_path / "two"
    two.mkdir()
    for name in ("steps", "cases"):
        frame = pd.read_parquet(run_dir / f"{name}.parquet").astype({"device": str})
        pd.concat([frame, frame.assign(device="pixel7")]).to_parquet(two / f"{name}.parquet")
    (two / "probe.json").write_text(json.dumps([
        {"device": "local", "bandwidth_gbs": 20.0, "matmul_gflops": 100.0},
        {"device": "pixel7", "bandwidth_gbs": 8.0, "matmul_gflops": 30.0}]))
    ceilings = aggregate_dirs([two], n_boot=50).ceilings
    by_device = ceilings.groupby("device")["bandwidth_gbs"].first().to_dict()
    assert by_device == {"local": 20.0, "pixel7": 8.0}


def test_a_run_whose_every_case_failed_still_gets_a_report(tmp_path):
    from harness.store import RawLog, write_tables
    from workloads import schema

    run_dir = tmp_path / "failed-run"
    run_dir.mkdir()
    raw = RawLog(run_dir / "raw.jsonl")
    spec = {"case_id": "c1", "workload": "bert_tiny", "domain": "nlp", "optimizer": "nag", "kernel": "fused",
            "threads": 1, "batch": 8, "dtype": "fp32", "seed": 0}
    raw.agent_line("dev", "c1", 1, schema.dump_line(schema.Error("c1", "InjectedFault", "boom")))
    raw.event("dev", "c1", 1, "attempt_end", status="failed", spec=spec, error_kind="InjectedFault",
              error_message="boom")
    raw.close()
    write_tables(run_dir)
    html = reports.build_report([run_dir], tmp_path / "report.html").read_text()
    assert "boom" in html and "failed" in html
