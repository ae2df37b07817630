"""Every NAG kernel variant follows torch.optim.SGD(nesterov=True) on every real workload.

The variant and the reference get the same gradient stream (workloads.optim.check), so what
is compared is the update kernel itself. ``compiled`` is checked on one small workload only:
compiling the update for a large model takes minutes on a 2-core machine.
"""

import pytest
import torch

import workloads.models  # noqa: F401
from workloads.optim import OPTIMIZERS, OptimizerSpec
from workloads.optim.check import max_rel_diff_vs_reference, tolerance_for
from workloads.workload import WORKLOADS

NAG = OPTIMIZERS.get("nag")
FAST_KERNELS = [k for k in NAG.kernels if k != "compiled"]


def _diff(workload: str, kernel: str, spec: OptimizerSpec = NAG, hparams: dict | None = None) -> float:
    task = WORKLOADS.get(workload).make(4, 0, {})
    return max_rel_diff_vs_reference(task.model, spec, kernel, spec.hparams(hparams or {}), steps=10,
                                     make_batch=task.next_batch, loss_fn=task.loss_fn, frontend=task.frontend)


@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("workload", WORKLOADS.names())
def test_every_variant_matches_the_reference_on_every_workload(workload, kernel):
    assert _diff(workload, kernel, hparams={"weight_decay": 1e-4}) <= tolerance_for(torch.float32)


@pytest.mark.slow
def test_the_compiled_variant_matches_the_reference():
    assert _diff("lstm_text", "compiled") <= tolerance_for(torch.float32)


def test_a_wrong_update_on_a_real_model_is_caught():
    # heavy-ball momentum built where NAG is expected: the formula differs, the check must see it
    wrong = OPTIMIZERS.get("momentum")
    spec = OptimizerSpec(**{**NAG.__dict__, "build": wrong.build})
    assert _diff("ds_cnn", "foreach", spec) > 100 * tolerance_for(torch.float32)
