"""Option definitions shared by every parser of the command line (no command logic here).

``cli.py`` and ``cli_lab.py`` both build their parsers from these pieces, so neither imports
the other. Strings from the command line become typed values (:class:`harness.plan.Filters`)
here, at the edge.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.errors import ConfigError
from harness.plan import Filters

DEFAULT_RESULTS = Path(os.environ.get("HARNESS_RESULTS", "results"))

# Names people type for an optimizer the registry knows under another name.
OPTIMIZER_ALIASES = {
    "nesterov": "nag", "sgd-nesterov": "nag", "sgd_nesterov": "nag", "nesterov-sgd": "nag",
    "sgdm": "momentum", "sgd-momentum": "momentum", "heavy-ball": "momentum", "heavyball": "momentum",
    "adam-w": "adamw", "adam_w": "adamw", "ada-grad": "adagrad", "rms-prop": "rmsprop",
}
# The filters whose values name things (checked against the registries by the plan).
FILTER_DESTS = ("workload", "optimizer", "kernel", "threads", "batch", "dtype", "mode", "accel",
                "steps", "warmup", "check_steps", "seed")


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``cli.main`` owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def csv_values(values: list[str]) -> tuple[str, ...]:
    """Repeated and comma-separated values as one tuple: ``["a,b", "c"]`` → ``("a", "b", "c")``."""
    return tuple(v for s in values for v in (x.strip() for x in s.split(",")) if v)


def add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="smoke", help="smoke, quick, full, or a suite .toml path (default smoke)")
    p.add_argument("--workload", action="append", default=[], help="only these workloads (repeat or comma-separate)")
    p.add_argument("--optimizer", action="append", default=[],
                   help="only these optimizers (aliases such as nesterov → nag are accepted)")
    p.add_argument("--kernel", action="append", default=[], help="only these kernel variants")
    p.add_argument("--threads", action="append", default=[], help="thread counts (replace the suite's)")
    p.add_argument("--batch", action="append", default=[], help="batch sizes (replace the suite's)")
    p.add_argument("--dtype", action="append", default=[], help="fp32 or bf16 (replace the suite's)")
    p.add_argument("--mode", action="append", default=[], help="eager, compile or channels_last (replace the suite's)")
    p.add_argument("--accel", action="append", default=[], help="cpu or cuda (replace the suite's)")
    p.add_argument("--steps", type=int, help="measured steps per case")
    p.add_argument("--warmup", type=int, help="warm-up steps per case (recorded, not summarised)")
    p.add_argument("--check-steps", type=int, metavar="N",
                   help="steps of each variant's correctness check against its reference, in the "
                        "first process (default: the suite's, 10 in smoke; 0 skips the check)")
    p.add_argument("--seed", type=int, help="seed for data, weights and case order")


def add_out(p: argparse.ArgumentParser, what: str = "name of the run directory") -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results directory (default ./results)")
    p.add_argument("--run-id", help=f"{what} (default: UTC time and a random suffix)")


def _ints(values: list[str], flag: str) -> tuple[int, ...]:
    out = []
    for v in csv_values(values):
        try:
            out.append(int(v))
        except ValueError:
            raise ConfigError(f"expected integers, got {v!r}", key=flag) from None
        if out[-1] < 1:
            raise ConfigError(f"must be ≥ 1, got {v}", key=flag)
    return tuple(out)


def optimizer_names(values: list[str]) -> tuple[str, ...]:
    """Optimizer names with common aliases mapped to the registry's names (``nesterov`` → ``nag``)."""
    return tuple(OPTIMIZER_ALIASES.get(v.lower(), v.lower()) for v in csv_values(values))


def filters_from(args: argparse.Namespace) -> Filters:
    """The typed filters of a parsed command line (the options :func:`add_filters` defines)."""
    for flag, value, minimum in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
                                 ("--check-steps", args.check_steps, 0), ("--seed", args.seed, 0)):
        if value is not None and value < minimum:
            raise ConfigError(f"must be ≥ {minimum}, got {value}", key=flag)
    return Filters(
        workloads=csv_values(args.workload),
        optimizers=optimizer_names(args.optimizer),
        kernels=csv_values(args.kernel),
        threads=_ints(args.threads, "--threads"),
        batch=_ints(args.batch, "--batch"),
        dtype=csv_values(args.dtype),
        modes=csv_values(args.mode),
        accel=csv_values(args.accel),
        steps=args.steps,
        warmup=args.warmup,
        check_steps=args.check_steps,
        seed=args.seed,
    )


def given_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The options of ``args`` that differ from the parser's defaults, as ``--flag`` names."""
    defaults = vars(parser.parse_args([])) if not _has_required(parser) else {}
    out = []
    for action in parser._actions:  # argparse keeps no public list of a parser's options
        if not action.option_strings or action.dest in ("help",):
            continue
        value = getattr(args, action.dest, None)
        if value != defaults.get(action.dest, action.default):
            out.append(action.option_strings[-1])
    return out


def _has_required(parser: argparse.ArgumentParser) -> bool:
    return any(a.required for a in parser._actions)
