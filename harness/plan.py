"""Suites and plans: a named set of cases, filtered by CLI options, expanded and shuffled.

A suite is a TOML file under ``harness/suites/`` (or a path): defaults for steps, warm-up,
threads, batch and dtype, and ``[[matrix]]`` blocks of workloads × optimizers × kernels
(``"*"`` means every registered name). Expansion drops optimizer/kernel pairs that the
optimizer does not offer. The order is shuffled with a recorded seed so that slow drift
(heat, battery) does not masquerade as a difference between cases.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import tomllib

from harness.errors import ConfigError
from harness.limits import SUITE_RANGES, check_number

SUITES_DIR = Path(__file__).resolve().parent / "suites"
DTYPES = ("fp32", "bf16")
MODES = ("eager", "compile", "channels_last")  # workloads.trainer.MODES
ACCELS = ("cpu", "cuda")
_SUITE_KEYS = {
    "description", "steps", "warmup", "check_steps", "threads", "batch", "dtype", "seed",
    "options", "matrix", "timeout_s", "modes", "accel", "hparams", "study", "warmup_until_stable",
    "warmup_max", "processes",
}
_MATRIX_KEYS = {"workloads", "optimizers", "kernels", "threads", "batch", "dtype", "modes", "accel"}


@dataclass(frozen=True)
class Case:
    """One measured configuration. ``case_id`` is stable across runs and devices."""

    workload: str
    domain: str
    optimizer: str
    kernel: str
    threads: int
    batch: int
    dtype: str
    steps: int
    warmup: int
    seed: int
    check_steps: int
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 0.0
    mode: str = "eager"
    accel: str = "cpu"
    hparams: Mapping[str, Any] = field(default_factory=dict)
    warmup_until_stable: bool = False  # warm-up ends when short and long medians agree
    warmup_max: int = 50
    onnx_inference: bool = False  # after training: export to ONNX, check and time inference
    repeat: int = 0  # which repetition of the case this is (not part of case_id)
    slowdown: float = 0.0  # calibration only: a known busy-wait, as a fraction of each step
    target_loss: float | None = None  # the optimizer study: stop when the smoothed loss reaches it
    slowdown_phase: str = "step"  # calibration: the phase whose own time ``slowdown`` scales
    replica: str = ""  # calibration: an in-process A/A twin of a case (e.g. "aa1", in case_id)

    @property
    def case_id(self) -> str:
        base = f"{self.workload}-{self.optimizer}-{self.kernel}-t{self.threads}-b{self.batch}-{self.dtype}"
        if self.mode != "eager":
            base += f"-{self.mode}"
        if self.accel != "cpu":
            base += f"-{self.accel}"
        if self.hparams:
            digest = hashlib.sha256(json.dumps(dict(self.hparams), sort_keys=True).encode()).hexdigest()
            base += f"-h{digest[:8]}"
        if self.options:
            digest = hashlib.sha256(json.dumps(dict(self.options), sort_keys=True).encode()).hexdigest()
            base += f"-o{digest[:8]}"
        if self.target_loss is not None:  # study runs repeat a configuration over seeds
            base += f"-T{self.target_loss:g}-s{self.seed}"
        if self.replica:
            base += f"-{self.replica}"
        return base

    def spec(self) -> dict[str, Any]:
        """The explicit case spec the agent receives (everything it needs, nothing implied)."""
        data = asdict(self)
        data["options"] = dict(self.options)
        data["hparams"] = dict(self.hparams)
        data["case_id"] = self.case_id
        data.pop("timeout_s")
        if self.target_loss is None:
            data.pop("target_loss")
        if self.repeat > 0 and self.check_steps > 0:  # the check runs once per run: repeat 0
            data["check_steps"] = 0
            data["check_reason"] = "checked once per run, in the case's repeat-0 process"
        return data


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    data: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class Filters:
    """What the CLI narrows or overrides; empty means the suite's choice."""

    workloads: tuple[str, ...] = ()
    optimizers: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    threads: tuple[int, ...] = ()
    batch: tuple[int, ...] = ()
    dtype: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    accel: tuple[str, ...] = ()
    steps: int | None = None
    warmup: int | None = None
    check_steps: int | None = None
    seed: int | None = None


