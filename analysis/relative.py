"""A case's change split into a part common to its process group and a part of its own.

Cases that differ only in optimizer or kernel variant share their agent processes (a
*process group*, ``harness/schedule.py``). In the model ``log y[c, p, s] = μ_c + a[p] +
e[c, p, s]`` the process offset ``a[p]`` is the same for every case of process ``p``, so a
candidate run against a baseline run splits into

- the **common part**: the change of the group's geometric mean over its cases. It carries
  the full between-process spread σ_p (on this project's 2-core host about 9 %, so only many
  processes resolve it), and is tested once per group, unpaired over processes, as before;
- the **specific part** of case ``c``: the change of its *relative* time, its time over a
  reference made of its process-mates in the same process. ``a[p]`` cancels in the ratio,
  as it does in an in-process paired comparison; what remains between processes moved about
  1.5 % here. Welch's t on the two sides' per-process relative times, each side's variances
  moderated over the group's variants (:func:`compare_specific`).

Per process, each case's **offset** is its centred log step minus the reference cases' mean
centred log step *in the same round*, trimmed over the rounds (:func:`offsets`); centring by
each case's mean log median (``c_k``, over every process of both sides) puts variants of very
different speed (Adam beside SGD) on one scale. A case's relative time is its offset minus the
**median of its mates' offsets** in that process (:func:`relative_times`): the median keeps
one mate's own change out of everybody else's verdict. With a mean of the mates instead, one
variant slowed by ``δ`` would move each of its ``K − 1`` mates' relative times by
``−δ / (K − 1)``: with four variants a 10 % regression of one reads as three 3 %
"improvements". With the median and at least :data:`MIN_MATES` mates, one changed mate
shifts the reference by about the gap between neighbouring mates' offsets.

A regression of one variant (its kernel, its optimizer) shows in its specific part at full
size. A regression of every variant alike (the model's forward pass) shows in the common
part only. The reference set is the same on both sides and in every process: the mates
present, with a usable value, in every process of the group on both sides (:class:`Group`),
so a case that failed in one process changes no one's reference.

Not carried by the specific part: a calibration prior's σ_p or ``--run-drift`` (they describe
the spread of absolute times between processes, which the relative time does not have). What
it does carry, when the device file has it, is the calibrated spread of a variant's relative
time between separate runs (``step_time_relative.sigma_run``): a change between runs that hits
variants unequally for reasons other than the code (the host's memory bandwidth moving
against its compute between two runs moves a memory-bound update against the others).
``harness ab``, which interleaves both sides in time, is the design that cancels it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.compare import (
    PAIR_TRIM,
    Comparison,
    Prior,
    compare_units,
    run_variance,
    t_interval,
    welch_df,
)
from analysis.design import MIN_RUNS, Components, run_excess, run_of, run_sigma, within_runs
from analysis.processes import group_values, process_labels, usable
from analysis.stats import MAD_TO_SIGMA, moderated_variances, trim_mean

#: A process label is ``[run_id/]device:group:r<repeat>:a<attempt>`` (harness/schedule.py);
#: the group is what stays when the run, the repeat and the attempt are taken away.
_PROCESS = re.compile(r"^(?:.*/)?(?P<group>.+?):r\d+:a\d+$")

#: Mates a case needs before its change is split. The median of few mates moves with one
#: changed mate by about the gap between neighbours, which with 3 mates is the size of
#: their noise (one variant slowed 30 % among 4 read as a significant improvement of 17 % of
#: its mates in simulation); with 5 or more the gap is a fraction of it.
MIN_MATES = 5

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
        """How a report names the group's common row (the variants its mean is over)."""
        return f"{self.name} ({len(self.reference)} variants)"


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
        if len(reference) > MIN_MATES:  # else no case has enough mates to split
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


