"""The run's ETA: mean time of the cases done × cases left, on a fake clock."""

from __future__ import annotations

import pytest

from harness.plan import Case
from harness.progress import Progress, format_duration


def _case(i: int) -> Case:
    return Case(workload="bert_tiny", domain="nlp", optimizer="nag", kernel="forloop", threads=i + 1,
                batch=8, dtype="fp32", steps=3, warmup=1, seed=0, check_steps=0)


def test_the_eta_is_the_mean_case_time_times_the_cases_left(capsys: pytest.CaptureFixture) -> None:
    now = [100.0]
    progress = Progress("local", 0, 4, enabled=False, clock=lambda: now[0])
    assert progress.eta_s() is None  # nothing finished: no estimate yet
    for i, seconds in enumerate((10.0, 30.0)):
        progress.start_case(_case(i))
        now[0] += seconds
        progress.end_case("ok")
    assert progress.eta_s() == pytest.approx(2 * 20.0)
    assert capsys.readouterr().err.splitlines()[-1].endswith(": ok (ETA 40s)")


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m")])
def test_durations_are_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
