"""Suites expand into cases; CLI filters narrow them; the order is shuffled reproducibly."""

import pytest

from harness.errors import ConfigError
from harness.plan import Filters, expand, load_suite, shuffled


def _suite(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_suite(str(path))


def test_smoke_covers_three_domains_and_the_torch_nag_kernels():
    cases = expand(load_suite("smoke"))
    assert {c.domain for c in cases} == {"image", "nlp", "speech"}
    nag = {c.kernel for c in cases if c.optimizer == "nag"}
    assert {"forloop", "foreach", "fused"} <= nag
    assert {"sgd", "momentum", "adamw"} <= {c.optimizer for c in cases}


def test_filters_narrow_the_suite():
    cases = expand(load_suite("smoke"), Filters(workloads=("bert_tiny",), kernels=("fused",)))
    assert [(c.workload, c.optimizer, c.kernel) for c in cases] == [("bert_tiny", "nag", "fused")]


def test_overrides_replace_threads_batch_and_steps():
    cases = expand(load_suite("smoke"), Filters(threads=(1, 2), batch=(4,), steps=7, warmup=0))
    assert {c.threads for c in cases} == {1, 2}
    assert {(c.batch, c.steps, c.warmup) for c in cases} == {(4, 7, 0)}


def test_the_smoke_suite_runs_every_case_in_three_processes_by_default():
    from harness.schedule import processes_for

    assert processes_for(load_suite("smoke").data, None, "smoke.toml") == 3


def test_check_steps_from_the_command_line_replace_the_suites():
    assert {c.check_steps for c in expand(load_suite("smoke"))} == {10}
    assert {c.check_steps for c in expand(load_suite("smoke"), Filters(check_steps=0))} == {0}
    with pytest.raises(ConfigError, match="--check-steps"):
        expand(load_suite("smoke"), Filters(check_steps=-1))


def test_case_ids_are_stable_and_readable():
    case = expand(load_suite("smoke"), Filters(workloads=("ds_cnn",), optimizers=("nag",), kernels=("foreach",)))[0]
    assert case.case_id == "ds_cnn-nag-foreach-t1-b8-fp32"


def test_an_unknown_filter_name_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'foreach'"):
        expand(load_suite("smoke"), Filters(kernels=("forech",)))


def test_a_filter_that_matches_nothing_is_an_error():
    with pytest.raises(ConfigError, match="no case matches"):
        expand(load_suite("smoke"), Filters(workloads=("bert_tiny",), optimizers=("sgd",), kernels=("fused",)))


def test_unsupported_optimizer_kernel_pairs_are_dropped(tmp_path):
    suite = _suite(tmp_path, '[[matrix]]\nworkloads = ["bert_tiny"]\noptimizers = ["*"]\nkernels = ["*"]\n')
    from workloads.optim import OPTIMIZERS

    for case in expand(suite):
        assert case.kernel in OPTIMIZERS.get(case.optimizer).kernels


def test_suite_mistakes_name_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"s.toml: matrix\[0\].workloads: unknown workload 'mobilenet'"):
        expand(_suite(tmp_path, '[[matrix]]\nworkloads = ["mobilenet"]\n'))
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        _suite(tmp_path, "step = 3\n[[matrix]]\n")
    with pytest.raises(ConfigError, match="at least one"):
        _suite(tmp_path, "steps = 3\n")
    with pytest.raises(ConfigError, match=r"steps: must be in 1 … 1000000"):
        expand(_suite(tmp_path, 'steps = 0\n[[matrix]]\nworkloads = ["bert_tiny"]\n'))


def test_an_unknown_suite_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known suites: full, .*quick, smoke"):
        load_suite("smok")


def test_the_shuffle_is_reproducible_and_changes_the_order():
    cases = expand(load_suite("smoke"))
    assert shuffled(cases, 1) == shuffled(cases, 1)
    assert shuffled(cases, 1) != cases
    assert sorted(c.case_id for c in shuffled(cases, 1)) == sorted(c.case_id for c in cases)


def test_an_aa_replica_has_its_own_case_id_and_a_slowdown_keeps_the_id():
    import dataclasses

    case = expand(load_suite("smoke"), Filters(workloads=("ds_cnn",), optimizers=("nag",), kernels=("foreach",)))[0]
    assert dataclasses.replace(case, replica="aa1").case_id == "ds_cnn-nag-foreach-t1-b8-fp32-aa1"
    slowed = dataclasses.replace(case, slowdown=0.05, slowdown_phase="update")
    assert slowed.case_id == case.case_id
    assert (slowed.spec()["slowdown"], slowed.spec()["slowdown_phase"]) == (0.05, "update")


def test_the_spec_of_a_later_repeat_skips_the_check_and_says_why():
    import dataclasses

    case = expand(load_suite("smoke"), Filters(workloads=("ds_cnn",), optimizers=("nag",), kernels=("foreach",)))[0]
    assert case.spec()["check_steps"] == 10 and "check_reason" not in case.spec()
    later = dataclasses.replace(case, repeat=2).spec()
    assert later["check_steps"] == 0 and "repeat-0" in later["check_reason"]
