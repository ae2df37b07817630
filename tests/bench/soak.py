"""Soak run: hundreds of tiny cases on the local device with random agent faults and host
kills, then a count of samples lost between raw.jsonl and the tables.

Each case gets (or not, by ``--fault-rate``) one fault from workloads/faults.py through a JSON
fault plan (``ODT_FAULT_PLAN``): an exception, exit code 3, SIGKILL, SIGSEGV or a hang at the
case start or at a random step, firing once. The harness runs as its own process
(``python -m harness bench``); ``--host-kills N`` times it is SIGKILLed at a random moment
(the host crashing mid-case, possibly while an agent hangs) and the run is continued with
``--resume``; resumes go on until every case is ok. The checks: every step line of each
case's last finished attempt in raw.jsonl is in steps.parquet exactly once, steps.parquet
has no other row, and no agent process of the run is alive at the end (the leftovers of
each killed host are reaped by the next ``--resume``, see harness/leftovers.py).

    python -m tests.bench.soak --cases 200 --host-kills 6 --out /tmp/soak   (nox -s soak)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ACTIONS = ("raise", "exit", "kill", "segv", "hang")
ACTION_WEIGHTS = (3, 3, 3, 3, 1)  # a hang costs a whole case deadline
STEPS = 3
REPO = Path(__file__).resolve().parents[2]
MAX_PASSES = 40


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
    host_kills: int = 0
    passes: int = 1
    leftover_groups_reaped: int = 0  # agents a killed host left running, killed by --resume
    agents_alive_at_end: int = 0
    command: str = ""


def suite_text(n: int, workload: str) -> str:
    """A suite of ``n`` distinct tiny cases: one workload at batch sizes 1..n."""
    return (f"steps = {STEPS}\nwarmup = 0\ncheck_steps = 0\nprocesses = 1\n[[matrix]]\nworkloads = [\"{workload}\"]\n"
            f"optimizers = [\"nag\"]\nkernels = [\"foreach\"]\nthreads = [1]\n"
            f"batch = [{', '.join(str(b) for b in range(1, n + 1))}]\n")


def make_cases(suite_path: Path) -> list:
    """The suite's cases, as ``harness bench`` expands them."""
    from harness.plan import expand, load_suite

    return expand(load_suite(str(suite_path)))


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


def agents_alive(workdir: Path) -> list[int]:
    """Pids of agent processes of this soak still running (their bundle is under ``workdir``)."""
    alive = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(workdir) in cmdline and ".pyz" in cmdline and state not in ("Z", "X"):
            alive.append(int(proc.name))
    return alive


def _harness(argv: list[str], env: dict[str, str], kill_after_s: float | None, manifest: Path) -> bool:
    """Run ``python -m harness bench ARGV``; SIGKILL it ``kill_after_s`` seconds after its
    manifest exists (None: let it finish). True when it was killed."""
    with open(manifest.parent.parent / "soak-harness.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "harness", "bench", *argv], cwd=REPO, env=env,
                                stdout=log, stderr=log)
        try:
            if kill_after_s is not None:
                while not manifest.is_file() and proc.poll() is None:
                    time.sleep(0.1)
                try:
                    proc.wait(kill_after_s)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)  # the host crashes: no cleanup of any kind
                    proc.wait()
                    return True
            proc.wait()
            return False
        except BaseException:
            proc.kill()
            raise


