"""Inference after training: export to ONNX, check ONNX Runtime against torch, time both.

:func:`onnx_inference_study` exports the model in eval mode with torch's TorchScript-based
exporter (``dynamo=False``: torch 2.13's default dynamo exporter needs the ``onnxscript``
package, which the device bundle does not carry), checks ORT's outputs against torch eager
(max abs difference), and times inference at each graph optimization level and thread count
beside torch eager at the same thread counts. One row per (engine, level, threads).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

OPT_LEVELS = ("disable", "basic", "extended", "all")
OPSET = 17


def export_onnx(model: torch.nn.Module, example_input: torch.Tensor, path: str) -> str:
    """Export ``model`` (in eval mode) to ``path`` with a dynamic batch axis; returns the exporter used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example_input,), path, dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return "torchscript"


def _times_ns(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> list[int]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return samples


def _row(engine: str, level: str, threads: int, samples: list[int], diff: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "engine": engine, "opt_level": level, "threads": threads, "repeats": len(samples),
        "median_ns": int(statistics.median(samples)), "min_ns": min(samples),
        "max_abs_diff": diff, **extra,
    }


def _session(path: str, level: str, threads: int) -> Any:
    from workloads.capabilities import require_module

    ort = require_module("onnxruntime", "ONNX inference (--onnx-inference)")

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_inference_study(
    model: torch.nn.Module, example_input: torch.Tensor, threads: list[int], repeats: int
) -> list[dict[str, Any]]:
    """Rows ``{engine, opt_level, threads, repeats, median_ns, min_ns, max_abs_diff, ...}``.

    ``engine`` is ``"torch"`` (eager, ``opt_level`` ``"eager"``) or ``"onnxruntime"``;
    ``max_abs_diff`` compares ORT's output with torch eager's on ``example_input``. The model
    is put in eval mode for the study and returned to its previous mode afterwards.
    """
    if repeats < 1 or not threads or min(threads) < 1:
        raise ValueError(f"need repeats >= 1 and thread counts >= 1, got repeats={repeats!r}, threads={threads!r}")
    was_training = model.training
    saved_threads = torch.get_num_threads()
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        with torch.no_grad():
            expected = model(example_input).detach().numpy()
        ref_max_abs = float(np.max(np.abs(expected)))  # scale for max_abs_diff
        feed = {"input": example_input.detach().numpy()}
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.onnx")
            exporter = export_onnx(model, example_input, path)
            for n in threads:
                torch.set_num_threads(n)
                with torch.inference_mode():
                    rows.append(_row("torch", "eager", n, _times_ns(lambda: model(example_input), repeats), 0.0))
                for level in OPT_LEVELS:
                    session = _session(path, level, n)
                    got = session.run(None, feed)[0]
                    diff = float(np.max(np.abs(got - expected)))
                    samples = _times_ns(lambda s=session: s.run(None, feed), repeats)
                    rows.append(_row("onnxruntime", level, n, samples, diff, exporter=exporter,
                                     ref_max_abs=ref_max_abs, onnx_bytes=os.path.getsize(path)))
    finally:
        torch.set_num_threads(saved_threads)
        model.train(was_training)
    return rows
