"""The timed step's helpers: activation bytes saved for backward."""

import pytest
import torch

from workloads.trainer import saved_activation_bytes


def test_saved_activations_count_what_backward_needs_and_not_the_weights():
    model = torch.nn.Sequential(torch.nn.Linear(100, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10))
    x = torch.randn(32, 100)
    y = torch.randint(0, 10, (32,))
    got = saved_activation_bytes(model, None, x, y, torch.nn.functional.cross_entropy)
    # input 32x100 (for Linear 1's weight grad), ReLU output 32x200 (for ReLU and Linear 2),
    # and cross-entropy's log-softmax 32x10 (+ its targets): float32 unless noted
    expected = 4 * (32 * 100 + 32 * 200 + 32 * 10) + 8 * 32
    assert expected * 0.9 <= got <= expected * 1.6
    assert got < sum(p.numel() * 4 for p in model.parameters())  # weights are not activations


def test_activation_bytes_grow_with_the_batch():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    model(torch.randn(1, 3, 16, 16))
    small = saved_activation_bytes(model, None, torch.randn(2, 3, 16, 16), torch.zeros(2, dtype=torch.long),
                                   torch.nn.functional.cross_entropy)
    large = saved_activation_bytes(model, None, torch.randn(8, 3, 16, 16), torch.zeros(8, dtype=torch.long),
                                   torch.nn.functional.cross_entropy)
    assert 3.5 < large / small < 4.5


def test_a_step_times_zero_grad_as_its_own_phase_apart_from_the_update():
    """update is the optimizer's step() alone; clearing gradients is the zero_grad phase."""
    import time

    from workloads.trainer import PHASES, prepare, train_step
    from workloads.workload import Task

    model = torch.nn.Linear(4, 2)
    task = Task(model=model, next_batch=lambda: (torch.randn(3, 4), torch.randint(0, 2, (3,))),
                loss_fn=torch.nn.CrossEntropyLoss())
    calls: list[str] = []

    class SlowUpdater:
        param_groups: list = []

        def step(self) -> None:
            calls.append("step")
            time.sleep(0.002)

        def zero_grad(self) -> None:
            calls.append("zero_grad")
            time.sleep(0.005)

    phases, step_ns, _ = train_step(prepare(task, {}), SlowUpdater(), "fp32")
    assert tuple(phases) == PHASES and calls == ["step", "zero_grad"]
    assert phases["update"] >= 2_000_000 and phases["zero_grad"] >= 5_000_000
    assert sum(phases.values()) <= step_ns  # the step spans every phase


def _tiny_prepared():
    from workloads.trainer import Prepared
    from workloads.workload import Task

    model = torch.nn.Linear(64, 4)
    x, y = torch.randn(16, 64), torch.randint(0, 4, (16,))
    task = Task(model=model, next_batch=lambda: (x, y), loss_fn=torch.nn.functional.cross_entropy)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Prepared(task=task, model=model, device=torch.device("cpu"), sync=lambda: None), opt


class _Clock:
    """A fake monotonic clock: 1 µs per reading, so phase times count clock readings."""

    def __init__(self) -> None:
        self.now = 0

    def monotonic_ns(self) -> int:
        self.now += 1000
        return self.now


@pytest.mark.parametrize("phase", ["data", "forward", "backward", "update"])
def test_an_injected_slowdown_lengthens_only_its_phase(phase, monkeypatch):
    from workloads import trainer

    monkeypatch.setattr(trainer, "time", _Clock())
    prepared, opt = _tiny_prepared()
    plain, plain_step, _ = trainer.train_step(prepared, opt, "fp32")
    slowed, slowed_step, _ = trainer.train_step(prepared, opt, "fp32", 4.0, phase)
    assert slowed[phase] >= 4 * plain[phase]  # waited four times the phase's own time
    assert {k: v for k, v in slowed.items() if k != phase} == {k: v for k, v in plain.items() if k != phase}
    assert slowed_step - plain_step == slowed[phase] - plain[phase]


def test_a_step_slowdown_is_a_fraction_of_the_whole_step_inside_update(monkeypatch):
    from workloads import trainer

    monkeypatch.setattr(trainer, "time", _Clock())
    prepared, opt = _tiny_prepared()
    plain, plain_step, _ = trainer.train_step(prepared, opt, "fp32")
    slowed, slowed_step, _ = trainer.train_step(prepared, opt, "fp32", 1.0)
    assert slowed_step >= 2 * plain_step - 2000 and slowed["forward"] == plain["forward"]
