"""Every workload's synthetic task is learnt by the smoke case the agent runs: NAG at its
default hyper-parameters (lr 0.05, momentum 0.9), default options, batch 8, 3 + 20 steps.

The steps go through the real agent path (``workloads.agent.run_case`` with an emitter that
collects the protocol records), so a change to the agent, the optimizer defaults, the models'
initialisation or the data generators that stops a smoke case from learning fails here.
"""

from __future__ import annotations

import pytest
import torch

import workloads.models  # noqa: F401  (fills the registry)
from workloads import schema
from workloads.agent import run_case
from workloads.workload import WORKLOADS

torch.set_num_threads(1)

MARGIN = 0.8  # the last five losses' mean must be at most this fraction of the first five's


def smoke_losses(workload: str, seed: int) -> list[float]:
    """The loss of every step (warm-up included) of the workload's NAG smoke case."""
    records: list[schema.Record] = []
    spec = {
        "case_id": "t", "workload": workload, "optimizer": "nag", "kernel": "foreach",
        "threads": 1, "batch": 8, "dtype": "fp32", "steps": 20, "warmup": 3, "seed": seed,
        "check_steps": 0, "options": {},
    }  # fmt: skip
    assert run_case(spec, records.append)
    return [r.loss for r in records if isinstance(r, schema.Step)]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("workload", WORKLOADS.names())
def test_nag_at_default_settings_lowers_the_loss_within_the_smoke_budget(workload, seed):
    losses = smoke_losses(workload, seed)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert len(losses) == 23
    assert last <= MARGIN * first, f"{workload} seed {seed}: losses {losses}"
