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
