"""A case's change split into a part common to its process group and a part of its own.

Cases that differ only in optimizer or kernel variant share their agent processes (a
*process group*, ``harness/schedule.py``). In the model ``log y[c, p, s] = μ_c + a[p] +
e[c, p, s]`` the process offset ``a[p]`` is the same for every case of process ``p``, so a
candidate run against a baseline run splits into

- the **common part**: the change of the group's geometric mean over its cases. It carries
  the full between-process spread σ_p (on this project's 2-core host about 9 %, so only many
  processes resolve it), and is tested once per group, unpaired over processes, as before;
- the **specific part** of case ``c``: the change of its *relative* time, its process
  median over a reference made of its process-mates in the same process. ``a[p]`` cancels
  in the ratio, as it does in an in-process paired comparison; what remains between
  processes moved about 1 % here. Welch's t on the log relative times of the two sides'
  processes, like any unpaired comparison.

The reference of process ``p`` is the **median over the mates of their centred log medians**,
``median_k (log m[k, p] − c_k)``, where ``c_k`` is mate ``k``'s mean log median over every
process of both sides. Centring puts variants of very different speed (Adam beside SGD) on
one scale; the median keeps one mate's own change out of everybody else's verdict. With a
geometric mean of the mates instead, one variant slowed by ``δ`` would move each of its
``K − 1`` mates' relative times by ``−δ / (K − 1)``: with four variants a 10 % regression of
one reads as three 3 % "improvements". With the median and at least three mates, one
changed mate shifts the reference by no more than the noise between neighbouring mates.

A regression of one variant (its kernel, its optimizer) shows in its specific part at full
size. A regression of every variant alike (the model's forward pass) shows in the common
part only. The reference set is the same on both sides and in every process: the mates
present, with a usable value, in every process of the group on both sides (:class:`Group`),
so a case that failed in one process changes no one's reference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.compare import PAIR_TRIM, Comparison, Prior, compare_units, t_interval
from analysis.design import Components
from analysis.processes import group_values, process_labels, usable
from analysis.stats import trim_mean, variance_prior

#: A process label is ``[run_id/]device:group:r<repeat>:a<attempt>`` (harness/schedule.py);
#: the group is what stays when the run, the repeat and the attempt are taken away.
_PROCESS = re.compile(r"^(?:.*/)?(?P<group>.+?):r\d+:a\d+$")

#: Mates a case needs before its change is split: with fewer, the median of the mates is a
#: mean of two, and one changed mate moves the other's reference by half its change.
MIN_MATES = 3

#: Per side and case: process label -> median of the column in that process.
Medians = Mapping[str, Mapping[str, float]]


def group_of(process: str) -> str:
    """The process group a process label belongs to (the label itself when unparsable)."""
    match = _PROCESS.match(process)
    return match.group("group") if match else process


@dataclass(frozen=True)
class Group:
    """Cases that share their processes on both sides, and the mates each is measured against.

    ``cases``: every compared case of the group; ``reference``: those with a usable value in
    every process of the group on both sides (the common denominator of relative times).
    """

    name: str
    cases: tuple[str, ...]
    reference: tuple[str, ...]

    def mates(self, case: str) -> tuple[str, ...]:
        return tuple(k for k in self.reference if k != case)

    def splits(self, case: str) -> bool:
        """Whether the case has enough mates for its own part to be tested (:data:`MIN_MATES`)."""
        return len(self.mates(case)) >= MIN_MATES

    @property
    def label(self) -> str:
        """How a report names the group's common row."""
        return f"{self.name} (all {len(self.cases)} variants)"


def _group_of_case(processes: Iterable[str]) -> str | None:
    names = {group_of(p) for p in processes}
    return names.pop() if len(names) == 1 else None


def groups(baseline: Medians, candidate: Medians, cases: Iterable[str]) -> list[Group]:
    """The process groups of ``cases`` that hold at least two cases on both sides.

    A case belongs to a group when all its processes, on each side, carry that group's
    name; a case run alone (``--isolate``, or a run from before process groups) has a group
    of its own and no mates.
    """
    members: dict[str, list[str]] = {}
    for case in cases:
        b, c = baseline.get(case, {}), candidate.get(case, {})
        if not b or not c:
            continue
        name_b, name_c = _group_of_case(b), _group_of_case(c)
        if name_b is not None and name_b == name_c:
            members.setdefault(name_b, []).append(case)
    out = []
    for name, names in sorted(members.items()):
        if len(names) < 2:
            continue
        processes = [set().union(*(side[k].keys() for k in names)) for side in (baseline, candidate)]
        reference = tuple(k for k in names
                          if all(processes[i] <= set(side[k]) for i, side in
                                 enumerate((baseline, candidate))))
        out.append(Group(name, tuple(names), reference))
    return out


