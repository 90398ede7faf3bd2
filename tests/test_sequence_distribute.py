"""Two replicas with uneven padding per replica give the one-device result.

Every term of a sequence model is a mean over the real tokens of the
*global* batch; see `tests/sequence_distribute_worker.py` for the data.
"""

import numpy as np
import pytest
from two_cpus import run_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_worker("sequence_distribute_worker.py", tmp_path_factory.mktemp("sequence_distribute"))


def test_two_replicas_really_ran(results):
    assert results["replicas"] == 2


@pytest.mark.parametrize("scenario", ["forward_kl", "jsd_chunked"])
def test_uneven_padding_per_replica_matches_one_device(results, scenario):
    one, mirrored = results[scenario]["one"], results[scenario]["mirrored"]
    for expected, actual in zip(one["weights"], mirrored["weights"]):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert set(one["history"]) == {"loss", "student_loss", "distillation_loss", "acc"}
    for name, values in one["history"].items():
        np.testing.assert_allclose(mirrored["history"][name], values, rtol=1e-5, err_msg=name)
    for name, value in one["evaluate"].items():
        np.testing.assert_allclose(mirrored["evaluate"][name], value, rtol=1e-5, err_msg=name)
    # The run learned something: weights moved away from their start.
    assert one["history"]["loss"][-1] < one["history"]["loss"][0]


def test_exact_gradient_accumulation_on_two_replicas_matches_one_large_batch(results):
    """Micro-batches of 12 and 48 real tokens, each split over two replicas,
    accumulated over 2 steps: the weights of one device's batches of 8."""
    one, accumulated = results["accumulated"]["one"], results["accumulated"]["mirrored"]
    for expected, actual in zip(one["weights"], accumulated["weights"]):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    for name, value in one["evaluate"].items():
        np.testing.assert_allclose(accumulated["evaluate"][name], value, rtol=1e-5, err_msg=name)
