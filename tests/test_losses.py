import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_kd
from keras_kd.src.terms import losses

from conftest import numpy_kd


@pytest.mark.parametrize("temperature", [1.0, 2.5, 4.0, 20.0])
def test_kl_matches_numpy_reference(temperature):
    rng = np.random.default_rng(0)
    t = rng.normal(0, 3, (16, 10)).astype("float32")
    s = rng.normal(0, 3, (16, 10)).astype("float32")
    got = keras.ops.convert_to_numpy(losses.distillation_kl_divergence(t, s, temperature))
    np.testing.assert_allclose(got, numpy_kd(t, s, temperature), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean_probabilities", "mean_kl"])
def test_several_teachers_match_numpy_reference(reduction):
    rng = np.random.default_rng(1)
    teachers = [rng.normal(0, 2, (8, 5)).astype("float32") for _ in range(3)]
    s = rng.normal(0, 2, (8, 5)).astype("float32")
    weights = [0.5, 0.3, 0.2]
    got = losses.distillation_kl_divergence(
        teachers, s, 3.0, teacher_weights=weights, teacher_reduction=reduction
    )
    expected = numpy_kd(teachers, s, 3.0, weights, reduction)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-4, atol=1e-5)


def test_zero_when_student_equals_teacher():
    logits = np.random.default_rng(2).normal(0, 5, (4, 7)).astype("float32")
    got = keras.ops.convert_to_numpy(losses.distillation_kl_divergence(logits, logits, 4.0))
    np.testing.assert_allclose(got, 0.0, atol=1e-6)


def test_gradient_is_t_times_probability_difference_over_batch():
    rng = np.random.default_rng(3)
    batch, temperature = 6, 3.0
    t = rng.normal(0, 2, (batch, 4)).astype("float32")
    s = tf.Variable(rng.normal(0, 2, (batch, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = keras_kd.DistillationKLDivergence(temperature=temperature)(t, s)
    grad = tape.gradient(loss, s).numpy()
    q = tf.nn.softmax(s / temperature).numpy()
    p = tf.nn.softmax(t / temperature).numpy()
    np.testing.assert_allclose(grad, temperature * (q - p) / batch, rtol=1e-4, atol=1e-6)


def test_finite_with_extreme_logits_in_float16():
    t = np.array([[100.0, -100.0, 0.0]], dtype="float16")
    s = np.array([[-100.0, 100.0, 0.0]], dtype="float16")
    for temperature in (1.0, 20.0):
        value = keras.ops.convert_to_numpy(losses.distillation_kl_divergence(t, s, temperature))
        assert np.all(np.isfinite(value)), value
        assert value.dtype == np.float32


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_temperature_raises(bad):
    with pytest.raises(ValueError, match="temperature"):
        keras_kd.DistillationKLDivergence(temperature=bad)


def test_loss_class_serializes():
    loss = keras_kd.DistillationKLDivergence(temperature=7.0)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, keras_kd.DistillationKLDivergence)
    assert clone.temperature == 7.0


@pytest.mark.parametrize(
    "weights, match",
    [([1.0], "one weight per teacher"), ([1.0, -1.0], "non-negative"), ([0.0, 0.0], "positive")],
)
def test_bad_teacher_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        losses.normalize_teacher_weights(weights, 2)