def known_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """Load a suite by name (``smoke``, ``quick``, ``full``) or by path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
    else:
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            near = difflib.get_close_matches(name_or_path, known_suites(), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ConfigError(
                f"unknown suite {name_or_path!r}; {hint}known suites: {', '.join(known_suites())}",
                key="--suite",
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no suite file at {str(path)!r}", key="--suite") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("suite file is not UTF-8 text", source=str(path)) from None
    _check_keys(data, _SUITE_KEYS, str(path), "")
    matrix = data.get("matrix")
    if not isinstance(matrix, list) or not matrix:
        raise ConfigError("a suite needs at least one [[matrix]] block", source=str(path), key="matrix")
    for i, block in enumerate(matrix):
        if not isinstance(block, dict):
            raise ConfigError("each [[matrix]] entry must be a table", source=str(path), key=f"matrix[{i}]")
        _check_keys(block, _MATRIX_KEYS, str(path), f"matrix[{i}].")
    return Suite(path.stem, str(data.get("description", "")), data, str(path))


def _check_keys(data: Mapping[str, Any], valid: set[str], source: str, prefix: str) -> None:
    for key in data:
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.5)
            hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(sorted(valid))}"
            raise ConfigError(f"unknown key {key!r}; {hint}", source=source, key=prefix + key)


def _names(value: Any, known: Sequence[str], kind: str, source: str, key: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items) or not items:
        raise ConfigError(f"expected a non-empty list of {kind} names, got {value!r}", source=source, key=key)
    if "*" in items:
        return list(known)
    for name in items:
        _require_known(name, known, kind, source, key)
    return items


def _require_known(name: str, known: Sequence[str], kind: str, source: str, key: str) -> None:
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(
            f"unknown {kind} {name!r}; {hint}known: {', '.join(known)}", source=source, key=key
        )


def _ints(value: Any, source: str, key: str, *, field: str) -> list[int]:
    """One integer or a list of them, each inside the field's range (harness/limits.py)."""
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in items)
    ):
        raise ConfigError(f"expected an integer or a list of integers, got {value!r}", source=source, key=key)
    for v in items:
        check_number(v, SUITE_RANGES[field], source=source, key=key)
    return items


def _int(value: Any, source: str, key: str, *, field: str) -> int:
    if isinstance(value, list):
        raise ConfigError(f"expected one integer, got {value!r}", source=source, key=key)
    return _ints(value, source, key, field=field)[0]


def _check_filters(filters: Filters) -> None:
    """The command line's numbers, in the same ranges as the suite's."""
    for flag, value in (("steps", filters.steps), ("warmup", filters.warmup),
                        ("check_steps", filters.check_steps), ("seed", filters.seed)):
        if value is not None:
            check_number(value, SUITE_RANGES[flag], source="command line",
                         key=f"--{flag.replace('_', '-')}")
    for flag, values in (("threads", filters.threads), ("batch", filters.batch)):
        for value in values:
            check_number(value, SUITE_RANGES[flag], source="command line", key=f"--{flag}")


