"""The device probe: cache sizing from sysfs, STREAM byte counting, FLOPs per step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workloads.probe import (
    MIB,
    STREAM_ARRAYS_MOVED,
    flops_per_step,
    last_level_cache_bytes,
    parse_cache_size,
    run_probe,
    stream_array_bytes,
)
from workloads.schema import Probe, dump_line, parse_line

torch.set_num_threads(1)


@pytest.mark.parametrize(("text", "expected"), [("32768K\n", 32 << 20), ("1M", 1 << 20), ("512", 512)])
def test_parse_cache_size_reads_sysfs_suffixes(text: str, expected: int) -> None:
    assert parse_cache_size(text) == expected


def test_parse_cache_size_quotes_a_bad_value() -> None:
    with pytest.raises(ValueError, match="'lots'"):
        parse_cache_size("lots")


def test_last_level_cache_is_the_largest_index_size(tmp_path: Path) -> None:
    for index, size in enumerate(["48K", "32K", "1024K", "32768K"]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "size").write_text(size + "\n")
    assert last_level_cache_bytes(str(tmp_path / "index*" / "size")) == 32 << 20


def test_last_level_cache_is_none_without_sysfs(tmp_path: Path) -> None:
    assert last_level_cache_bytes(str(tmp_path / "missing*" / "size")) is None


def test_stream_arrays_are_four_times_the_llc() -> None:
    assert stream_array_bytes(32 << 20) == 128 * MIB


def test_stream_arrays_are_at_least_64_mib() -> None:
    assert stream_array_bytes(2 << 20) == 64 * MIB
    assert stream_array_bytes(None) == 64 * MIB


def test_stream_counts_bytes_as_stream_does() -> None:
    assert STREAM_ARRAYS_MOVED == {"copy": 2, "scale": 2, "add": 3, "triad": 3}


def test_run_probe_reports_the_best_of_stream_and_the_in_place_add_as_the_ceiling() -> None:
    probe = run_probe(1, repeats=1, array_bytes=MIB, matmul_n=32)
    stream = probe.details["stream_gbs"]
    assert set(stream) == {"copy", "scale", "add", "triad"}
    kernels = {**stream, "inplace_add": probe.details["inplace_add_gbs"]}
    assert probe.bandwidth_gbs == max(kernels.values()) == kernels[probe.bandwidth_kernel]
    assert probe.matmul_gflops > 0


def test_run_probe_adds_write_allocate_traffic_to_stream_counts() -> None:
    details = run_probe(1, repeats=1, array_bytes=MIB, matmul_n=32).details
    stream, with_wa = details["stream_gbs"], details["stream_gbs_with_write_allocate"]
    assert with_wa["copy"] == pytest.approx(1.5 * stream["copy"])
    assert with_wa["triad"] == pytest.approx(4 / 3 * stream["triad"])
    assert details["inplace_add_gbs"] > 0


def test_run_probe_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    run_probe(2, repeats=1, array_bytes=MIB, matmul_n=32)
    assert torch.get_num_threads() == before


def test_run_probe_record_survives_the_protocol() -> None:
    probe = run_probe(1, repeats=1, array_bytes=MIB, matmul_n=32)
    assert isinstance(parse_line(dump_line(probe)), Probe)


def test_run_probe_refuses_zero_threads() -> None:
    with pytest.raises(ValueError, match="got 0"):
        run_probe(0)


def test_flops_per_step_counts_linear_forward_and_weight_gradient() -> None:
    model = torch.nn.Linear(10, 5)
    flops = flops_per_step(model, None, torch.randn(3, 10), torch.randn(3, 5), torch.nn.functional.mse_loss)
    # forward 2·3·10·5; backward needs only the weight gradient (inputs need no grad).
    assert flops == 2 * (2 * 3 * 10 * 5)


def test_flops_per_step_includes_the_frontend() -> None:
    model = torch.nn.Linear(4, 2)
    proj = torch.randn(8, 4)
    plain = flops_per_step(model, None, torch.randn(3, 4), torch.randn(3, 2), torch.nn.functional.mse_loss)
    with_front = flops_per_step(
        model, lambda x: x @ proj, torch.randn(3, 8), torch.randn(3, 2), torch.nn.functional.mse_loss
    )
    assert with_front == plain + 2 * 3 * 8 * 4


def test_flops_per_step_leaves_gradients_and_running_stats_alone() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    flops_per_step(model, None, torch.randn(5, 4), torch.randn(5, 4), torch.nn.functional.mse_loss)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model[1].running_mean, torch.zeros(4))


def test_recurrent_layers_count_in_the_step_flops():
    import torch

    from workloads.probe import flops_per_step

    lstm = torch.nn.LSTM(16, 32, batch_first=True)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.head = lstm, torch.nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    x, y = torch.randn(2, 5, 16), torch.zeros(2, dtype=torch.long)
    macs = 4 * 32 * (16 + 32) * 5 * 2  # gates x hidden x (input + hidden) x steps x batch
    assert flops_per_step(Net(), None, x, y, torch.nn.functional.cross_entropy) >= 6 * macs


# --- ceilings per accelerator -----------------------------------------------------------------


def test_run_probe_gives_the_cpu_matmul_ceiling_per_dtype() -> None:
    probe = run_probe(1, repeats=1, array_bytes=MIB, matmul_n=32)
    cpu = probe.ceilings["cpu"]
    assert set(cpu["matmul_gflops"]) == {"fp32", "bf16"}
    assert probe.matmul_gflops == cpu["matmul_gflops"]["fp32"]
    assert probe.bandwidth_gbs == cpu["bandwidth_gbs"]


def test_a_cuda_probe_without_cuda_says_why_and_keeps_the_cpu_figures(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    probe = run_probe(1, repeats=1, array_bytes=MIB, matmul_n=32, accels=("cpu", "cuda"))
    assert "is_available() is False" in probe.ceilings["cuda"]["error"]
    assert probe.bandwidth_gbs > 0


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch's CUDA calls answered as a GPU with 1 MiB of L2 and 64 MiB free would; tensors
    land on the CPU (there is no GPU here), every synchronisation is counted."""
    import types

    from workloads import probe as probe_module

    syncs = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(L2_cache_size=MIB))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (64 * MIB, 80 * MIB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Fake H200")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: syncs.append(1))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(probe_module, "cuda_device", lambda: torch.device("cpu"))
    return syncs


def test_the_cuda_probe_measures_the_gpus_own_memory_and_matmul_per_dtype(fake_cuda) -> None:
    probe = run_probe(1, repeats=2, array_bytes=MIB, matmul_n=32, accels=("cpu", "cuda"),
                      accel_matmul_n=32)
    cuda = probe.ceilings["cuda"]
    assert cuda["device_name"] == "Fake H200" and "error" not in cuda
    assert cuda["array_bytes"] == 8 * MIB  # 8×L2 would be 8 MiB; 1/8 of free memory is 8 MiB
    assert set(cuda["matmul_gflops"]) == {"fp32", "bf16"} and cuda["bandwidth_gbs"] > 0
    kernels = {**cuda["stream_gbs"], "inplace_add": cuda["inplace_add_gbs"]}
    assert cuda["bandwidth_gbs"] == kernels[cuda["bandwidth_kernel"]] == max(kernels.values())
    # every timed repetition sits between two synchronisations: 5 bandwidth kernels and 2
    # matmuls, 2 repetitions each, 2 syncs per repetition
    assert len(fake_cuda) == (5 + 2) * 2 * 2
    assert isinstance(parse_line(dump_line(probe)), Probe)


def test_cuda_arrays_are_far_beyond_l2_and_fit_in_free_memory() -> None:
    from workloads.probe import cuda_array_bytes

    assert cuda_array_bytes(l2_bytes=50 * MIB, free_bytes=140 << 30) == 400 * MIB
    assert cuda_array_bytes(l2_bytes=MIB, free_bytes=140 << 30) == 256 * MIB
    assert cuda_array_bytes(l2_bytes=50 * MIB, free_bytes=800 * MIB) == 100 * MIB


def test_each_case_is_placed_against_its_own_accelerators_ceiling_and_dtype() -> None:
    import pandas as pd

    from analysis.load import _probe_rows
    from reports.derived import ceilings_table

    cases = pd.DataFrame({"run_id": ["r", "r"], "device": ["gpu-box", "gpu-box"]})
    entry = {"device": "gpu-box", "threads": 1, "bandwidth_gbs": 20.0, "matmul_gflops": 100.0,
             "ceilings": {"cpu": {"device_name": "cpu", "bandwidth_gbs": 20.0,
                                  "matmul_gflops": {"fp32": 100.0, "bf16": 50.0}},
                          "cuda": {"device_name": "H200", "bandwidth_gbs": 4000.0,
                                   "matmul_gflops": {"fp32": 50_000.0, "bf16": 700_000.0}}}}
    probes = pd.DataFrame(_probe_rows(entry, cases, Path("probe.json")))
    row = {"device": "gpu-box", "workload": "w", "optimizer": "nag", "kernel": "fused",
           "threads": 1, "batch": 8, "run_id": "r", "status": "ok", "n_steps": 20,
           "median_step_ns": 1e6, "median_update_ns": 1e5, "update_bytes_per_step": 4e5,
           "flops_per_step": 1e9}
    summary = pd.DataFrame([{**row, "case_id": "a", "dtype": "bf16", "accel": "cuda"},
                            {**row, "case_id": "b", "dtype": "fp32", "accel": "cpu"}])
    table = ceilings_table(summary, probes).set_index("case_id")
    assert table.loc["a", "accel_name"] == "H200"
    assert table.loc["a", "update_bw_fraction"] == pytest.approx(4.0 / 4000.0)
    assert table.loc["a", "step_matmul_fraction"] == pytest.approx(1000.0 / 700_000.0)
    assert table.loc["b", "update_bw_fraction"] == pytest.approx(4.0 / 20.0)
    assert table.loc["b", "step_matmul_fraction"] == pytest.approx(1000.0 / 100.0)


def test_an_older_probe_without_per_accelerator_ceilings_still_places_cpu_cases() -> None:
    import pandas as pd

    from analysis.load import _probe_rows
    from reports.derived import ceilings_table

    cases = pd.DataFrame({"run_id": ["r"], "device": ["local"]})
    probes = pd.DataFrame(_probe_rows({"bandwidth_gbs": 20.0, "matmul_gflops": 100.0}, cases,
                                      Path("probe.json")))
    summary = pd.DataFrame([{"device": "local", "workload": "w", "optimizer": "nag",
                             "kernel": "fused", "threads": 1, "batch": 8, "dtype": "fp32",
                             "case_id": "a", "run_id": "r", "status": "ok", "n_steps": 20,
                             "median_step_ns": 1e6, "median_update_ns": 1e5,
                             "update_bytes_per_step": 4e5, "flops_per_step": 1e9}])
    table = ceilings_table(summary, probes)
    assert table.loc[0, "update_bw_fraction"] == pytest.approx(4.0 / 20.0)


# --- the GPU device check, as far as a CPU-only host can run it ------------------------------


REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_check_refuses_clearly_without_cuda(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", "tests/bench/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    assert "torch sees no CUDA device" in proc.stderr
    assert "no CUDA device" in (tmp_path / "gpu_check.txt").read_text()


def test_the_gpu_check_summary_places_cases_against_the_ceilings(tmp_path, capsys) -> None:
    import importlib.util

    from reports.synthetic import write_synthetic_run

    spec = importlib.util.spec_from_file_location("gpu_summary", REPO / "tests/bench/gpu_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = write_synthetic_run(tmp_path / "run", with_study=False)
    assert module.main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "ceilings (probe):" in out and "cpu (cpu): bandwidth 20.0 GB/s" in out
    assert "% of bandwidth" in out and "% of float32 matmul" in out  # the synthetic dtype
    assert "correctness (checked on the timed accelerator" in out


def test_the_matmul_grows_to_its_cap_while_a_multiply_stays_short(monkeypatch):
    from workloads import probe as probe_module

    monkeypatch.setattr(probe_module, "MATMUL_MAX_RUN_S", 1e9)
    assert probe_module.matmul_size(512) == 512
    monkeypatch.setattr(probe_module, "MATMUL_MAX_RUN_S", 0.0)  # no multiply is short enough
    assert probe_module.matmul_size(512) == probe_module.MATMUL_START_N
    assert probe_module.matmul_size(64) == 64  # a cap below the start size is the size


def test_the_probe_records_the_matmul_size_it_used_per_dtype():
    probe = run_probe(1, repeats=1, array_bytes=MIB, matmul_n=256)
    sizes = probe.ceilings["cpu"]["matmul_n_by_dtype"]
    assert set(sizes) == {"fp32", "bf16"} and all(128 <= n <= 256 for n in sizes.values())
