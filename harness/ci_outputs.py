"""What a CI system shows of a gate run: a Markdown summary and a JUnit XML file.

The Markdown puts warnings (device or stack mismatch, dirty tree) first, then the counts,
then one table row per case and metric, regressions first. On GitHub Actions it is appended
to ``$GITHUB_STEP_SUMMARY`` so it appears on the run's page. The JUnit file has one
``<testcase>`` per (case, metric): a regression is a ``<failure>``, an inconclusive result
``<skipped>`` with its reason, a failed case an ``<error>``, so any CI's test view lists them.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from harness.gate import GateResult, MetricVerdict, inconclusive_cases
from harness.store import atomic_write

_ORDER = {"error": 0, "regression": 1, "missing": 2, "inconclusive": 3, "improvement": 4,
          "new": 5, "pass": 6}
_ICON = {"regression": "❌", "error": "💥", "missing": "❓", "inconclusive": "⚠️",
         "improvement": "✅", "pass": "✅", "new": "🆕"}


def _fmt(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "–"


def _sorted(result: GateResult) -> list[MetricVerdict]:
    return sorted(result.verdicts, key=lambda v: (_ORDER.get(v.verdict, 9), v.case_id, v.metric))


def render_markdown(result: GateResult, *, title: str = "Regression gate") -> str:
    """The gate's result as GitHub-flavoured Markdown (warnings first)."""
    lines = [f"## {title}", ""]
    for warning in result.warnings:
        lines.append(f"> **Warning:** {warning}")
    if result.warnings:
        lines.append("")
    counts = ", ".join(f"{result.count(v)} {v}" for v in _ORDER if result.count(v))
    floors = ", ".join(f"{name} {floor:.1%}" for name, floor in result.floors)
    lines += [f"**Exit code {result.exit_code}** — {counts or 'nothing compared'}.", "",
              f"Rule `{result.rule}`, run-level α = {result.alpha:g} over {result.tests} "
              f"test(s) (Holm–Bonferroni); floors: {floors}.", ""]
    lines += [detectable_sentence(result), ""]
    if not result.compared and not result.allow_missing:
        lines += ["> **Nothing was compared**: no case of the baseline could be gated against "
                  "the candidate. The gate fails (exit 2) unless `--allow-missing`.", ""]
    for note in result.notes:
        lines.append(f"- {note}")
    rerun = inconclusive_cases(result)
    if rerun:
        lines.append(f"- Re-run with more steps: {', '.join(f'`{c}`' for c in rerun)}")
    if result.notes or rerun:
        lines.append("")
    lines += ["| case | metric | verdict | ratio | CI | p (Holm) | processes | MDE | method "
              "| reason |", "|---|---|---|---:|---|---:|---|---:|---|---|"]
    for v in _sorted(result):
        c = v.comparison
        ratio = _fmt(c.ratio, ".3f") if c else "–"
        interval = f"[{_fmt(c.ratio_ci_low, '.3f')}, {_fmt(c.ratio_ci_high, '.3f')}]" if c else "–"
        p_value = _fmt(c.p_adjusted if c and math.isfinite(c.p_adjusted) else
                       (c.p_value if c else math.nan), ".2g")
        processes = f"{c.n_baseline} vs {c.n_candidate}" if c else "–"
        reason = v.reason.replace("|", "\\|")
        lines.append(f"| `{v.case_id}` | {v.metric} | {_ICON.get(v.verdict, '')} {v.verdict} "
                     f"| {ratio} | {interval} | {p_value} | {processes} | {_fmt(v.mde, '.1%')} "
                     f"| {v.method or '–'} | {reason} |")
    return "\n".join(lines) + "\n"


def detectable_sentence(result: GateResult) -> str:
    """What the run could have detected, per metric: the worst case's MDE at power 0.9."""
    parts = [f"{name} {mde:.0%}" if math.isfinite(mde) else f"{name} unknown (too few processes)"
             for name, mde in result.detectable]
    if not parts:
        return "Smallest detectable change: nothing was tested."
    return ("Smallest change this run could detect (power "
            f"{result.power:.0%}, run-level α {result.alpha:g}, worst case): "
            + ", ".join(parts) + ". A pass says no regression larger than that went unseen "
            "with that power; the per-row MDE column has each case's own.")


def append_step_summary(markdown: str,
                        environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to ``$GITHUB_STEP_SUMMARY`` when it is set; returns the file or None."""
    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return path


def render_junit(result: GateResult, *, suite_name: str = "regression-gate") -> str:
    """JUnit XML text: one testcase per (case, metric)."""
    suite = ET.Element("testsuite", {
        "name": suite_name, "tests": str(len(result.verdicts)),
        "failures": str(result.count("regression")),
        "errors": str(result.count("error") + (result.count("missing")
                                              if not result.allow_missing else 0)),
        "skipped": str(sum(result.count(v) for v in ("inconclusive", "new", "missing")
                           if not (v == "missing" and not result.allow_missing)))})
    if result.warnings:
        properties = ET.SubElement(suite, "properties")
        for i, warning in enumerate(result.warnings):
            ET.SubElement(properties, "property", {"name": f"warning.{i}", "value": warning})
    for v in _sorted(result):
        case = ET.SubElement(suite, "testcase", {"classname": v.case_id, "name": v.metric})
        message = f"{v.verdict}: {v.reason}"
        if v.verdict == "regression":
            ET.SubElement(case, "failure", {"message": message, "type": "regression"}).text = \
                message
        elif v.verdict == "error" or (v.verdict == "missing" and not result.allow_missing):
            ET.SubElement(case, "error", {"message": message, "type": v.verdict}).text = message
        elif v.verdict in ("inconclusive", "new", "missing"):
            ET.SubElement(case, "skipped", {"message": message})
        else:
            ET.SubElement(case, "system-out").text = message
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: GateResult, path: Path | str) -> Path:
    """Write :func:`render_junit`'s XML atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_junit(result))
    return path