def medians_of(steps: pd.DataFrame, column: str, labels: np.ndarray | None = None,
               ) -> dict[str, dict[str, float]]:
    """Per case of a (measured) steps frame: process label -> median of ``column`` there,
    over usable values. ``labels``: the frame's :func:`process_labels`, when known."""
    out: dict[str, dict[str, float]] = {}
    if column not in steps.columns or not len(steps):
        return out
    values = pd.to_numeric(steps[column], errors="coerce").to_numpy(float)
    ok = usable(values)
    case, cases = _codes(steps["case_id"].astype(str).to_numpy()[ok])
    unit, units = _codes((process_labels(steps) if labels is None else labels)[ok])
    keys, medians = _group_medians(case * max(units.size, 1) + unit, values[ok])
    for k, m in zip(keys, medians, strict=True):
        out.setdefault(str(cases[k // max(units.size, 1)]), {})[
            str(units[k % max(units.size, 1)])] = float(m)
    return out


def rounds_of(steps: pd.DataFrame, column: str, labels: np.ndarray | None = None,
              ) -> pd.DataFrame | None:
    """:func:`round_table` of a (measured) steps frame; None without rounds. ``labels``: the
    frame's :func:`process_labels`, when known."""
    if "round" not in steps.columns or column not in steps.columns or not len(steps):
        return None
    return round_table(steps["case_id"].astype(str).to_numpy(),
                       process_labels(steps) if labels is None else labels,
                       pd.to_numeric(steps["round"], errors="coerce").fillna(-1).to_numpy(np.int64),
                       pd.to_numeric(steps[column], errors="coerce").to_numpy(float))


def round_table(case: np.ndarray, unit: np.ndarray, round_: np.ndarray,
                values: np.ndarray) -> pd.DataFrame:
    """One side's usable steps of shared processes, log values, indexed by (unit, round), one
    column per case (the first step of a case in a round counts; NaN where it has none).

    numpy rather than a pandas set_index/unstack: the gate builds one per side and metric, and
    a simulation calls the gate thousands of times.
    """
    keep = (round_ >= 0) & np.isfinite(values) & (values > 0)
    case_code, cases = _codes(np.asarray(case)[keep])
    unit_code, units = _codes(np.asarray(unit)[keep])
    rounds = round_[keep]
    span = int(rounds.max(initial=0)) + 1
    rows, row = np.unique(unit_code.astype(np.int64) * span + rounds, return_inverse=True)
    table = np.full(rows.size * cases.size, np.nan)
    # the first step of a case in a round counts (numpy leaves the winner of repeated
    # writes unspecified, so the repeats are dropped first)
    cell, first = np.unique(row.reshape(-1) * cases.size + case_code, return_index=True)
    table[cell] = np.log(values[keep][first])
    index = pd.MultiIndex.from_arrays([units[rows // span], rows % span],
                                      names=["unit", "round"])
    return pd.DataFrame(table.reshape(rows.size, cases.size), index=index,
                        columns=pd.Index(cases, name="case"))


def _group_medians(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and the median of each one's values (numpy's median: the middle
    value, or the mean of the two middle ones)."""
    order = np.lexsort((values, keys))
    keys, ordered = keys[order], values[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else keys[:0]
    counts = np.diff(np.r_[first, keys.size])
    return keys[first], (ordered[first + (counts - 1) // 2] + ordered[first + counts // 2]) / 2.0


def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of labels and the sorted distinct labels they index."""
    uniq, inverse = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return inverse.reshape(-1), uniq.astype(object)


def _round_offsets(rounds: pd.DataFrame, group: Group, centres: Mapping[str, float],
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per case with rounds: (process label, value) of each round where the reference cases
    are all present: its centred log step minus their mean centred log step in that round."""
    column = {str(k): i for i, k in enumerate(rounds.columns)}
    ref = list(group.reference)
    if not all(k in column for k in ref):
        return {}
    table = rounds.to_numpy(float)  # one array: a column lookup per case cost more than this
    level = (table[:, [column[k] for k in ref]] - np.array([centres[k] for k in ref])).mean(axis=1)
    units = rounds.index.get_level_values(0).to_numpy()
    out = {}
    for case in group.cases:
        if case not in column:
            continue  # this case falls back to its process medians
        rel = table[:, column[case]] - centres[case] - level  # NaN unless complete
        ok = np.isfinite(rel)
        out[case] = (units[ok], rel[ok])
    return out


def offsets(side: Medians, group: Group, centres: Mapping[str, float],
            by_round: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
            ) -> dict[str, dict[str, float]]:
    """Per case of the group and process: its centred log time minus the reference cases'
    mean centred log time *in the same round*, a :data:`~analysis.compare.PAIR_TRIM`
    trimmed mean over the process's rounds.

    Pairing by round cancels drift inside a process on the scale of a round (a few hundred
    ms), as an in-process paired comparison does: on this project's host it cut the spread
    between processes from 3.7 % to 2.3 % (ds_cnn step). ``by_round``: the side's
    :func:`_round_offsets`. Without them, or for a process without a complete round, the
    process medians stand in for the rounds.
    """
    paired: dict[str, dict[str, float]] = {}
    for case, (units, values) in (by_round or {}).items():
        labels, per_unit = group_values(units, values)
        paired[case] = {str(u): trim_mean(v, PAIR_TRIM) for u, v in zip(labels, per_unit,
                                                                             strict=True)}
    processes = sorted(set().union(*(side[k].keys() for k in group.cases)))
    out: dict[str, dict[str, float]] = {case: {} for case in group.cases}
    for p in processes:
        level = float(np.mean([math.log(side[k][p]) - centres[k] for k in group.reference]))
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
                     runs: Mapping[str, Prior | None] | None = None,
                     ) -> dict[str, Comparison]:
    """Each case's own change: its relative time, candidate over baseline.

    Per case, the relative times of the two sides' processes (:func:`relative_times`, paired
    by round when ``rounds`` are given) give a difference of means and one variance per side.
    Each side's variances are moderated over the group's variants (limma's moderated
    variances, robust to a noisier variant: :func:`analysis.stats.moderated_variances`) and
    never taken below the variant's own noise inside a process plus the group's shared part
    (:func:`_floor`), then Welch's t with Satterthwaite df. Why moderate: with four processes a side one case's
    variance has three df, and at the run-level α of fifty tests such a t needs a change many
    standard errors wide; the group's variants measure the same kind of noise, and the fitted
    prior's df say how far they agree. The ratio and interval are of the relative time;
    ``baseline_median``, ``candidate_median`` and the spread stay the case's absolute process
    medians, so a table still shows what was measured. Cases without enough mates are left out.
    ``runs``: per case, a prior whose ``sigma_run`` is the calibrated spread of its relative
    time between separate runs (``*_relative`` in the device file), added as ``2 σ_r²``.
    """
    centres = _centres(baseline, candidate, group.cases)
    by_round = [_round_offsets(rounds[i], group, centres) if rounds and rounds[i] is not None
                else {} for i in (0, 1)]
    sides = [offsets(side, group, centres, by_round[i])
             for i, side in enumerate((baseline, candidate))]
    logs = {case: (relative_times(sides[0], case, group.mates(case)),
                   relative_times(sides[1], case, group.mates(case)))
            for case in group.cases if group.splits(case)}
    n = np.array([[lb.size, lc.size] for lb, lc in logs.values()], dtype=float).reshape(-1, 2)
    moderated = []
    for side in (0, 1):  # each side's variances moderated over the group (Welch, not pooled)
        own = np.array([float(np.var(pair[side], ddof=1)) if pair[side].size > 1 else math.nan
                        for pair in logs.values()])
        post, df = moderated_variances(own, np.maximum(n[:, side] - 1, 0))
        moderated.append((np.fmax(post, _floor(own, by_round[side], list(logs))), df))
    out = {}
    for i, (case, (lb, lc)) in enumerate(logs.items()):
        out[case] = _specific(baseline, candidate, case, lb, lc,
                              (moderated[0][0][i], moderated[0][1][i]),
                              (moderated[1][0][i], moderated[1][1][i]), confidence,
                              len(group.mates(case)), run_variance((runs or {}).get(case)))
    return out


def _floor(own: np.ndarray, by_round: Mapping[str, tuple[np.ndarray, np.ndarray]],
           cases: list[str]) -> np.ndarray:
    """The least variance a variant's relative time can be given: its own noise inside a
    process (``k σ_s² / S`` from its rounds: hundreds of df, so a variant with noisier steps
    is known to be noisier) plus the between-process part the group's variants share on
    average. Where the rounds say nothing, the variant's own sample variance.

    The moderation alone would lend a variant with noisier steps its quiet mates' spread (the
    outlier test on three df per side cannot tell); a floor at the own sample variance would
    inflate a quiet variant's whenever its three-df estimate came out high by chance.
    """
    within = np.full(len(cases), math.nan)
    for i, case in enumerate(cases):
        if case not in by_round:
            continue
        units, values = by_round[case]
        code, _ = _codes(units)
        _, centre = _group_medians(code, values)
        _, mad = _group_medians(code, np.abs(values - centre[code]))
        size = np.bincount(code, minlength=centre.size)
        parts = ((MAD_TO_SIGMA * mad) ** 2 / size)[size >= 5]
        if parts.size:
            within[i] = TRIM_EFFICIENCY_K * float(np.mean(parts))
    excess = own - within
    shared = max(0.0, float(np.nanmean(excess))) if np.isfinite(excess).any() else math.nan
    return np.where(np.isfinite(within) & math.isfinite(shared), within + shared, own)


def _specific(baseline: Medians, candidate: Medians, case: str, lb: np.ndarray, lc: np.ndarray,
              var_b: tuple[float, float], var_c: tuple[float, float], confidence: float,
              mates: int, run: tuple[float, float] = (0.0, 0.0)) -> Comparison:
    absolute = [np.array(list(side[case].values()), dtype=float) for side in (baseline, candidate)]
    geo = [float(np.exp(np.log(a).mean())) for a in absolute]
    spread = (float(absolute[0].min()), float(absolute[0].max()), float(absolute[1].min()),
              float(absolute[1].max()))
    diff = float(lc.mean() - lb.mean()) if lb.size and lc.size else math.nan
    (vb, db), (vc, dc) = var_b, var_c
    usable_sides = all(math.isfinite(v) and v >= 0 and df > 0 for v, df in (var_b, var_c))
    if not (usable_sides and math.isfinite(diff)):
        return Comparison(lb.size, lc.size, geo[0], geo[1], math.exp(diff), math.nan, math.nan,
                          math.nan, confidence, "none", math.nan, math.nan, *spread, 0, 0,
                          note="too few processes to measure the spread of relative times")
    wb, wc = vb / lb.size, vc / lc.size
    se = math.sqrt(wb + wc + run[0])
    df = welch_df([(wb, db), (wc, dc), run], db + dc)
    p, low, high = t_interval(diff, se, df, confidence)
    between = f"; plus the calibrated spread between runs σ_r {math.sqrt(run[0] / 2):.1%}" if run[0] else ""
    return Comparison(lb.size, lc.size, geo[0], geo[1], math.exp(diff), low, high, p,
                      confidence, "relative", df, se, *spread, 0, 0,
                      note=(f"relative to its {mates} process-mates (the process's own offset "
                            "cancels; each side's spread moderated over the group's variants); "
                            f"a change common to all is tested in the group's row{between}"))


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
    unless every case has a usable one); σ_r likewise over the cases that have one (a case
    calibrated from too few runs to tell leaves the others' spread between runs standing)."""
    given = list(priors)
    if not given or any(p is None or not p.usable() for p in given):
        return None
    priced = [p for p in given if p is not None and p.run_df > 0]
    sigma_run = float(np.sqrt(np.mean([p.sigma_run ** 2 for p in priced]))) if priced else 0.0
    return Prior(float(np.sqrt(np.mean([p.sigma_log ** 2 for p in given]))),  # type: ignore[union-attr]
                 min(p.df for p in given),  # type: ignore[union-attr]
                 sigma_run, min((p.run_df for p in priced), default=0.0))


#: ``Var(20 % trimmed mean) ≈ k · σ² / n`` for normal samples: the per-process relative time
#: is a :data:`~analysis.compare.PAIR_TRIM` trimmed mean over rounds (a median's k is 1.57).
TRIM_EFFICIENCY_K = 1.06


def relative_components(medians: Medians, rounds: pd.DataFrame | None, cases: Iterable[str],
                        *, pool: bool = True) -> dict[str, tuple[Components, int]]:
    """Variance components of each grouped case's *relative* time on one run (calibration).

    ``sigma_s``: the robust spread of a round's relative value inside a process;
    ``sigma_median``: the observed spread of the per-process relative times (their spread
    within runs when the labels name three or more);
    ``sigma_p``: what remains between processes once ``k σ_s² / S`` is taken out
    (``k`` = :data:`TRIM_EFFICIENCY_K`); ``sigma_run``: the spread between runs, when the
    process labels name three or more (:func:`analysis.design.between_runs`). These plan a design for one variant's own change as
    :func:`analysis.design.plan` does for a whole case. The components are pooled over the
    group's variants (root mean square), as the gate's moderated t pools their spreads when
    they agree, and each comes with the number of variants pooled: the worst single variant of
    a dozen, each estimated from a few processes, would plan for noise in the estimates.
    ``pool=False``: each variant's own components instead (with the number the group would
    pool), which a calibration of many processes can afford to keep apart.
    """
    out: dict[str, tuple[Components, int]] = {}
    for group in groups(medians, medians, cases):
        centres = _centres(medians, {c: {} for c in group.cases}, group.cases)
        by_round = _round_offsets(rounds, group, centres) if rounds is not None else {}
        offset = offsets(medians, group, centres, by_round)
        own: dict[str, Components] = {}
        excess: dict[str, float] = {}
        for case in group.cases:
            per_unit = relative_times(offset, case, group.mates(case))
            if not group.splits(case) or per_unit.size < 2:
                continue
            spreads, counts = [], []
            # a round's spread around its process's value (the mates' median is one number
            # per process, so it moves no round against another)
            for values in group_values(*by_round.get(case, (np.empty(0, str), np.empty(0))))[1]:
                if values.size >= 2:
                    spreads.append(MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values)))))
                    counts.append(values.size)
            weights = np.array(counts, dtype=float) - 1.0
            sigma_s = (math.sqrt(float((np.square(spreads) * weights).sum() / weights.sum()))
                       if weights.sum() > 0 else math.nan)
            steps = float(np.median(counts)) if counts else 1.0
            run = run_of(np.array(sorted(offset[case])))
            excess[case], runs = run_excess(per_unit, run)
            sigma_run = run_sigma(excess[case])
            # processes of several runs: their spread within a run, as for a whole case
            # (analysis.design.components; σ_r is the level above)
            var_unit = (within_runs(per_unit, run) if runs >= MIN_RUNS
                        else float(np.var(per_unit, ddof=1)))
            within = TRIM_EFFICIENCY_K * sigma_s ** 2 / steps if math.isfinite(sigma_s) else 0.0
            own[case] = Components(math.sqrt(max(0.0, var_unit - within)), sigma_s,
                                   math.sqrt(var_unit), per_unit.size, steps, sigma_run, runs)
        if own and not pool:
            out |= {case: (c, len(own)) for case, c in own.items()}
        elif own:
            pooled = Components(*(_rms([getattr(c, name) for c in own.values()])
                                  for name in ("sigma_p", "sigma_s", "sigma_median")),
                                min(c.processes for c in own.values()),
                                float(np.median([c.steps_per_process for c in own.values()])),
                                _pooled_run_spread([excess[c] for c in own]),
                                min(c.runs for c in own.values()))
            out |= {case: (pooled, len(own)) for case in own}
    return out


def _pooled_run_spread(excess: list[float]) -> float:
    """σ_r of a group's variants: the mean of their σ_r² estimates, floored at 0 once (a root
    mean square of floored ones would lean upwards: with no spread between runs, half the
    estimates are negative and floored while the other half count in full)."""
    finite = [e for e in excess if math.isfinite(e)]
    return run_sigma(float(np.mean(finite))) if finite else math.nan


def _rms(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.sqrt(float(np.mean(np.square(finite)))) if finite else math.nan
