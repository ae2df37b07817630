"""Specification of the report's optional parts: optimizer study, gate calibration, ONNX
inference, and the agent's stability measurements (flags, energy reasons, memory, compile)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reports
from analysis.load import load_runs
from reports import synthetic_extras as X
from reports.build import Aggregates, aggregate_dirs
from reports.study import best_lr_table, fmt_seconds
from reports.synthetic import OPTIMIZER_FACTORS, SyntheticSpec, write_synthetic_run

SPEC = SyntheticSpec(steps=30, warmup_steps=3)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("runs") / "run-a", SPEC)


@pytest.fixture(scope="module")
def agg(run_dir: Path) -> Aggregates:
    return aggregate_dirs([run_dir], n_boot=100)


@pytest.fixture(scope="module")
def html(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = reports.build_report([run_dir], tmp_path_factory.mktemp("out") / "report.html")
    return out.read_text(encoding="utf-8")


def _copy_run(run_dir: Path, to: Path, cases: pd.DataFrame | None = None) -> Path:
    """A copy of ``run_dir`` without the optional tables, with ``cases`` when given."""
    to.mkdir()
    (to / "steps.parquet").write_bytes((run_dir / "steps.parquet").read_bytes())
    if cases is None:
        cases = pd.read_parquet(run_dir / "cases.parquet")
    cases.to_parquet(to / "cases.parquet")
    return to


def _summary(rows: list[tuple[str, float, int, bool, float]]) -> pd.DataFrame:
    """A study summary from (optimizer, lr, seed, reached, seconds) on one workload."""
    return pd.DataFrame([{
        "run_id": "r", "device": "d", "workload": "w", "optimizer": o, "lr": lr, "seed": seed,
        "target_loss": 0.5, "reached": reached, "steps_to_target": 10.0 if reached else np.nan,
        "time_to_target_s": t if reached else np.nan, "energy_to_target_j": np.nan,
        "energy_source": "none"} for o, lr, seed, reached, t in rows])


# --- loading ---------------------------------------------------------------------------------

def test_study_summary_and_profile_are_concatenated_across_runs(run_dir: Path,
                                                                tmp_path: Path) -> None:
    other = write_synthetic_run(tmp_path / "b", replace(SPEC, run_id="run-b"))
    data = load_runs([run_dir, other])
    assert set(data.study_summary["run_id"]) == {SPEC.run_id, "run-b"}
    assert set(data.profile["run_id"]) == {SPEC.run_id, "run-b"}


def test_calibration_table_gets_its_run_id_and_stored_targets(run_dir: Path) -> None:
    data = load_runs([run_dir])
    assert set(data.calibration["run_id"]) == {SPEC.run_id}
    assert data.calibration_targets == (X.CALIBRATION_TARGETS,)


def test_agent_columns_written_as_none_are_read_as_numbers(run_dir: Path, tmp_path: Path) -> None:
    cases = pd.read_parquet(run_dir / "cases.parquet")
    cases["temp_before_c"] = pd.Series([None] * len(cases), dtype=object)
    data = load_runs([_copy_run(run_dir, tmp_path / "c", cases)])
    assert data.cases["temp_before_c"].dtype == float


# --- best lr ---------------------------------------------------------------------------------

def test_best_lr_is_the_one_with_most_seeds_reaching_the_target() -> None:
    best = best_lr_table(_summary([("a", 0.1, 0, True, 1.0), ("a", 0.1, 1, False, 0),
                                   ("a", 0.01, 0, True, 5.0), ("a", 0.01, 1, True, 6.0)]))
    assert best.loc[0, "lr"] == 0.01 and best.loc[0, "runs_reached"] == 2


def test_best_lr_tie_goes_to_the_lower_median_time() -> None:
    best = best_lr_table(_summary([("a", 0.1, 0, True, 3.0), ("a", 0.01, 0, True, 2.0)]))
    assert best.loc[0, "lr"] == 0.01


def test_a_cost_is_infinite_when_half_the_seeds_missed() -> None:
    best = best_lr_table(_summary([("a", 0.1, 0, True, 1.0), ("a", 0.1, 1, False, 0)]))
    assert np.isinf(best.loc[0, "time_to_target_s"])


def test_best_lr_table_recovers_the_synthetic_study(agg: Aggregates) -> None:
    nag = agg.study_best.query("optimizer == 'nag' and workload == 'mlp'").iloc[0]
    adam = agg.study_best.query("optimizer == 'adam' and workload == 'mlp'").iloc[0]
    assert (nag["lr"], nag["steps_to_target"]) == (0.03, 21.0)  # 20 + median seed 1
    assert (adam["lr"], adam["lr_at_edge"]) == (0.01, True)  # 0.1 misses every seed
    expected = (31 * X.STEP_S * OPTIMIZER_FACTORS["adam"]) / (21 * X.STEP_S)
    assert adam["time_vs_best"] == pytest.approx(expected)


# --- study sentences -------------------------------------------------------------------------

_STUDY = re.compile(r"On (?P<dev>\S+), (?P<wl>\w+): (?P<win>\w+) reaches loss (?P<target>[\d.]+) "
                    r"fastest \((?P<t>[\d.e-]+ s) median over (?P<n>\d+) seeds, best lr "
                    r"(?P<lr>[\d.e-]+)")


def test_study_sentence_numbers_match_the_best_lr_table(agg: Aggregates) -> None:
    lines = [h for h in agg.headlines if h.table == "study"]
    assert len(lines) == len(SPEC.workloads)
    for h in lines:
        m = _STUDY.search(h.text)
        assert m, h.text
        rows = agg.study_best.loc[list(h.rows)]
        win = rows.loc[rows["time_to_target_s"].idxmin()]
        assert (m["wl"], m["win"]) == (win["workload"], win["optimizer"])
        assert (m["t"], m["n"], m["lr"]) == (fmt_seconds(win["time_to_target_s"]),
                                             str(win["runs"]), f"{win['lr']:g}")
        assert m["target"] == f"{win['target_loss']:g}"
        for _, other in rows.drop(index=win.name).iterrows():
            stated = re.search(rf"{other['optimizer']} takes ([\d.]+)× as long and ([\d.]+)× "
                               rf"the steps \(best lr ([\d.e-]+)\)", h.text)
            assert stated and stated.groups() == (f"{other['time_vs_best']:.2f}",
                                                  f"{other['steps_vs_best']:.2f}",
                                                  f"{other['lr']:g}")


def test_study_sentence_says_when_an_optimizer_misses_at_its_best_lr() -> None:
    from reports.study import study_headlines

    best = best_lr_table(_summary([("a", 0.1, 0, True, 1.0), ("b", 0.1, 0, False, 0),
                                   ("b", 0.1, 1, False, 0)]))
    (line,) = study_headlines(best)
    assert "b misses it in 2 of 2 seeds even at its best lr 0.1" in line.text


def test_study_sentences_are_in_the_answer_panel(html: str) -> None:
    answer = html.split('id="answer"', 1)[1].split("</section>", 1)[0]
    assert 'data-table="study"' in answer and "reaches loss 0.5 fastest" in answer


# --- study plots -----------------------------------------------------------------------------

def test_performance_profile_has_one_subplot_per_metric_and_hv_lines(agg: Aggregates) -> None:
    from reports.plots_study import PROFILE_TITLE, performance_profile

    fig = performance_profile(agg.profile)
    assert [a.text for a in fig.layout.annotations] == ["time to target", "steps to target"]
    assert {t.line.shape for t in fig.data} == {"hv"} and fig.layout.xaxis.type == "log"
    assert list(fig.layout.yaxis.range) == [0, 1.05]
    assert fig.layout.title.text == PROFILE_TITLE


def test_study_curves_show_each_optimizers_best_lr_only(agg: Aggregates) -> None:
    from reports.plots_study import best_curves, study_curves

    curves = best_curves(agg.data.study, agg.study_best)
    chosen = curves.groupby(["workload", "optimizer"])["lr"].unique().map(list).to_dict()
    assert chosen[("mlp", "nag")] == [0.03] and chosen[("mlp", "adam")] == [0.01]
    fig = study_curves(agg.data.study, agg.study_best)
    assert sorted(t.name for t in fig.data if t.showlegend) == ["adam", "nag"]


def test_study_curves_facet_by_workload(agg: Aggregates) -> None:
    from reports.plots_study import study_curves

    titles = [a.text for a in study_curves(agg.data.study, agg.study_best).layout.annotations]
    assert {t.split(":")[0] for t in titles} == set(SPEC.workloads)


@pytest.mark.parametrize("plot", ["profile", "study", "onnx"])
def test_html_report_has_the_optional_plot(html: str, plot: str) -> None:
    assert f'id="plot-{plot}"' in html


# --- calibration -----------------------------------------------------------------------------

def test_calibration_verdict_per_case_against_the_targets(agg: Aggregates) -> None:
    verdicts = agg.calibration_verdicts.set_index("case_id")
    good, bad = verdicts.iloc[0], verdicts.iloc[1]
    assert good["meets_targets"] and good["verdict"].startswith("meets the targets")
    assert not bad["meets_targets"] and "false alarms 15.0% > 5% ✗" in bad["verdict"]


def test_calibration_without_rate_columns_is_shown_without_verdicts(run_dir: Path,
                                                                   tmp_path: Path) -> None:
    bare = _copy_run(run_dir, tmp_path / "cal")
    pd.DataFrame({"device": ["local"], "case_id": ["c1"], "noise_cv": [0.03]}).to_parquet(
        bare / "calibration.parquet")
    page = reports.build_report([bare], tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="t-calibration"' in page and 'id="t-calibration-verdicts"' in page
    assert "meets the targets" not in page and "noise cv" in page


def test_calibration_rates_are_shown_as_percentages(html: str) -> None:
    table = html.split('id="t-calibration"', 1)[1].split("</table>", 1)[0]
    assert ">15.0%<" in table and ">2100.0%<" not in table  # trial counts stay counts


def test_no_calibration_section_without_calibration_parquet(run_dir: Path,
                                                             tmp_path: Path) -> None:
    page = reports.build_report([_copy_run(run_dir, tmp_path / "x")], tmp_path / "r.html")
    assert 'id="calibration"' not in page.read_text(encoding="utf-8")


# --- ONNX inference --------------------------------------------------------------------------

def test_onnx_speedup_is_eager_median_over_the_rows_median(agg: Aggregates) -> None:
    rows = agg.onnx.loc[agg.onnx["opt_level"] == "all"]
    assert len(rows) == len(SPEC.workloads)  # the NAG forloop case of each workload
    assert rows["speedup_vs_eager"].tolist() == pytest.approx(
        [1 / X.ONNX_LEVEL_FACTORS["all"]] * len(rows))


def test_onnx_study_gets_a_table_per_case(html: str) -> None:
    assert len(re.findall(r'id="t-onnx-\d+"', html)) == len(SPEC.workloads)


def test_unreadable_onnx_json_is_noted_not_fatal(run_dir: Path, tmp_path: Path) -> None:
    cases = pd.read_parquet(run_dir / "cases.parquet")
    cases["onnx_inference"] = cases["onnx_inference"].where(cases["onnx_inference"].isna(), "{bad")
    onnx = aggregate_dirs([_copy_run(run_dir, tmp_path / "o", cases)], n_boot=20).onnx
    assert onnx["note"].str.startswith("unreadable onnx_inference JSON").all()


# --- stability measurements ------------------------------------------------------------------

def _with_case_columns(run_dir: Path, to: Path, **columns: object) -> Aggregates:
    cases = pd.read_parquet(run_dir / "cases.parquet")
    for name, value in columns.items():
        cases[name] = value
    return aggregate_dirs([_copy_run(run_dir, to, cases)], n_boot=20)


def test_agent_flags_are_listed_per_case(run_dir: Path, tmp_path: Path) -> None:
    agg = _with_case_columns(run_dir, tmp_path / "f", warnings="hot;too-few-steps",
                             temp_after_c=91.0)
    hot = agg.warnings.loc[agg.warnings["warning"] == "hot"]
    assert len(hot) == len(agg.summary) and (hot["source"] == "agent").all()
    assert hot["detail"].str.contains("91 °C").all()
    assert (agg.warnings["warning"] == "too-few-steps").sum() == len(agg.summary)


def test_noisy_found_by_both_agent_and_report_is_one_row(tmp_path: Path) -> None:
    d = write_synthetic_run(tmp_path / "n", replace(SPEC, noise_sigma=0.4), False)
    agg = _with_case_columns(d, tmp_path / "n2", warnings="noisy")
    noisy = agg.warnings.loc[agg.warnings["warning"] == "noisy"]
    assert len(noisy) == len(agg.summary) and (noisy["source"] == "agent + report").all()


def test_estimated_energy_flag_is_not_repeated(tmp_path: Path) -> None:
    d = write_synthetic_run(tmp_path / "e", replace(SPEC, energy_source="estimated:cpu-model"),
                            False)
    agg = _with_case_columns(d, tmp_path / "e2", warnings="energy-estimated")
    rows = agg.warnings.loc[agg.warnings["warning"].str.contains("estimated")]
    assert len(rows) == len(agg.summary) and set(rows["warning"]) == {"estimated energy"}


def test_forced_warmup_and_timed_out_cooldown_are_warnings(run_dir: Path, tmp_path: Path) -> None:
    agg = _with_case_columns(run_dir, tmp_path / "w", warmup_forced=True, cooldown_timed_out=True,
                             cooldown_s=300.0)
    kinds = agg.warnings.groupby("warning").size()
    assert kinds["warm-up forced"] == kinds["long-cooldown"] == len(agg.summary)


def test_missing_energy_shows_the_agents_reason(run_dir: Path, tmp_path: Path) -> None:
    cases = pd.read_parquet(run_dir / "cases.parquet").assign(
        energy_source="none", energy_j=np.nan, energy_reason="none available: no RAPL")
    out = reports.build_report([_copy_run(run_dir, tmp_path / "z", cases)], tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "No energy readings" in page and "none available: no RAPL" in page


def test_activations_are_peak_minus_baseline_rss(agg: Aggregates) -> None:
    m = agg.memory.iloc[0]
    assert m["activation_bytes"] == m["peak_rss_bytes"] - m["baseline_rss_bytes"]


def test_compile_time_is_shown_only_for_compiled_variants(run_dir: Path, tmp_path: Path) -> None:
    from reports import tables as T

    cases = pd.read_parquet(run_dir / "cases.parquet")
    cases["compile_ns"] = np.where(cases["kernel"] == "foreach", 2_500_000_000, 0)
    agg = aggregate_dirs([_copy_run(run_dir, tmp_path / "k", cases)], n_boot=20)
    shown = {k: T.ms_if_any(v) for k, v in zip(agg.summary["kernel"], agg.summary["compile_ns"],
                                                strict=True)}
    assert shown == {"foreach": "2500.000", "forloop": "", "flat": ""}


def test_warmup_steps_and_forced_warmup_are_case_table_columns(html: str) -> None:
    head = html.split('id="t-cases"', 1)[1].split("</thead>", 1)[0]
    assert "warm-up steps" in head and "warm-up forced" in head and "compile (ms)" in head


# --- several cases of one setting ------------------------------------------------------------

def _study_like_run(run_dir: Path, to: Path) -> Path:
    """Two NAG forloop cases of one setting (as a study's lr × seed grid makes them)."""
    steps = pd.read_parquet(run_dir / "steps.parquet").astype({"case_id": str})
    cases = pd.read_parquet(run_dir / "cases.parquet")
    keep = cases["kernel"].eq("forloop")
    cases, steps = cases.loc[keep], steps.loc[steps["kernel"].astype(str).eq("forloop")]
    twin = lambda c: c.str.replace("-float32", "-float32-h0123abcd-T0.5-s1")  # noqa: E731
    cases = pd.concat([cases, cases.assign(case_id=twin(cases["case_id"]))])
    steps = pd.concat([steps, steps.assign(case_id=twin(steps["case_id"]))])
    to.mkdir()
    steps.to_parquet(to / "steps.parquet")
    cases.to_parquet(to / "cases.parquet")
    return to


def test_cases_sharing_a_setting_get_distinct_plot_labels(run_dir: Path, tmp_path: Path) -> None:
    from reports.plots import case_labels

    agg = aggregate_dirs([_study_like_run(run_dir, tmp_path / "s")], n_boot=20)
    labels = case_labels(agg.summary)
    assert labels.is_unique and labels.str.contains("h0123abcd-T0.5-s1").any()


def test_no_optimizer_sentence_when_a_setting_has_several_cases(run_dir: Path,
                                                               tmp_path: Path) -> None:
    agg = aggregate_dirs([_study_like_run(run_dir, tmp_path / "s")], n_boot=20)
    assert not [h for h in agg.headlines if h.table == "optimizers"]


def test_sentence_on_noisy_cases_carries_a_caveat(tmp_path: Path) -> None:
    d = write_synthetic_run(tmp_path / "n", replace(SPEC, noise_sigma=0.4), False)
    lines = [h for h in aggregate_dirs([d], n_boot=50).headlines if h.table == "kernels"]
    assert lines and all("both cases compared are noisy" in h.text for h in lines)


def test_csv_export_includes_the_new_tables(run_dir: Path, tmp_path: Path) -> None:
    out = reports.build_report([run_dir], tmp_path / "tables", fmt="csv")
    names = {p.name for p in out.iterdir()}
    for table in ("study_best", "performance_profile", "calibration", "onnx_inference"):
        assert f"{table}.parquet" in names


def test_the_processes_of_a_case_are_pooled_into_one_case(run_dir: Path, tmp_path: Path) -> None:
    """Repetitions (``--repeat``/processes) are the units of one case, not cases of their own."""
    cases = pd.read_parquet(run_dir / "cases.parquet")
    summary = aggregate_dirs([run_dir], n_boot=20).summary
    assert summary["case_id"].is_unique and len(summary) == cases["case_id"].nunique()
    assert (summary.loc[summary["status"] != "failed", "n_processes"] == SPEC.processes).all()


def test_calibrations_slowed_processes_are_a_case_of_their_own(run_dir: Path,
                                                               tmp_path: Path) -> None:
    steps = pd.read_parquet(run_dir / "steps.parquet")
    cases = pd.read_parquet(run_dir / "cases.parquet")
    to = tmp_path / "slow"
    to.mkdir()
    slowed = cases["repeat"] % 2 == 1
    steps.to_parquet(to / "steps.parquet")
    cases.assign(slowdown=np.where(slowed, 0.05, 0.0)).to_parquet(to / "cases.parquet")
    summary = aggregate_dirs([to], n_boot=20).summary
    assert len(summary) == 2 * cases["case_id"].nunique()
    assert summary["case_id"].str.endswith("-slow5").sum() == cases["case_id"].nunique()


def test_answer_explains_why_no_sentence_when_cases_share_a_setting(run_dir: Path,
                                                                    tmp_path: Path) -> None:
    page = reports.build_report([_study_like_run(run_dir, tmp_path / "s")], tmp_path / "r.html")
    assert "several cases share each compared setting" in page.read_text(encoding="utf-8")


def test_every_stored_set_of_rates_is_judged(agg: Aggregates) -> None:
    from reports.calibration import calibration_verdicts

    table = agg.calibration.assign(false_alarm_rate_within_run=0.0,
                                   detection_rate_within_run=1.0)
    verdict = calibration_verdicts(table).iloc[1]["verdict"]
    assert verdict.startswith("meets the targets only within one process")


def test_markdown_summary_carries_the_study_table_and_calibration_verdicts(
        run_dir: Path, tmp_path: Path) -> None:
    text = reports.build_report([run_dir], tmp_path / "s.md", fmt="md").read_text()
    assert "## Optimizer study: best lr per workload" in text and "## Gate calibration" in text
    assert "misses the targets" in text


def test_without_a_study_summary_curves_show_the_lr_that_trained_fastest(agg: Aggregates) -> None:
    from reports.plots_study import best_curves

    chosen = best_curves(agg.data.study, None).groupby(["workload", "optimizer"])["lr"].unique()
    assert chosen.map(list).to_dict()[("mlp", "nag")] == [0.03]