def _geomean_rows(side: Medians, cases: tuple[str, ...], processes: list[str]) -> np.ndarray:
    """Per process, the geometric mean over ``cases`` of their medians."""
    logs = np.array([[np.log(side[k][p]) for p in processes] for k in cases], dtype=float)
    return np.exp(logs.mean(axis=0))


def _centres(baseline: Medians, candidate: Medians, cases: tuple[str, ...]) -> dict[str, float]:
    """Each case's mean log median over every process of both sides."""
    return {k: float(np.mean(np.log([*baseline[k].values(), *candidate[k].values()])))
            for k in cases}


def medians_of(steps: pd.DataFrame, column: str) -> dict[str, dict[str, float]]:
    """Per case of a (measured) steps frame: process label -> median of ``column`` there,
    over usable values."""
    out: dict[str, dict[str, float]] = {}
    if column not in steps.columns or not len(steps):
        return out
    values = pd.to_numeric(steps[column], errors="coerce").to_numpy(float)
    ok = usable(values)
    keys = pd.DataFrame({"case": steps["case_id"].astype(str).to_numpy()[ok],
                         "unit": process_labels(steps)[ok], "value": values[ok]})
    for (case, unit), median in keys.groupby(["case", "unit"], sort=True)["value"].median().items():
        out.setdefault(str(case), {})[str(unit)] = float(median)
    return out


def rounds_of(steps: pd.DataFrame, column: str) -> pd.DataFrame | None:
    """:func:`round_table` of a (measured) steps frame; None without rounds."""
    if "round" not in steps.columns or column not in steps.columns or not len(steps):
        return None
    return round_table(steps["case_id"].astype(str).to_numpy(), process_labels(steps),
                       pd.to_numeric(steps["round"], errors="coerce").fillna(-1).to_numpy(np.int64),
                       pd.to_numeric(steps[column], errors="coerce").to_numpy(float))


def round_table(case: np.ndarray, unit: np.ndarray, round_: np.ndarray,
                values: np.ndarray) -> pd.DataFrame:
    """One side's usable steps of shared processes, log values, indexed by (unit, round), one
    column per case (the first step of a case in a round counts; NaN where it has none)."""
    keep = (round_ >= 0) & np.isfinite(values) & (values > 0)
    frame = pd.DataFrame({"case": case[keep], "unit": unit[keep], "round": round_[keep],
                          "log": np.log(values[keep])})
    frame = frame.drop_duplicates(["unit", "round", "case"])
    return frame.set_index(["unit", "round", "case"])["log"].unstack("case")


def offsets(side: Medians, group: Group, centres: Mapping[str, float],
            rounds: pd.DataFrame | None = None) -> dict[str, dict[str, float]]:
    """Per case of the group and process: its centred log time minus the reference cases'
    mean centred log time *in the same round*, a :data:`~analysis.compare.PAIR_TRIM`
    trimmed mean over the process's rounds.

    Pairing by round cancels drift inside a process on the scale of a round (a few hundred
    ms), as an in-process paired comparison does: on this project's host it cut the spread
    between processes from 3.7 % to 2.3 % (ds_cnn step). Without ``rounds``
    (:func:`round_table`), or for a process without a complete round, the process medians
    stand in for the rounds.
    """
    ref = list(group.reference)
    centre = np.array([centres[k] for k in ref])
    paired: dict[str, dict[str, float]] = {}
    if rounds is not None and all(k in rounds.columns for k in group.cases):
        level = (rounds[ref].to_numpy(float) - centre).mean(axis=1)  # NaN unless complete
        units = rounds.index.get_level_values(0).to_numpy()
        for case in group.cases:
            rel = rounds[case].to_numpy(float) - centres[case] - level
            ok = np.isfinite(rel)
            labels, values = group_values(units[ok], rel[ok])
            paired[case] = {str(u): trim_mean(v, PAIR_TRIM) for u, v in zip(labels, values,
                                                                                 strict=True)}
    processes = sorted(set().union(*(side[k].keys() for k in group.cases)))
    out: dict[str, dict[str, float]] = {case: {} for case in group.cases}
    for p in processes:
        level = float(np.mean([math.log(side[k][p]) - centres[k] for k in ref]))
        for case in group.cases:
            if p not in side[case]:
                continue
            value = paired.get(case, {}).get(p, math.nan)
            out[case][p] = value if math.isfinite(value) else (
                math.log(side[case][p]) - centres[case] - level)
    return out


