"""A quantization-aware student under MirroredStrategy gives the one-device result.

Two logical CPU devices, in a fresh process (`tests/quantization_distribute_worker.py`),
because logical devices must be configured before TensorFlow initializes.
What holds: the student's weights *and* its learned activation ranges after
two epochs of distillation under a two-replica `MirroredStrategy` equal those
of one device on the same batches (to float32 rounding), with the ranges set
from calibration data or by the first (global) training batch.
"""

import numpy as np
import pytest
from two_cpus import run_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_worker("quantization_distribute_worker.py", tmp_path_factory.mktemp("qat_distribute"),
                      timeout=600)


def test_two_replicas_really_ran(results):
    assert results["replicas"] == 2


@pytest.mark.parametrize("case", ["calibrated", "uncalibrated"])
def test_weights_and_ranges_match_one_device(results, case):
    one, mirrored = results[case]["one"], results[case]["mirrored"]
    assert one["names"] == mirrored["names"]
    # The range variables are among the weights; check them by name as well.
    assert any("range_max" in name for name in one["names"])
    for name, expected, actual in zip(one["names"], one["weights"], mirrored["weights"]):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=name)
    assert one["ranges"].keys() == mirrored["ranges"].keys()
    for name, expected in one["ranges"].items():
        np.testing.assert_allclose(mirrored["ranges"][name], expected, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    for name, values in one["history"].items():
        np.testing.assert_allclose(mirrored["history"][name], values, rtol=1e-5, err_msg=name)


def test_fixed_tanh_range_and_training_moved_the_student(results):
    one = results["uncalibrated"]["one"]
    # tanh's output range is LiteRT's fixed int8 range, never learned.
    assert one["ranges"]["hidden_quant"] == [-1.0, 127.0 / 128.0]
    # The first training batch set every learned range (no calibration data).
    assert all(high > low for low, high in one["ranges"].values())
    losses = one["history"]["loss"]
    assert losses[-1] < losses[0]
