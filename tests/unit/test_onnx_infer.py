"""ONNX export and the inference study: ORT agrees with torch, one row per engine/level/threads."""

from __future__ import annotations

import pytest
import torch

from workloads.onnx_infer import OPT_LEVELS, onnx_inference_study

torch.set_num_threads(1)


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5),
    )


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return onnx_inference_study(tiny_net(), torch.randn(2, 3, 6, 6), threads=[1, 2], repeats=3)


def test_study_has_torch_eager_and_every_ort_level_per_thread_count(rows: list[dict]) -> None:
    got = sorted((r["engine"], r["opt_level"], r["threads"]) for r in rows)
    want = sorted(
        [("torch", "eager", n) for n in (1, 2)]
        + [("onnxruntime", level, n) for level in OPT_LEVELS for n in (1, 2)]
    )
    assert got == want


def test_ort_outputs_match_torch_eager(rows: list[dict]) -> None:
    for row in rows:
        if row["engine"] == "onnxruntime":
            assert row["max_abs_diff"] <= 1e-5 * max(1.0, row["ref_max_abs"])


def test_each_row_keeps_its_repeats_and_timing_summary(rows: list[dict]) -> None:
    for row in rows:
        assert row["repeats"] == 3
        assert 0 < row["min_ns"] <= row["median_ns"]


def test_study_returns_the_model_to_training_mode() -> None:
    model = tiny_net().train()
    onnx_inference_study(model, torch.randn(1, 3, 6, 6), threads=[1], repeats=1)
    assert model.training


def test_study_refuses_zero_repeats() -> None:
    with pytest.raises(ValueError, match="repeats=0"):
        onnx_inference_study(tiny_net(), torch.randn(1, 3, 6, 6), threads=[1], repeats=0)