def relative_times(offset: Mapping[str, Mapping[str, float]], case: str,
                   mates: tuple[str, ...]) -> np.ndarray:
    """The case's log time over its reference, per process where it has one: its offset
    (:func:`offsets`) minus the median of its mates' offsets in that process.

    The median keeps one mate's own change out of everybody else's verdict (module doc);
    taking it over per-process offsets rather than per round keeps the shift that one changed
    mate can cause to the gap between neighbouring mates' *process* values (about 1 %).
    """
    processes = sorted(offset[case])
    return np.array([offset[case][p] - float(np.median([offset[k][p] for k in mates]))
                     for p in processes], dtype=float)


def compare_specific(baseline: Medians, candidate: Medians, group: Group, *, confidence: float,
                     rounds: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                     ) -> dict[str, Comparison]:
    """Each case's own change: its relative time, candidate over baseline.

    Per case, the log relative times of the two sides' processes (:func:`relative_times`,
    paired by round when ``rounds`` are given) give a difference of means and a pooled
    within-side variance. The variances of the group's cases are moderated together
    (limma's moderated t, :func:`analysis.stats.variance_prior`): with four processes a side
    one case's variance has six degrees of freedom, and at the run-level α of fifty tests a t
    on six df needs a change seven standard errors wide; the group's cases measure the same
    kind of noise, and the prior's own df say how far they agree. Total df never exceed the
    group's pooled df. The ratio and interval are of the relative time; ``baseline_median``,
    ``candidate_median`` and the spread stay the case's absolute process medians, so a table
    still shows what was measured. Cases without enough mates are left out.
    """
    centres = _centres(baseline, candidate, group.cases)
    sides = [offsets(side, group, centres, rounds[i] if rounds else None)
             for i, side in enumerate((baseline, candidate))]
    logs = {case: (relative_times(sides[0], case, group.mates(case)),
                   relative_times(sides[1], case, group.mates(case)))
            for case in group.cases if group.splits(case)}
    variances, dfs = [], []
    for lb, lc in logs.values():
        d = lb.size + lc.size - 2
        ss = float(((lb - lb.mean()) ** 2).sum() + ((lc - lc.mean()) ** 2).sum()) if d > 0 else math.nan
        variances.append(ss / d if d > 0 else math.nan)
        dfs.append(float(d))
    s0, d0 = variance_prior(variances, dfs)
    pooled_df = float(sum(d for d in dfs if d > 0))
    out = {}
    for (case, (lb, lc)), s2, d in zip(logs.items(), variances, dfs, strict=True):
        out[case] = _specific(baseline, candidate, case, lb, lc, s2, d, (s0, d0), pooled_df,
                              confidence, len(group.mates(case)))
    return out


def _specific(baseline: Medians, candidate: Medians, case: str, lb: np.ndarray, lc: np.ndarray,
              s2: float, d: float, prior: tuple[float, float], pooled_df: float,
              confidence: float, mates: int) -> Comparison:
    absolute = [np.array(list(side[case].values()), dtype=float) for side in (baseline, candidate)]
    geo = [float(np.exp(np.log(a).mean())) for a in absolute]
    spread = (float(absolute[0].min()), float(absolute[0].max()), float(absolute[1].min()),
              float(absolute[1].max()))
    s0, d0 = prior
    if math.isfinite(s0):
        variance = s0 if math.isinf(d0) else (d0 * s0 + (d * s2 if d > 0 else 0.0)) / (d0 + d)
        df = min(d0 + d, pooled_df)
    else:
        variance, df = s2, d
    diff = float(lc.mean() - lb.mean())
    if not (math.isfinite(variance) and df > 0):
        return Comparison(lb.size, lc.size, geo[0], geo[1], math.exp(diff), math.nan, math.nan,
                          math.nan, confidence, "none", math.nan, math.nan, *spread, 0, 0,
                          note="too few processes to measure the spread of relative times")
    se = math.sqrt(variance * (1.0 / lb.size + 1.0 / lc.size))
    p, low, high = t_interval(diff, se, df, confidence)
    return Comparison(lb.size, lc.size, geo[0], geo[1], math.exp(diff), low, high, p,
                      confidence, "relative", df, se, *spread, 0, 0,
                      note=(f"relative to its {mates} process-mates (the process's own offset "
                            "cancels; spread moderated over the group's variants); a change "
                            "common to all is tested in the group's row"))


