"""Optimizers beside NAG, NAG's kernel variants, and the correctness checker."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from workloads.optim import (
    OPTIMIZERS,
    extra,  # noqa: F401  (registers adam, rmsprop, adagrad, lion)
    state_bytes,
)
from workloads.optim.check import (
    CHECK_WEIGHT_DECAY,
    check_hparams,
    max_rel_diff_vs_reference,
    param_tolerance,
    tolerance_for,
)
from workloads.optim.flat import FlatFusedNAG, FlatNAG
from workloads.optim.lion import Lion
from workloads.optim.nag_variants import build_nag_variant, with_nag_variants

torch.set_num_threads(1)

NAG = with_nag_variants(OPTIMIZERS.get("nag"))


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def make_batch_fn(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)

    def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(4, 6, generator=gen), torch.randn(4, 3, generator=gen)

    return make_batch


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(out, target)


def rel_diff(spec_name: str, kernel: str, **hp: float) -> float:
    spec = NAG if spec_name == "nag" else OPTIMIZERS.get(spec_name)
    return max_rel_diff_vs_reference(
        tiny_model, spec, kernel, hp, steps=5, make_batch=make_batch_fn(), loss_fn=mse
    )


# --- Lion, from the paper's rule -------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_lion_first_step_moves_each_weight_by_lr_times_sign_of_interpolated_gradient(foreach: bool) -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    p.grad = torch.tensor([0.3, -0.1, 0.0])
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), foreach=foreach)
    opt.step()
    # m = 0, so c = 0.1·g and sign(c) = sign(g); a zero gradient gives sign 0.
    assert torch.allclose(p.detach(), torch.tensor([0.9, -1.9, 0.5]))
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor([0.003, -0.001, 0.0]))


@pytest.mark.parametrize("foreach", [False, True])
def test_lion_second_step_uses_beta1_interpolation_of_the_old_momentum(foreach: bool) -> None:
    p = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), foreach=foreach)
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()  # m = [0.01, 0.01], p = [-0.1, -0.1]
    p.grad = torch.tensor([-0.05, -0.2])
    opt.step()
    # c = 0.9·0.01 + 0.1·g = [0.004, -0.011] -> signs [+1, -1]
    assert torch.allclose(p.detach(), torch.tensor([-0.2, 0.0]), atol=1e-7)
    # m = 0.99·0.01 + 0.01·g = [0.0094, 0.0079]
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor([0.0094, 0.0079]))


@pytest.mark.parametrize("foreach", [False, True])
def test_lion_weight_decay_subtracts_lr_times_wd_times_weight(foreach: bool) -> None:
    p = torch.nn.Parameter(torch.tensor([2.0]))
    p.grad = torch.tensor([-1.0])
    Lion([p], lr=0.1, weight_decay=0.5, foreach=foreach).step()
    assert torch.allclose(p.detach(), torch.tensor([2.0 - 0.1 * (-1.0 + 0.5 * 2.0)]))


def test_lion_refuses_a_beta_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="beta2"):
        Lion([torch.nn.Parameter(torch.zeros(1))], betas=(0.9, 1.0))


# --- the extra optimizers' registration ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kernels"),
    [("adam", ("forloop", "foreach", "fused")), ("rmsprop", ("forloop", "foreach")),
     ("adagrad", ("forloop", "foreach", "fused")), ("lion", ("forloop", "foreach"))],
)
def test_extra_optimizer_offers_the_kernels_torch_supports_on_cpu(name: str, kernels: tuple[str, ...]) -> None:
    assert OPTIMIZERS.get(name).kernels == kernels


@pytest.mark.parametrize(
    ("name", "kernel"),
    [(n, k) for n in ("adam", "rmsprop", "adagrad", "lion") for k in OPTIMIZERS.get(n).kernels],
)
def test_extra_optimizer_kernel_follows_its_reference(name: str, kernel: str) -> None:
    assert rel_diff(name, kernel) < tolerance_for(torch.float32)


@pytest.mark.parametrize(("name", "tensors"), [("adam", 2), ("rmsprop", 1), ("adagrad", 1), ("lion", 1)])
def test_extra_optimizer_state_bytes_count_its_state_tensors(name: str, tensors: int) -> None:
    model = tiny_model()
    spec = OPTIMIZERS.get(name)
    opt = spec.build(model, spec.kernels[0], spec.hparams())
    mse(model(torch.randn(2, 6)), torch.randn(2, 3)).backward()
    opt.step()
    param_bytes = sum(p.nbytes for p in model.parameters())
    assert state_bytes(opt) == tensors * param_bytes
    assert spec.state_tensors_per_param == tensors


def test_rmsprop_refuses_the_fused_kernel_with_the_kernels_it_has() -> None:
    spec = OPTIMIZERS.get("rmsprop")
    with pytest.raises(ValueError, match="'fused'.*forloop, foreach"):
        spec.build(tiny_model(), "fused", spec.hparams())


# --- NAG kernel variants ---------------------------------------------------------------------


def test_nag_with_variants_offers_six_kernels_in_order() -> None:
    assert NAG.kernels == ("forloop", "foreach", "fused", "compiled", "flat", "ort")


def test_with_nag_variants_is_idempotent() -> None:
    assert with_nag_variants(NAG) is NAG


@pytest.mark.parametrize("kernel", ["forloop", "foreach", "fused", "compiled", "flat", "ort"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_nag_kernel_follows_torch_sgd_nesterov(kernel: str, weight_decay: float) -> None:
    assert rel_diff("nag", kernel, weight_decay=weight_decay) < tolerance_for(torch.float32)


def test_checker_flags_heavy_ball_momentum_as_not_nesterov() -> None:
    heavy_ball = dataclasses.replace(NAG, build=OPTIMIZERS.get("momentum").build)
    diff = max_rel_diff_vs_reference(
        tiny_model, heavy_ball, "forloop", {}, steps=5, make_batch=make_batch_fn(), loss_fn=mse
    )
    assert diff > 100 * tolerance_for(torch.float32)


def test_unknown_nag_variant_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="compiled, flat, ort"):
        build_nag_variant(tiny_model(), "triton", NAG.hparams())


def test_flat_parameters_and_grads_are_views_into_one_buffer_each() -> None:
    model = tiny_model()
    opt = FlatNAG(model.parameters(), lr=0.1, momentum=0.9)
    base = opt.flat.param.data_ptr()
    assert all(
        base <= p.data_ptr() < base + opt.flat.param.nbytes for p in model.parameters()
    )
    assert opt.flat.grads_are_views()


def test_flat_backward_accumulates_into_the_flat_gradient() -> None:
    model = tiny_model()
    opt = FlatNAG(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    mse(model(torch.randn(4, 6)), torch.randn(4, 3)).backward()
    assert opt.flat.grads_are_views()
    assert opt.flat.grad.abs().sum() > 0
    assert torch.equal(torch.cat([p.grad.flatten() for p in model.parameters()]), opt.flat.grad)


def test_flat_zero_grad_keeps_grads_as_views() -> None:
    opt = FlatNAG(tiny_model().parameters(), lr=0.1, momentum=0.9)
    opt.flat.grad.fill_(1.0)
    opt.zero_grad(set_to_none=True)
    assert opt.flat.grads_are_views() and not opt.flat.grad.any()


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_flat_chunked_update_equals_whole_buffer_update(weight_decay: float) -> None:
    models = [tiny_model(), tiny_model()]
    opts = [FlatNAG(m.parameters(), 0.1, 0.9, weight_decay, chunk_elems=c) for m, c in zip(models, (7, None), strict=True)]
    for _ in range(3):
        grad = torch.randn(opts[0].flat.numel)
        for opt in opts:
            opt.flat.grad.copy_(grad)
            opt.step()
    assert torch.equal(opts[0].flat.param, opts[1].flat.param)


def test_flat_chunked_update_leaves_the_gradient_as_backward_wrote_it() -> None:
    opt = FlatNAG(tiny_model().parameters(), 0.1, 0.9, weight_decay=0.1, chunk_elems=16)
    opt.flat.grad.copy_(torch.randn(opt.flat.numel))
    before = opt.flat.grad.clone()
    opt.step()
    opt.step()
    assert torch.equal(opt.flat.grad, before)


def test_flat_refuses_mixed_dtypes_naming_them() -> None:
    model = tiny_model()
    model[2].double()
    with pytest.raises(ValueError, match="float64"):
        FlatNAG(model.parameters(), 0.1, 0.9)


def test_ort_update_writes_into_the_flat_buffers_without_copies() -> None:
    model = tiny_model()
    opt = NAG.build(model, "ort", NAG.hparams())
    opt.flat.grad.normal_()
    opt.step()
    assert opt.outputs_in_place()


def test_ort_update_follows_a_learning_rate_change_without_a_rebuild() -> None:
    opt = NAG.build(tiny_model(), "ort", NAG.hparams({"momentum": 0.0}))
    opt.flat.grad.fill_(1.0)
    before = opt.flat.param.clone()
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    assert torch.allclose(opt.flat.param, before - 0.25)


def test_ort_refuses_a_momentum_change_after_build() -> None:
    opt = NAG.build(tiny_model(), "ort", NAG.hparams())
    opt.param_groups[0]["momentum"] = 0.5
    with pytest.raises(ValueError, match="build a new updater"):
        opt.step()


def test_compiled_update_records_compile_time_and_does_not_recompile_for_a_new_lr() -> None:
    model = tiny_model()
    opt = NAG.build(model, "compiled", NAG.hparams())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.compile_ns > 0
    opt.param_groups[0]["lr"] = 0.001
    with torch._dynamo.config.patch(error_on_recompile=True):
        opt.step()


@pytest.mark.parametrize("kernel", ["compiled", "flat", "ort"])
def test_nag_variant_state_bytes_are_one_momentum_buffer(kernel: str) -> None:
    model = tiny_model()
    opt = NAG.build(model, kernel, NAG.hparams())
    assert state_bytes(opt) == sum(p.nbytes for p in model.parameters())


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_flat_fused_follows_torch_sgd_nesterov(weight_decay: float) -> None:
    spec = dataclasses.replace(
        NAG, build=lambda m, _k, hp: FlatFusedNAG(m.parameters(), hp["lr"], hp["momentum"], hp["weight_decay"])
    )
    diff = max_rel_diff_vs_reference(
        tiny_model, spec, "flat_fused", {"weight_decay": weight_decay}, steps=5,
        make_batch=make_batch_fn(), loss_fn=mse,
    )
    assert diff < tolerance_for(torch.float32)


# --- the checker catches near-miss kernels, in fp32 and under bf16 autocast -------------------


class _LrTimes102(torch.optim.SGD):
    """NAG with a 2 % learning-rate error (read from the group every step, then scaled)."""

    def step(self, closure=None):  # type: ignore[override]
        saved = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] *= 1.02
        super().step()
        for g, lr in zip(self.param_groups, saved, strict=True):
            g["lr"] = lr


class _KeepsFirstLr(torch.optim.SGD):
    """NAG that keeps the lr it was built with (a schedule never reaches it)."""

    def step(self, closure=None):  # type: ignore[override]
        first = self.defaults["lr"]
        for g in self.param_groups:
            g["lr"] = first
        super().step()


def _broken_build(kind: str):
    def build(model, kernel, hp):
        args = {"lr": hp["lr"], "momentum": hp["momentum"], "nesterov": True,
                "weight_decay": hp["weight_decay"], "foreach": False}
        if kind == "heavy-ball":
            args["nesterov"] = False
        elif kind == "momentum-0.89":
            args["momentum"] = 0.89
        elif kind == "ignores-weight-decay":
            args["weight_decay"] = 0.0
        elif kind == "lr-x1.02":
            return _LrTimes102(model.parameters(), **args)
        elif kind == "keeps-first-lr":
            return _KeepsFirstLr(model.parameters(), **args)
        return torch.optim.SGD(model.parameters(), **args)

    return build


def _bf16_or_fp32(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["heavy-ball", "lr-x1.02", "momentum-0.89", "ignores-weight-decay",
                                  "keeps-first-lr"])
def test_checker_flags_a_near_miss_nag_kernel_in_fp32_and_bf16(kind: str, dtype: str) -> None:
    """At the case's defaults (lr 0.05, momentum 0.9, weight decay 0): the check's changing lr
    and non-zero weight decay expose each kernel, and bf16 autocast keeps fp32 parameters, so
    fp32's tolerance applies."""
    broken = dataclasses.replace(NAG, build=_broken_build(kind))
    model = tiny_model()
    with _bf16_or_fp32(dtype):
        diff = max_rel_diff_vs_reference(model, broken, "forloop", {}, steps=10,
                                          make_batch=make_batch_fn(), loss_fn=mse)
    assert param_tolerance(model) == tolerance_for(torch.float32)
    assert diff > param_tolerance(model), f"{kind} in {dtype}: {diff:.2e}"


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("kernel", ["forloop", "foreach", "fused", "flat", "ort"])
def test_correct_nag_kernels_pass_the_stricter_check_in_fp32_and_bf16(kernel: str, dtype: str) -> None:
    model = tiny_model()
    with _bf16_or_fp32(dtype):
        diff = max_rel_diff_vs_reference(model, NAG, kernel, {}, steps=10,
                                          make_batch=make_batch_fn(), loss_fn=mse)
    assert diff <= param_tolerance(model)


