"""The model zoo: published sizes, MACs, the log-mel front end, and every workload trains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import workloads.models  # noqa: F401  (fills the registry)
from workloads.models.macs import count_macs, count_params
from workloads.models.mobilenet import MobileNetV2, MobileNetV2Config
from workloads.models.mobilenetv3 import MobileNetV3Config, MobileNetV3Small
from workloads.models.resnet import ResNet, ResNetConfig
from workloads.models.speech import (
    DS_CNN_PAPER_INPUT,
    DS_CNN_PAPER_OPS,
    DS_CNN_SIZES,
    DSCNN,
    KWT,
    KWTConfig,
    LogMel,
    LogMelConfig,
    SamePad2d,
)
from workloads.models.text import BertClassifier, BertConfig
from workloads.workload import WORKLOADS

torch.set_num_threads(1)


# --- published sizes ---------------------------------------------------------------------


def test_mobilenet_v2_at_width_1_has_the_reference_parameter_count():
    assert count_params(MobileNetV2(MobileNetV2Config(width=1.0, num_classes=1000))) == 3_504_872


def test_mobilenet_v3_small_has_the_reference_parameter_count():
    assert count_params(MobileNetV3Small(MobileNetV3Config(num_classes=1000))) == 2_542_856


def test_resnet18_has_the_reference_parameter_count():
    assert count_params(ResNet(ResNetConfig(num_classes=1000))) == 11_689_512


def test_bert_tiny_encoder_and_pooler_at_full_vocabulary_have_bert_tinys_4_4m_parameters():
    model = BertClassifier(BertConfig(vocab_size=30522, max_positions=512, num_classes=2))
    assert count_params(model) - count_params(model.classifier) == 4_385_920


def test_kwt1_has_the_reference_607308_parameters_at_12_classes():
    # ARM-software/keyword-transformer models_data_v2_12_labels/kwt1/model_summary.txt
    assert count_params(KWT(KWTConfig(num_classes=12))) == 607_308


@pytest.mark.parametrize("size", ["S", "M", "L"])
def test_ds_cnn_macs_match_the_hello_edge_ops_within_5_percent(size):
    model = DSCNN(DS_CNN_SIZES[size])
    macs = count_macs(model, torch.zeros(1, *DS_CNN_PAPER_INPUT))  # 49 frames x 10 MFCC
    assert 2 * macs == pytest.approx(DS_CNN_PAPER_OPS[size], rel=0.05)  # 1 MAC = 2 ops


# --- the MAC counter ---------------------------------------------------------------------


def test_count_macs_counts_convolutions_and_linear_layers_per_output_element():
    model = nn.Sequential(
        nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1), nn.Flatten(), nn.Linear(8 * 36, 3)
    )
    depthwise, pointwise, linear = 36 * 4 * 9, 36 * 8 * 4, 8 * 36 * 3
    assert count_macs(model, torch.zeros(1, 4, 8, 8)) == depthwise + pointwise + linear


def test_count_macs_counts_lstm_gates_over_every_step():
    model = nn.LSTM(8, 16, batch_first=True)
    assert count_macs(model, torch.zeros(2, 5, 8)) == 2 * 5 * 4 * 16 * (8 + 16)


def test_count_macs_counts_scaled_dot_product_attention():
    class Attend(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(x, x, x)

    tokens, dim = 10, 16
    assert count_macs(Attend(), torch.zeros(1, 1, tokens, dim)) == 2 * tokens * tokens * dim


def test_count_macs_leaves_batch_norm_statistics_and_mode_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).eval()
    before = model[1].running_mean.clone()
    count_macs(model, torch.randn(2, 1, 4, 4) + 5)
    assert torch.equal(model[1].running_mean, before)
    assert not model.training


def test_count_macs_counts_an_architecture_once_per_process(monkeypatch):
    from workloads.models import macs

    calls: list[int] = []
    real = macs._count
    monkeypatch.setattr(macs, "_COUNTED", {})
    monkeypatch.setattr(macs, "_count", lambda m, x: calls.append(1) or real(m, x))
    a, b = nn.Linear(6, 4), nn.Linear(6, 4)  # same architecture, other weights
    assert count_macs(a, torch.zeros(1, 6)) == count_macs(b, torch.zeros(1, 6)) == 24
    assert len(calls) == 1
    # another width, input length or module settings is another architecture: counted anew
    assert count_macs(nn.Linear(6, 5), torch.zeros(1, 6)) == 30
    assert count_macs(a, torch.zeros(3, 6)) == 72
    assert count_macs(nn.Conv1d(2, 2, 3, padding=1), torch.zeros(1, 2, 5)) != count_macs(
        nn.Conv1d(2, 2, 3, padding=0), torch.zeros(1, 2, 5))
    assert len(calls) == 5
    # a setting the repr does not show: batch_first makes attention run over other axes
    tokens = torch.zeros(2, 6, 8)
    first = count_macs(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), tokens)
    second = count_macs(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=False), tokens)
    assert first != second and len(calls) == 7


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_counting_on_the_meta_device_gives_the_count_of_a_real_pass(name):
    """count_macs runs its pass on meta tensors (shapes only); every registered workload must
    get the count a real forward pass gives (a recurrent model is counted on its own device)."""
    from workloads.models import macs

    task = WORKLOADS.get(name).make(2, 0)
    inputs = task.next_batch()[0][:2]
    features = task.frontend(inputs) if task.frontend is not None else inputs
    real = macs._count_on(task.model, features, None)
    assert macs._count(task.model, features) == real > 0


def test_a_model_that_needs_values_is_counted_on_its_own_device():
    from workloads.models import macs

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) if bool(x.sum() > 0) else self.b(x)  # a branch on data

    with pytest.raises((RuntimeError, NotImplementedError)):
        macs._count_on(Gated(), torch.ones(2, 4), torch.device("meta"))
    assert macs._count(Gated(), torch.ones(2, 4)) == 2 * 4 * 4
    assert macs._count(Gated(), -torch.ones(2, 4)) == 2 * 4 * 8


# --- speech front end --------------------------------------------------------------------


def test_log_mel_gives_98_frames_of_40_bins_for_one_second():
    assert LogMel()(torch.zeros(3, 16000)).shape == (3, 98, 40)
    assert LogMelConfig().frames(16000) == 98


def test_log_mel_of_a_pure_tone_peaks_in_the_bin_of_its_frequency():
    t = torch.arange(16000) / 16000
    low, high = (LogMel()(torch.sin(2 * math.pi * f * t)[None]) for f in (500.0, 4000.0))
    assert low.mean(dim=1).argmax() < high.mean(dim=1).argmax()


def test_log_mel_frame_t_windows_exactly_samples_160t_to_160t_plus_400():
    wave = torch.zeros(1, 16000)
    wave[0, 1800] = 1.0  # inside frames 9 (1440-1839), 10 and 11 (1760-2159) only
    energy = LogMel(LogMelConfig(standardize=False))(wave).exp().sum(dim=2)[0]
    assert (energy > 1e-3).nonzero().flatten().tolist() == [9, 10, 11]


def test_log_mel_standardises_each_clip_to_mean_0_and_std_1():
    t = torch.arange(16000) / 16000
    loud, quiet = 0.8 * torch.sin(2 * math.pi * 700 * t), 0.01 * torch.sin(2 * math.pi * 2000 * t)
    features = LogMel()(torch.stack([loud, quiet]))
    assert features.mean(dim=(1, 2)).abs().max() < 1e-4
    assert features.std(dim=(1, 2)).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)


def test_log_mel_of_a_silent_clip_standardises_to_zeros_not_nan():
    assert float(LogMel()(torch.zeros(1, 16000)).abs().max()) < 1e-3


@pytest.mark.parametrize("size,stride", [(49, 2), (10, 2), (25, 2), (13, 1)])
def test_same_padding_gives_tensorflows_ceil_of_size_over_stride(size, stride):
    conv = nn.Sequential(SamePad2d((3, 3), (stride, stride)), nn.Conv2d(1, 1, 3, stride))
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == math.ceil(size / stride)


# --- every registered workload -----------------------------------------------------------


@pytest.mark.parametrize("name", WORKLOADS.names())
def test_workload_builds_and_takes_a_forward_and_backward_step(name):
    spec = WORKLOADS.get(name)
    task = spec.make(batch=4, seed=0)
    inputs, targets = task.next_batch()
    assert tuple(inputs.shape) == task.input_shape
    features = task.frontend(inputs) if task.frontend is not None else inputs
    outputs = task.model(features)
    assert outputs.shape == (4, task.info["num_classes"])
    loss = task.loss_fn(outputs, targets)
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert all(p.grad is not None for p in task.model.parameters())


@pytest.mark.parametrize("name", WORKLOADS.names())
def test_workload_reports_its_domain_parameters_and_macs(name):
    task = WORKLOADS.get(name).make(batch=2, seed=0)
    assert task.info["domain"] == WORKLOADS.get(name).domain
    assert task.info["params"] == count_params(task.model) > 0
    assert task.info["forward_macs_per_sample"] > 0


def test_speech_workloads_give_raw_waveforms_and_a_log_mel_front_end():
    task = WORKLOADS.get("ds_cnn").make(batch=2, seed=0)
    assert task.input_shape == (2, 16000)
    assert isinstance(task.frontend, LogMel)


@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "mobilenet_v3_small", "resnet18", "bert_tiny", "lstm_text", "kwt1"]
)
def test_classifier_heads_start_at_zero_so_the_first_loss_is_ln_classes(name):
    task = WORKLOADS.get(name).make(batch=4, seed=0)
    inputs, targets = task.next_batch()
    features = task.frontend(inputs) if task.frontend is not None else inputs
    loss = float(task.loss_fn(task.model(features), targets).detach())
    assert loss == pytest.approx(math.log(task.info["num_classes"]), abs=1e-5)


def test_speech_workloads_default_to_8_classes_and_keep_the_papers_12_as_an_option():
    assert WORKLOADS.get("kwt1").make(batch=2, seed=0).info["num_classes"] == 8
    task = WORKLOADS.get("kwt1").make(batch=2, seed=0, options={"num_classes": 12})
    assert task.info["params"] == 607_308


def test_the_same_seed_builds_the_same_initial_weights():
    a, b = (WORKLOADS.get("kwt1").make(batch=2, seed=7).model for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_building_a_workload_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    WORKLOADS.get("lstm_text").make(batch=2, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_an_unknown_option_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="no option 'depth'.*num_classes"):
        WORKLOADS.get("resnet18").make(batch=2, seed=0, options={"depth": 34})


def test_an_unknown_ds_cnn_size_is_refused_with_the_sizes():
    with pytest.raises(ValueError, match="'XL' is unknown; use one of S, M, L"):
        WORKLOADS.get("ds_cnn").make(batch=2, seed=0, options={"size": "XL"})


def test_a_non_positive_size_option_is_refused_quoting_it():
    with pytest.raises(ValueError, match="width=0"):
        WORKLOADS.get("mobilenet_v2").make(batch=2, seed=0, options={"width": 0})


# --- named configurations and the published suite ----------------------------------------------


def test_mfcc_front_end_gives_the_papers_49_frames_of_10_coefficients():
    from workloads.models.speech import MFCC

    out = MFCC()(torch.randn(2, 16000))
    assert out.shape == (2, 49, 10)
    assert torch.allclose(out.mean(dim=(1, 2)), torch.zeros(2), atol=1e-5)


def test_mfcc_dct_is_orthonormal_over_the_kept_coefficients():
    from workloads.models.speech import MFCC

    dct = MFCC().dct  # [n_mels, coeffs]
    assert torch.allclose(dct.T @ dct, torch.eye(10), atol=1e-5)


def test_ds_cnn_s_on_the_papers_mfcc_input_has_the_papers_5_4m_ops_within_5_percent():
    task = WORKLOADS.get("ds_cnn").make(2, 0, {"features": "mfcc49x10", "num_classes": 12})
    assert task.info["frontend_output_shape"] == (49, 10)
    assert 2 * task.info["forward_macs_per_sample"] == pytest.approx(5.4e6, rel=0.05)


def test_ds_cnn_refuses_unknown_features_naming_the_known_ones():
    with pytest.raises(ValueError, match="logmel98x40, mfcc49x10"):
        WORKLOADS.get("ds_cnn").make(2, 0, {"features": "mfcc98x13"})


@pytest.mark.parametrize(("name", "options", "label"), [
    ("mobilenet_v2", {}, "width 0.5, 32x32 px, 10 classes, 0.70 M params"),
    ("resnet18", {}, "width 0.5, 32x32 px, 10 classes, 2.80 M params"),
    ("bert_tiny", {}, "vocab 4,096, seq 64, 4 classes, 0.95 M params"),
    ("ds_cnn", {"features": "mfcc49x10", "num_classes": 12}, "size S, 49x10 MFCC, 12 classes, 23.8 k params"),
    ("mobilenet_v2", {"width": 1.0, "num_classes": 1000, "resolution": 224},
     "width 1, 224x224 px, 1000 classes, 3.50 M params"),
])
def test_a_configuration_is_described_by_what_it_is(name, options, label):
    from workloads.models.common import describe_task

    assert describe_task(WORKLOADS.get(name).make(2, 0, options)) == label


def test_the_published_suite_runs_the_published_sizes():
    from harness.plan import expand, load_suite
    from workloads.models.common import describe_task

    cases = expand(load_suite("published"))
    configs = {c.workload: dict(c.options) for c in cases}
    assert set(configs) == {"mobilenet_v2", "resnet18", "bert_tiny", "ds_cnn"}
    assert configs["bert_tiny"]["vocab_size"] == 30522
    assert configs["ds_cnn"]["features"] == "mfcc49x10"
    tasks = {name: WORKLOADS.get(name).make(1, 0, opts)
             for name, opts in configs.items() if name in ("mobilenet_v2", "resnet18")}
    assert {name: t.info["params"] for name, t in tasks.items()} == {
        "mobilenet_v2": 3_504_872, "resnet18": 11_689_512}
    assert "224x224 px" in describe_task(tasks["resnet18"])