def compare_common(baseline: Medians, candidate: Medians, group: Group, *, confidence: float,
                   prior: Prior | None = None) -> Comparison:
    """The group's common change: geometric mean over its reference cases, per process."""
    sides = []
    for side in (baseline, candidate):
        processes = sorted(set().union(*(side[k].keys() for k in group.reference)))
        sides.append(_geomean_rows(side, group.reference, processes))
    comparison = compare_units(sides[0], sides[1], confidence=confidence, prior=prior)
    note = (f"geometric mean of {len(group.reference)} variants per process: the change they "
            "share, against the full spread between processes")
    return replace(comparison, note=f"{comparison.note}; {note}" if comparison.note else note)


def combined_prior(priors: Iterable[Prior | None]) -> Prior | None:
    """One prior for a group's common part: the RMS of its cases' σ_p, the fewest df (None
    unless every case has a usable one)."""
    usable = list(priors)
    if not usable or any(p is None or not p.usable() for p in usable):
        return None
    sigma = float(np.sqrt(np.mean([p.sigma_log ** 2 for p in usable])))  # type: ignore[union-attr]
    return Prior(sigma, min(p.df for p in usable))  # type: ignore[union-attr]


#: ``Var(20 % trimmed mean) ≈ k · σ² / n`` for normal samples: the per-process relative time
#: is a :data:`~analysis.compare.PAIR_TRIM` trimmed mean over rounds (a median's k is 1.57).
TRIM_EFFICIENCY_K = 1.06


def relative_components(medians: Medians, rounds: pd.DataFrame | None,
                        cases: Iterable[str]) -> dict[str, tuple[Components, int]]:
    """Variance components of each grouped case's *relative* time on one run (calibration).

    ``sigma_s``: the robust spread of a round's relative value inside a process;
    ``sigma_median``: the observed spread of the per-process relative times;
    ``sigma_p``: what remains between processes once ``k σ_s² / S`` is taken out
    (``k`` = :data:`TRIM_EFFICIENCY_K`). These plan a design for one variant's own change as
    :func:`analysis.design.plan` does for a whole case. The components are pooled over the
    group's variants (root mean square), as the gate's moderated t pools their spreads when
    they agree, and each comes with the number of variants pooled: the worst single variant of
    a dozen, each estimated from a few processes, would plan for noise in the estimates.
    """
    out: dict[str, tuple[Components, int]] = {}
    for group in groups(medians, medians, cases):
        centres = _centres(medians, {c: {} for c in group.cases}, group.cases)
        offset = offsets(medians, group, centres, rounds)
        own: dict[str, Components] = {}
        for case in group.cases:
            if not group.splits(case):
                continue
            mates = group.mates(case)
            units = sorted(offset[case])
            per_unit = relative_times(offset, case, mates)
            spreads, counts = [], []
            if rounds is not None and case in rounds.columns:
                ref = {u: float(np.median([offset[k][u] for k in mates])) for u in units}
                ref_level = (rounds[list(group.reference)].to_numpy(float) -
                             np.array([centres[k] for k in group.reference])).mean(axis=1)
                labels = rounds.index.get_level_values(0).to_numpy()
                rel = rounds[case].to_numpy(float) - centres[case] - ref_level
                ok = np.isfinite(rel)
                for unit, values in zip(*group_values(labels[ok], rel[ok]), strict=True):
                    if str(unit) in ref and values.size >= 2:
                        values = values - ref[str(unit)]
                        spreads.append(1.4826 * float(np.median(np.abs(values - np.median(values)))))
                        counts.append(values.size)
            weights = np.array(counts, dtype=float) - 1.0
            sigma_s = (math.sqrt(float((np.square(spreads) * weights).sum() / weights.sum()))
                       if weights.sum() > 0 else math.nan)
            steps = float(np.median(counts)) if counts else 1.0
            if per_unit.size < 2:
                continue
            var_unit = float(np.var(per_unit, ddof=1))
            within = TRIM_EFFICIENCY_K * sigma_s ** 2 / steps if math.isfinite(sigma_s) else 0.0
            own[case] = Components(math.sqrt(max(0.0, var_unit - within)), sigma_s,
                                   math.sqrt(var_unit), per_unit.size, steps)
        if own:
            pooled = Components(*(_rms([getattr(c, name) for c in own.values()])
                                  for name in ("sigma_p", "sigma_s", "sigma_median")),
                                min(c.processes for c in own.values()),
                                float(np.median([c.steps_per_process for c in own.values()])))
            out |= {case: (pooled, len(own)) for case in own}
    return out


def _rms(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.sqrt(float(np.mean(np.square(finite)))) if finite else math.nan
