"""Sessions: bench, harness, tests, lint, report, gate, microbench, soak, board_arm64.

Every environment installs with ``-c constraints.txt`` so torch is the pinned CPU build.
Hardware runs go through ``bench`` with ``-- --device NAME``; a bare ``nox`` runs the
tests and the linter only and needs no device.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs under (3.10+)


def _install(session: nox.Session, extras: str = "") -> None:
    target = f".[{extras}]" if extras else "."
    session.install("-c", "constraints.txt", "-e", target)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run a suite on a device (default: this machine) and write the HTML report."""
    _install(session)
    try:
        session.run("harness", "bench", *session.posargs)
    finally:
        _how_to_reach_harness(session)


def _how_to_reach_harness(session: nox.Session) -> None:
    import os

    exe = os.path.relpath(os.path.join(session.bin, "harness"))
    session.log(f"the harness command line of this environment: {exe} --help "
                "(or: nox -s harness -- COMMAND ...)")


@nox.session(python=PYTHON)
def harness(session: nox.Session) -> None:
    """Any harness command: nox -s harness -- doctor --device local (no arguments: --help)."""
    _install(session)
    session.run("harness", *(session.posargs or ["--help"]))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real sshd, adbd and Chromium where installed); -- -m "not slow" for the fast subset, -- -n 0 to run them in one process."""
    _install(session, "test")
    # one pytest-xdist worker per core (2 to 4): the agents the tests start are single-threaded;
    # a test module per worker at a time, so a module's fixtures run once; modules in the order
    # tests/conftest.py gives them (the longest first), not xdist's own (the most tests first)
    workers = str(min(4, max(2, os.cpu_count() or 2)))
    session.run("pytest", "-n", workers, "--dist", "loadfile", "--no-loadscope-reorder",
                "--ignore=tests/bench", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff over the whole project."""
    session.install("-c", "constraints.txt", "ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Rebuild a report from stored runs: nox -s report -- results/RUN [RUN ...] [--format md]."""
    _install(session)
    session.run("harness", "report", *session.posargs)


@nox.session(python=PYTHON)
def gate(session: nox.Session) -> None:
    """Gate a candidate run against a baseline: nox -s gate -- --baseline B --candidate C."""
    _install(session)
    session.run("harness", "gate", *session.posargs)


@nox.session(python=PYTHON)
def microbench(session: nox.Session) -> None:
    """pytest-benchmark micro-benchmarks of the optimizer update variants."""
    _install(session, "test")
    session.run("python", "-c", "import os; os.makedirs('results', exist_ok=True)")
    session.run(
        "pytest", "tests/bench", "--benchmark-only", "--benchmark-json=results/microbench.json",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Soak run on this machine: many tiny cases with random injected faults; 0 samples lost."""
    _install(session, "test")
    session.run("python", "-m", "tests.bench.soak", *(session.posargs or ["--cases", "200"]))


@nox.session(python=PYTHON)
def board_arm64(session: nox.Session) -> None:
    """The foreign-board smoke case on an arm64 Debian trixie board under qemu-user-static (slow; root).

    Builds the board (.ci/build-board.sh arm64), times one torch import in it with and without
    the byte-compiled modules, then runs tests/integration/test_board.py against it; the wall
    times go to results/board-arm64/times.json (docs/board.md). Needs qemu-aarch64 registered
    in binfmt_misc with the F flag, from qemu-user-static 8 or later (bookworm's 7.2 lacks execveat, so
    Dropbear's connections die; bookworm-backports has 10.0) and binfmt-support.
    ``--no-venv`` runs it with the harness and pytest already on PATH (no install).
    """
    if session.venv_backend != "none":
        _install(session, "test")
    root = os.environ.get("HARNESS_BOARD_ROOT", "/var/tmp/odt-board/arm64")
    out = Path("results/board-arm64")
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    def timed(name: str, *args: str, **kwargs: object) -> None:
        # wall time, and the CPU time of the commands (their children included): on a shared
        # host the second is what emulation cost, whatever the load
        start, cpu = time.monotonic(), os.times()
        session.run(*args, **kwargs)  # type: ignore[arg-type]
        after = os.times()
        cpu_name = name.removesuffix("_s") + "_cpu_s"
        times[name] = round(time.monotonic() - start, 1)
        times[cpu_name] = round(after.children_user + after.children_system
                                                    - cpu.children_user - cpu.children_system, 1)
        session.log(f"{name}: {times[name]} s wall, {times[cpu_name]} s CPU")
        (out / "times.json").write_text(json.dumps(times, indent=2) + "\n")

    chroot = ("bash", ".ci/board-chroot.sh", root, "/usr/bin/python3")
    timed("build_s", "bash", ".ci/build-board.sh", "arm64", root, external=True)
    timed("torch_import_s", *chroot, "-c", "import torch; print(torch.__version__)", external=True)
    # pycache_prefix points Python at an empty cache: the import compiles every module again
    no_pyc = f"{root}/tmp/odt-no-pyc"
    session.run("rm", "-rf", no_pyc, external=True)
    timed("torch_import_without_pyc_s", *chroot, "-X", "pycache_prefix=/tmp/odt-no-pyc", "-c",
          "import torch; print(torch.__version__)", external=True)
    session.run("rm", "-rf", no_pyc, external=True)
    timed("smoke_test_s", "pytest", "tests/integration/test_board.py", "-p", "no:cacheprovider", *session.posargs,
          env={"HARNESS_BOARD_ARCH": "arm64", "HARNESS_BOARD_ROOT": root, "HARNESS_REQUIRE_REAL_PARTS": "1",
               "HARNESS_BOARD_CASE_TIMEOUT_S": "3600", "HARNESS_BOARD_RUN_TIMEOUT_S": "7200",
               "HARNESS_BOARD_RESULTS": str(out.resolve())})
