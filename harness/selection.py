"""Which cases a command measures: a suite or a study, narrowed by the filters.

One function, :func:`select`, used by ``bench``, ``ab`` and ``calibrate``: it loads the suite
(or the study), expands it with the filters, applies the run-wide settings every case carries
(an injected slowdown, ONNX inference) and fixes the seed once (the filters' or the suite's).
Names asked for by a filter that no case of the suite uses are returned as notes, so a
mixed list (``--kernel fused,flat`` on a suite without ``flat``) does not drop one silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness import plan
from harness.errors import ConfigError
from harness.plan import Case, Filters

OPTIMIZER_STUDY = "optimizers"  # `--study optimizers`: the bundled study suite
MAX_SLOWDOWN = 10.0


@dataclass(frozen=True)
class Selection:
    """The expanded cases (unshuffled), the seed of the run and what the filters did not find."""

    suite: str
    cases: tuple[Case, ...]
    seed: int
    study: str | None = None
    notes: tuple[str, ...] = ()


def select(filters: Filters, *, suite: str = "smoke", study: str | None = None, default_threads: int = 1,
           slowdown: float = 0.0, onnx_inference: bool = False) -> Selection:
    """Expand ``suite`` (or ``study``, which then replaces it) with ``filters``."""
    if not 0.0 <= slowdown <= MAX_SLOWDOWN:
        raise ConfigError(f"must be between 0 and {MAX_SLOWDOWN:g}, got {slowdown}", key="--inject-slowdown")
    if study:
        from harness.study import STUDY_SUITE, load_study, study_cases

        loaded = load_study(STUDY_SUITE if study == OPTIMIZER_STUDY else study)
        the_suite = loaded.suite
        cases = study_cases(loaded, filters, default_threads=default_threads)
    else:
        the_suite = plan.load_suite(suite)
        cases = plan.expand(the_suite, filters, default_threads=default_threads)
    if slowdown or onnx_inference:
        cases = [dataclasses.replace(c, slowdown=slowdown, onnx_inference=onnx_inference) for c in cases]
    seed = filters.seed if filters.seed is not None else int(the_suite.data.get("seed", 0))
    return Selection(the_suite.name, tuple(cases), seed, study, unmatched(filters, cases, the_suite.name))


def unmatched(filters: Filters, cases: list[Case] | tuple[Case, ...], suite: str) -> tuple[str, ...]:
    """One note per filter value that no selected case uses."""
    notes = []
    for flag, wanted, attr in (("--workload", filters.workloads, "workload"),
                               ("--optimizer", filters.optimizers, "optimizer"),
                               ("--kernel", filters.kernels, "kernel")):
        used = {getattr(c, attr) for c in cases}
        for name in wanted:
            if name not in used:
                notes.append(f"{flag} {name}: no case of suite {suite!r} uses it (with the other "
                             f"filters); see `harness list` for which optimizer offers which kernel")
    return tuple(notes)