def soak(n_cases: int, out: Path, *, rate: float, seed: int, workload: str, timeout_s: float,
         host_kills: int = 0, kill_window_s: tuple[float, float] = (5.0, 60.0)) -> SoakFigures:
    """Run the soak: a first pass, ``host_kills`` SIGKILLs of the harness, resumes until done."""
    out = out.resolve()  # the agent runs in its workdir: every path it is given must be absolute
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HARNESS_LOCK_DIR": os.environ.get("HARNESS_LOCK_DIR", str(out / "locks"))}
    rng = random.Random(seed)
    suite_path = out / "soak-suite.toml"
    suite_path.write_text(suite_text(n_cases, workload))
    cases = make_cases(suite_path)
    plan_path = out / f"fault-plan-{seed}.json"
    faults = make_fault_plan(sorted(c.case_id for c in cases), rate, rng)
    plan_path.write_text(json.dumps(faults, indent=1))
    profile_path = out / "soak-local.toml"
    workdir = out / "work"
    profile_path.write_text(
        f'name = "soak-local"\n[agent]\npython = ["@host"]\nworkdir = "{workdir}"\n'
        f'case_timeout_s = {timeout_s}\nenv = {{ ODT_FAULT_PLAN = "{plan_path}" }}\n')
    run_id = f"soak-{seed}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    run_dir = out / run_id
    manifest = run_dir / "manifest.json"
    common = ["--no-report", "--out", str(out)]
    start = time.monotonic()
    kills_left, kills, passes = host_kills, 0, 1
    killed = _harness(["--device", str(profile_path), "--suite", str(suite_path), "--seed", str(seed),
                       "--no-probe", "--run-id", run_id, *common], env,
                      rng.uniform(*kill_window_s) if kills_left else None, manifest)
    kills += killed
    kills_left -= killed
    first_cases = pd.read_parquet(run_dir / "cases.parquet") if (run_dir / "cases.parquet").is_file() \
        and not killed else None
    first_expected, first_table = ((expected_steps(run_dir / "raw.jsonl"), table_steps(run_dir))
                                   if first_cases is not None else (Counter(), Counter()))
    while passes < MAX_PASSES:
        cases_path = run_dir / "cases.parquet"
        done = (not killed and cases_path.is_file()
                and set(pd.read_parquet(cases_path)["status"]) == {"ok"}
                and len(pd.read_parquet(cases_path)) == len(cases))
        if done:
            break
        passes += 1
        killed = _harness(["--resume", str(run_dir), *common], env,
                          rng.uniform(*kill_window_s) if kills_left else None, manifest)
        kills += killed
        kills_left -= killed
    wall_s = time.monotonic() - start
    time.sleep(1.0)
    result_cases = pd.read_parquet(run_dir / "cases.parquet")
    expected, table = expected_steps(run_dir / "raw.jsonl"), table_steps(run_dir)
    reaped = 0
    if (run_dir / "agents.jsonl").is_file():
        reaped = sum(1 for line in (run_dir / "agents.jsonl").read_text().splitlines()
                     if line.endswith("}") and json.loads(line).get("event") == "reaped")
    return SoakFigures(
        cases=len(result_cases), faults=dict(Counter(f["action"] for f in faults.values())),
        attempts=int(result_cases["attempts"].sum()), expected_samples=sum(expected.values()),
        table_samples=sum(table.values()),
        samples_lost=sum((expected - table).values()), samples_extra=sum((table - expected).values()),
        statuses=dict(Counter(result_cases["status"])),
        first_pass_statuses=dict(Counter(first_cases["status"])) if first_cases is not None else {},
        first_pass_samples_lost=sum((first_expected - first_table).values()),
        first_pass_samples_extra=sum((first_table - first_expected).values()), wall_s=wall_s,
        host_kills=kills, passes=passes, leftover_groups_reaped=reaped,
        agents_alive_at_end=len(agents_alive(workdir)), command=" ".join([sys.executable, *sys.argv]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200, help="number of cases (default 200)")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of cases given a fault")
    parser.add_argument("--seed", type=int, default=1, help="seed of the case order and fault plan")
    parser.add_argument("--workload", default="lstm_text", help="the tiny workload (default lstm_text)")
    parser.add_argument("--case-timeout-s", type=float, default=20.0, help="deadline of one case")
    parser.add_argument("--out", type=Path, default=Path("results/soak"), help="results directory")
    parser.add_argument("--host-kills", type=int, default=6,
                        help="times the harness process is SIGKILLed mid-run, each followed by --resume")
    args = parser.parse_args(argv)
    figures = soak(args.cases, args.out, rate=args.fault_rate, seed=args.seed, workload=args.workload,
                   timeout_s=args.case_timeout_s, host_kills=args.host_kills)
    print(json.dumps(vars(figures), indent=1))
    ok = (figures.samples_lost == figures.samples_extra == 0 == figures.first_pass_samples_lost
          == figures.first_pass_samples_extra and figures.statuses == {"ok": figures.cases}
          and figures.agents_alive_at_end == 0)
    print("soak: " + ("PASS" if ok else "FAIL") + f" ({figures.cases} cases, {sum(figures.faults.values())} "
          f"agent faults, {figures.host_kills} host kills, {figures.samples_lost} samples lost, "
          f"{figures.samples_extra} extra, {figures.agents_alive_at_end} agents alive at the end, "
          f"{figures.wall_s:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
