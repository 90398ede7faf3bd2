"""MirroredStrategy on two logical CPU devices gives the one-device result.

The runs happen in a fresh process (`tests/distribute_worker.py`), because
logical devices must be configured before TensorFlow initializes.
"""

import numpy as np
import pytest
from two_cpus import run_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_worker("distribute_worker.py", tmp_path_factory.mktemp("distribute"))


def assert_same_run(one, mirrored):
    assert len(one["weights"]) == len(mirrored["weights"])
    for expected, actual in zip(one["weights"], mirrored["weights"]):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert one["history"].keys() == mirrored["history"].keys()
    for name, values in one["history"].items():
        np.testing.assert_allclose(mirrored["history"][name], values, rtol=1e-5, err_msg=name)
    if "evaluate" in one:
        assert one["evaluate"].keys() == mirrored["evaluate"].keys()
        for name, value in one["evaluate"].items():
            np.testing.assert_allclose(mirrored["evaluate"][name], value, rtol=1e-5, err_msg=name)


def test_two_replicas_really_ran(results):
    assert results["replicas"] == 2


def test_numpy_input_uneven_last_batch_matches_one_device(results):
    # 249 examples in batches of 16: the last batch (9) splits 5/4.
    assert_same_run(results["numpy"]["one"], results["numpy"]["mirrored"])
    assert set(results["numpy"]["one"]["history"]) == {
        "loss", "student_loss", "distillation_loss", "acc"}


def test_in_step_augmentation_matches_one_device(results):
    # Each replica augments its own share; a deterministic augmentation
    # therefore gives exactly the one-device result.
    assert_same_run(results["augmented"]["one"], results["augmented"]["mirrored"])


def test_mixup_trains_under_two_replicas(results):
    # MixUp draws partners within each replica's share: a different (equally
    # valid) mixing than one device, so only finiteness and progress are checked.
    mixup = results["mixup"]
    assert mixup["finite"]
    losses = mixup["history"]["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_dataset_with_cached_logits_and_unlabeled_rows_matches_one_device(results):
    assert_same_run(results["dataset"]["one"], results["dataset"]["mirrored"])


def test_teacher_built_outside_scope_matches_one_device(results):
    # A frozen teacher with plain variables is read by every replica.
    assert_same_run(results["plain_teacher"]["one"], results["plain_teacher"]["mirrored"])


def test_runs_differ_from_untrained_student(results):
    # Guards the comparisons above against two runs that both did nothing.
    one = results["numpy"]["one"]
    assert one["history"]["loss"][0] > 0
    assert one["evaluate"]["acc"] > 0.2


def test_jit_compile_true_falls_back_with_a_warning_on_cpu_replicas(results):
    jit = results["jit"]
    assert jit["jit_compile"] is False
    assert any("Proceeding with jit_compile=False" in w for w in jit["warnings"])
    assert_same_run(results["numpy"]["one"], jit)


@pytest.mark.parametrize("case, words", [
    ("distiller_outside_scope", ["student", "MirroredStrategy", "outside any strategy scope"]),
    ("models_outside_scope", ["student", "outside any strategy scope", "MirroredStrategy.scope()"]),
    ("batch_size_1", ["number of replicas (2)", "batch_size=1"]),
    ("dataset_batch_1", ["number of replicas (2)", "dataset's batches=1"]),
    ("evaluate_batch_size_1", ["number of replicas (2)", "batch_size=1"]),
])
def test_bad_input_gives_a_clear_error(results, case, words):
    error = results["bad_inputs"][case]
    assert error is not None, f"{case} raised no error"
    assert error["type"] == "ValueError"
    for word in words:
        assert word in error["message"]