def test_check_hyper_parameters_make_weight_decay_non_zero_and_keep_a_set_one() -> None:
    assert check_hparams(NAG, {})["weight_decay"] == CHECK_WEIGHT_DECAY > 0
    assert check_hparams(NAG, {"weight_decay": 0.3})["weight_decay"] == 0.3


# --- memory format and missing gradients ------------------------------------------------------


def conv_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))


@pytest.mark.parametrize("kernel", ["flat", "ort"])
def test_flat_kernels_keep_a_channels_last_model_channels_last(kernel: str) -> None:
    model = conv_model().to(memory_format=torch.channels_last)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    updater = NAG.build(model, kernel, NAG.hparams())
    weight = model[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert weight.grad.stride() == weight.stride()
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    assert updater.flat.grads_are_views() and updater.flat.missing() == []


class LateBranch(torch.nn.Module):
    """A branch that first takes part (and gets a gradient) from the third step on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main = torch.nn.Linear(6, 3)
        self.late = torch.nn.Linear(6, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.main(x)
        return out + self.late(x) if self.calls > 2 else out


@pytest.mark.parametrize("kernel", ["forloop", "foreach", "fused", "compiled", "flat", "ort"])
def test_every_nag_kernel_skips_a_parameter_without_gradient_as_torch_does(kernel: str) -> None:
    """No gradient for two steps: torch leaves the parameter alone (no weight decay, no
    momentum), and its first gradient at step 2 starts its momentum at b ← g."""
    diff = max_rel_diff_vs_reference(LateBranch, NAG, kernel, {"weight_decay": 0.05}, steps=6,
                                     make_batch=make_batch_fn(), loss_fn=mse)
    assert diff <= tolerance_for(torch.float32)


def test_flat_kernel_leaves_a_parameter_without_gradient_untouched() -> None:
    model = LateBranch()
    late = model.late.weight.detach().clone()
    updater = NAG.build(model, "flat", {**NAG.hparams(), "weight_decay": 0.1})
    x, y = make_batch_fn()()
    mse(model(x), y).backward()
    assert len(updater.flat.missing()) == 2  # late.weight and late.bias
    updater.step()
    assert torch.equal(model.late.weight.detach(), late)
