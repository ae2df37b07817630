import pytest

from workloads.registry import Registry, UnknownNameError


def test_an_unknown_name_lists_the_known_ones_and_the_nearest():
    reg = Registry("workload")
    reg.add("mobilenet_v2", 1)
    reg.add("bert_tiny", 2)
    with pytest.raises(UnknownNameError) as err:
        reg.get("mobilenet_v3")
    assert "did you mean 'mobilenet_v2'" in str(err.value)
    assert "bert_tiny, mobilenet_v2" in str(err.value)


def test_registering_a_name_twice_is_an_error():
    reg = Registry("optimizer")
    reg.add("nag", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("nag", 2)
