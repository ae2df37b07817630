"""Soak run: hundreds of tiny cases on the local device with random agent faults, then a count
of samples lost between raw.jsonl and the tables.

Each case gets (or not, by ``--fault-rate``) one fault from workloads/faults.py through a JSON
fault plan (``ODT_FAULT_PLAN``): an exception, exit code 3, SIGKILL, SIGSEGV or a hang at the
case start or at a random step, firing once. The first pass runs every case (faulted cases
fail); ``--resume`` then re-runs exactly the failed ones, which now succeed. The check:
every step line of each case's last finished attempt in raw.jsonl is in steps.parquet
exactly once, and steps.parquet has no other row.

    python -m tests.bench.soak --cases 200 --out /tmp/soak   (nox -s soak -- --cases 200)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ACTIONS = ("raise", "exit", "kill", "segv", "hang")
ACTION_WEIGHTS = (3, 3, 3, 3, 1)  # a hang costs a whole case deadline
STEPS = 3


@dataclass(frozen=True)
class SoakFigures:
    """What the soak run found."""

    cases: int
    faults: dict[str, int]
    attempts: int
    expected_samples: int
    table_samples: int
    samples_lost: int
    samples_extra: int
    statuses: dict[str, int]
    first_pass_statuses: dict[str, int]
    first_pass_samples_lost: int  # same check after the first pass, failed cases included
    first_pass_samples_extra: int
    wall_s: float


def make_cases(n: int, workload: str) -> list:
    """``n`` distinct tiny cases: one workload at batch sizes 1..n (case ids differ by batch)."""
    import workloads.models  # noqa: F401  (fills the workload registry)
    from harness.plan import Case
    from workloads.workload import WORKLOADS

    domain = WORKLOADS.get(workload).domain
    return [Case(workload=workload, domain=domain, optimizer="nag", kernel="foreach", threads=1,
                 batch=b, dtype="fp32", steps=STEPS, warmup=0, seed=0, check_steps=0)
            for b in range(1, n + 1)]


def make_fault_plan(case_ids: list[str], rate: float, rng: random.Random) -> dict[str, dict]:
    """A random fault for about ``rate`` of the cases, keyed by the exact case id."""
    plan: dict[str, dict] = {}
    for case_id in case_ids:
        if rng.random() < rate:
            action = rng.choices(ACTIONS, ACTION_WEIGHTS)[0]
            where = rng.choice(["start", *(f"step={i}" for i in range(STEPS))])
            plan[case_id] = {"where": where, "action": action, "once": True}
    return plan


def expected_steps(raw_path: Path) -> Counter:
    """(case id, repeat, step index, step_ns) of every step line of each case's last finished
    attempt, counted independently of harness.store."""
    from harness.store import read_raw

    lines: dict[tuple[str, int, int], list[dict]] = {}
    finished: dict[tuple[str, int], int] = {}
    for env in read_raw(raw_path):
        key = (env.get("case_id", ""), int(env.get("repeat", 0)))
        if not key[0]:
            continue
        attempt = int(env["attempt"])
        if env.get("event") == "attempt_end":
            finished[key] = max(finished.get(key, 0), attempt)
        elif '"type":"step"' in env.get("line", ""):
            lines.setdefault((*key, attempt), []).append(json.loads(env["line"]))
    return Counter((case_id, repeat, s["index"], s["step_ns"]) for (case_id, repeat), n in finished.items()
                   for s in lines.get((case_id, repeat, n), []))


def table_steps(run_dir: Path) -> Counter:
    steps = pd.read_parquet(run_dir / "steps.parquet")
    return Counter(zip(steps["case_id"], steps["repeat"], steps["index"], steps["step_ns"], strict=True))


def soak(n_cases: int, out: Path, *, rate: float, seed: int, workload: str, timeout_s: float) -> SoakFigures:
    """Run the soak (a first pass, then ``--resume`` of the failed cases) and count."""
    from harness.bench import execute, new_plan, resume_plan
    from harness.profiles import load_profile

    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HARNESS_LOCK_DIR", str(out / "locks"))
    rng = random.Random(seed)
    cases = make_cases(n_cases, workload)
    rng.shuffle(cases)
    plan_path = out / f"fault-plan-{seed}.json"
    faults = make_fault_plan([c.case_id for c in cases], rate, rng)
    plan_path.write_text(json.dumps(faults, indent=1))
    profile_path = out / "soak-local.toml"
    profile_path.write_text(
        f'name = "soak-local"\n[agent]\npython = ["@host"]\nworkdir = "{out / "work"}"\n'
        f'case_timeout_s = {timeout_s}\nenv = {{ ODT_FAULT_PLAN = "{plan_path}" }}\n')
    argv = sys.argv[1:]
    start = time.monotonic()
    plan = new_plan([load_profile(str(profile_path))], cases, out=out, run_id=None, suite="soak",
                    seed=seed, argv=argv, probe=False)
    first = execute(plan)
    first_expected, first_table = expected_steps(plan.run_dir / "raw.jsonl"), table_steps(plan.run_dir)
    result = execute(resume_plan(plan.run_dir, argv))
    wall_s = time.monotonic() - start
    expected, table = expected_steps(plan.run_dir / "raw.jsonl"), table_steps(plan.run_dir)
    attempts = int(result.cases["attempts"].sum())
    return SoakFigures(
        cases=len(result.cases), faults=dict(Counter(f["action"] for f in faults.values())),
        attempts=attempts, expected_samples=sum(expected.values()), table_samples=sum(table.values()),
        samples_lost=sum((expected - table).values()), samples_extra=sum((table - expected).values()),
        statuses=dict(Counter(result.cases["status"])),
        first_pass_statuses=dict(Counter(first.cases["status"])),
        first_pass_samples_lost=sum((first_expected - first_table).values()),
        first_pass_samples_extra=sum((first_table - first_expected).values()), wall_s=wall_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200, help="number of cases (default 200)")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of cases given a fault")
    parser.add_argument("--seed", type=int, default=1, help="seed of the case order and fault plan")
    parser.add_argument("--workload", default="lstm_text", help="the tiny workload (default lstm_text)")
    parser.add_argument("--case-timeout-s", type=float, default=20.0, help="deadline of one case")
    parser.add_argument("--out", type=Path, default=Path("results/soak"), help="results directory")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    figures = soak(args.cases, args.out, rate=args.fault_rate, seed=args.seed, workload=args.workload,
                   timeout_s=args.case_timeout_s)
    print(json.dumps(vars(figures), indent=1))
    ok = (figures.samples_lost == figures.samples_extra == 0 == figures.first_pass_samples_lost
          == figures.first_pass_samples_extra and figures.statuses == {"ok": figures.cases})
    print("soak: " + ("PASS" if ok else "FAIL") + f" ({figures.cases} cases, {sum(figures.faults.values())} "
          f"faults, {figures.samples_lost} samples lost, {figures.samples_extra} extra, "
          f"{figures.wall_s:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