def expand(suite: Suite, filters: Filters = Filters(), *, default_threads: int = 1) -> list[Case]:
    """Expand a suite into cases (unshuffled, in matrix order), applying the CLI filters."""
    from workloads.catalog import OPTIMIZERS, WORKLOADS, all_kernels  # no torch on the host

    src = suite.source
    data = suite.data
    workloads_known = WORKLOADS.names()
    optimizers_known = OPTIMIZERS.names()
    kernels_known = all_kernels()
    for name in filters.workloads:
        _require_known(name, workloads_known, "workload", "command line", "--workload")
    for name in filters.optimizers:
        _require_known(name, optimizers_known, "optimizer", "command line", "--optimizer")
    for name in filters.kernels:
        _require_known(name, kernels_known, "kernel", "command line", "--kernel")
    for name in filters.dtype:
        _require_known(name, DTYPES, "dtype", "command line", "--dtype")
    for name in filters.modes:
        _require_known(name, MODES, "mode", "command line", "--mode")
    for name in filters.accel:
        _require_known(name, ACCELS, "accel", "command line", "--accel")

    _check_filters(filters)
    steps = filters.steps if filters.steps is not None else _int(data.get("steps", 20), src, "steps", field="steps")
    warmup = filters.warmup if filters.warmup is not None else _int(data.get("warmup", 3), src, "warmup", field="warmup")
    seed = filters.seed if filters.seed is not None else _int(data.get("seed", 0), src, "seed", field="seed")
    check_steps = filters.check_steps if filters.check_steps is not None else _int(
        data.get("check_steps", 10), src, "check_steps", field="check_steps")
    until_stable = data.get("warmup_until_stable", False)
    if not isinstance(until_stable, bool):
        raise ConfigError(f"expected true or false, got {until_stable!r}", source=src, key="warmup_until_stable")
    warmup_max = _int(data.get("warmup_max", 50), src, "warmup_max", field="warmup_max")
    timeout_s = check_number(data.get("timeout_s", 0.0), SUITE_RANGES["timeout_s"], source=src, key="timeout_s")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError("expected a table of workload -> options", source=src, key="options")
    for wname, wopts in options.items():
        _require_known(wname, workloads_known, "workload", src, f"options.{wname}")
        spec = WORKLOADS.get(wname)
        if not isinstance(wopts, dict):
            raise ConfigError("expected a table of option = value", source=src, key=f"options.{wname}")
        for key, value in wopts.items():
            _require_known(key, sorted(spec.defaults), f"option of {wname}", src, f"options.{wname}.{key}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                check_number(value, SUITE_RANGES["options"], source=src, key=f"options.{wname}.{key}")
    hparams = data.get("hparams", {})
    if not isinstance(hparams, dict):
        raise ConfigError("expected a table of optimizer -> hyper-parameters", source=src, key="hparams")
    for oname, ohp in hparams.items():
        _require_known(oname, optimizers_known, "optimizer", src, f"hparams.{oname}")
        if not isinstance(ohp, dict):
            raise ConfigError("expected a table of name = value", source=src, key=f"hparams.{oname}")
        for key, value in ohp.items():
            _require_known(key, sorted(OPTIMIZERS.get(oname).defaults), f"hyper-parameter of {oname}", src, f"hparams.{oname}.{key}")
            check_number(value, SUITE_RANGES["hparams"], source=src, key=f"hparams.{oname}.{key}")

    cases: dict[str, Case] = {}
    for i, block in enumerate(data["matrix"]):
        where = f"matrix[{i}]"
        wl = _names(block.get("workloads", "*"), workloads_known, "workload", src, f"{where}.workloads")
        op = _names(block.get("optimizers", "*"), optimizers_known, "optimizer", src, f"{where}.optimizers")
        kn = _names(block.get("kernels", "*"), kernels_known, "kernel", src, f"{where}.kernels")
        th = list(filters.threads) or _ints(block.get("threads", data.get("threads", [default_threads])), src, f"{where}.threads", field="threads")
        bs = list(filters.batch) or _ints(block.get("batch", data.get("batch", [8])), src, f"{where}.batch", field="batch")
        dt = list(filters.dtype) or _names(block.get("dtype", data.get("dtype", ["fp32"])), DTYPES, "dtype", src, f"{where}.dtype")
        md = list(filters.modes) or _names(block.get("modes", data.get("modes", ["eager"])), MODES, "mode", src, f"{where}.modes")
        ac = list(filters.accel) or _names(block.get("accel", data.get("accel", ["cpu"])), ACCELS, "accel", src, f"{where}.accel")
        for w, o, k, t, b, d, m, a in itertools.product(wl, op, kn, th, bs, dt, md, ac):
            if filters.workloads and w not in filters.workloads:
                continue
            if filters.optimizers and o not in filters.optimizers:
                continue
            if filters.kernels and k not in filters.kernels:
                continue
            if k not in OPTIMIZERS.get(o).kernels:
                continue
            if m == "channels_last" and WORKLOADS.get(w).domain != "image":
                continue
            case = Case(
                workload=w, domain=WORKLOADS.get(w).domain, optimizer=o, kernel=k, threads=t,
                batch=b, dtype=d, steps=steps, warmup=warmup, seed=seed, check_steps=check_steps,
                options=dict(options.get(w, {})), timeout_s=float(timeout_s), mode=m, accel=a,
                hparams=dict(hparams.get(o, {})), warmup_until_stable=until_stable,
                warmup_max=max(warmup_max, warmup),
            )
            cases.setdefault(case.case_id, case)
    if not cases:
        raise ConfigError(
            f"no case matches: suite {suite.name!r} with the given --workload/--optimizer/--kernel "
            "filters expands to nothing (check `harness list` for which optimizer offers which kernel)",
            source=src,
        )
    return list(cases.values())


def shuffled(cases: Iterable[Case], seed: int) -> list[Case]:
    """The cases in a random order that the seed reproduces."""
    order = list(cases)
    random.Random(seed).shuffle(order)
    return order


def repeated(cases: Sequence[Case], repeats: int, seed: int) -> list[Case]:
    """Each case ``repeats`` times, interleaved: round r runs every case once, in its own order."""
    from harness.limits import CLI_RANGES

    check_number(repeats, CLI_RANGES["--repeat"], source="command line", key="--repeat")
    rounds = []
    for r in range(repeats):
        rounds += shuffled([replace(c, repeat=r) for c in cases], seed + r)
    return rounds
