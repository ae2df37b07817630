"""One harness process measures on a device at a time; the second says who holds it."""

import os

import pytest

from harness.errors import DeviceBusy
from harness.locks import DeviceLock


def test_a_second_holder_is_refused_with_who_holds_the_device(tmp_path):
    with DeviceLock("pixel7", "run-a", tmp_path):
        with pytest.raises(DeviceBusy) as err:
            with DeviceLock("pixel7", "run-b", tmp_path):
                pass
    message = str(err.value)
    assert f"pid {os.getpid()}" in message and "run run-a" in message
    assert "wait for it to finish" in message


def test_the_lock_is_released_on_exit(tmp_path):
    with DeviceLock("rpi5", "run-a", tmp_path):
        pass
    with DeviceLock("rpi5", "run-b", tmp_path):
        pass


def test_different_devices_do_not_block_each_other(tmp_path):
    with DeviceLock("rpi5", "run-a", tmp_path), DeviceLock("pixel7", "run-a", tmp_path):
        pass
