"""Several teachers through the Distiller: math, freezing, one code path."""

import numpy as np
import pytest

import keras
import keras_kd
from keras_kd.src.data import datasets
from keras_kd.src.models import models

from conftest import numpy_kd, numpy_log_softmax


@pytest.fixture(scope="module")
def fashion_batch():
    (x, y), _ = datasets.load_fashion_mnist()
    return x[:64], y[:64].astype("int32")


def _small_cnn(name):
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(6, 5, strides=2, activation="tanh")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h), name=name)


def _teachers():
    """Three teachers of different architectures (one with batch norm)."""
    return [
        models.cnn_teacher(width=4, name="vgg_teacher"),
        models.mlp((32,), dropout=0.2, name="mlp_teacher"),
        _small_cnn("gap_teacher"),
    ]


def _scale_logits(model, factor):
    """Makes a random teacher's logits larger, so its soft targets are peaked."""
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * factor, bias])
    return model


def _clone(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _numpy_cross_entropy(logits, labels):
    return -numpy_log_softmax(logits)[np.arange(len(labels)), labels]


@pytest.mark.parametrize("reduction", ["mean_probabilities", "mean_kl"])
def test_one_step_loss_matches_numpy_reference(fashion_batch, reduction):
    x, y = fashion_batch
    teachers = [_scale_logits(t, 20.0) for t in _teachers()]
    weights = [3.0, 1.0, 2.0]
    student = models.cnn_student(width=4)
    teacher_logits = [t.predict(x, verbose=0) for t in teachers]
    student_logits = keras.ops.convert_to_numpy(student(x, training=False))
    alpha, temperature = 0.3, 2.5

    distiller = keras_kd.Distiller(student, teacher=teachers, teacher_weights=weights)
    distiller.compile(
        optimizer="sgd", alpha=alpha, temperature=temperature, teacher_reduction=reduction
    )
    # One batch: the logged values are those of the initial weights.
    logs = distiller.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0).history

    expected_kd = numpy_kd(teacher_logits, student_logits, temperature, weights, reduction).mean()
    expected_ce = _numpy_cross_entropy(student_logits, y).mean()
    np.testing.assert_allclose(logs["distillation_loss"][0], expected_kd, rtol=1e-5)
    np.testing.assert_allclose(logs["student_loss"][0], expected_ce, rtol=1e-5)
    np.testing.assert_allclose(
        logs["loss"][0], alpha * expected_ce + (1 - alpha) * expected_kd, rtol=1e-5
    )


def test_reductions_differ_for_disagreeing_teachers(fashion_batch):
    x, _ = fashion_batch
    teachers = [_scale_logits(t, 20.0) for t in _teachers()]
    logits = [t.predict(x, verbose=0) for t in teachers]
    student = np.zeros_like(logits[0])
    by_probabilities = numpy_kd(logits, student, 2.0, None, "mean_probabilities")
    by_kl = numpy_kd(logits, student, 2.0, None, "mean_kl")
    # KL is convex in its target, so the mean of the KLs is larger.
    assert np.all(by_kl >= by_probabilities - 1e-9)
    assert by_kl.mean() > by_probabilities.mean() * 1.01


def test_all_teachers_stay_frozen(fashion_batch):
    x, y = fashion_batch
    teachers = _teachers()
    before = [[w.copy() for w in t.get_weights()] for t in teachers]
    student = models.cnn_student(width=4)
    student_before = [w.copy() for w in student.get_weights()]
    distiller = keras_kd.Distiller(student, teacher=teachers)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    distiller.fit(x, y, batch_size=16, epochs=2, verbose=0)

    for teacher, weights in zip(teachers, before):
        assert not teacher.trainable
        # Batch-norm statistics included: teachers run in inference mode.
        for old, new in zip(weights, teacher.get_weights()):
            np.testing.assert_array_equal(old, new)
    assert any(
        not np.allclose(old, new) for old, new in zip(student_before, student.get_weights())
    )
    trainable = {id(v) for v in distiller.trainable_weights}
    assert trainable == {id(v) for v in student.trainable_weights}


def test_single_teacher_is_the_same_path_as_a_list(fashion_batch):
    x, y = fashion_batch
    teacher = _scale_logits(models.cnn_teacher(width=4), 10.0)
    student = models.cnn_student(width=4)
    histories, final_weights = [], []
    for teacher_arg, weights in [
        (teacher, None),
        ([teacher], None),
        ([teacher], [5.0]),
        # Two copies of one teacher average to that teacher.
        ([teacher, teacher], [0.2, 0.8]),
    ]:
        clone = _clone(student)
        distiller = keras_kd.Distiller(clone, teacher=teacher_arg, teacher_weights=weights)
        distiller.compile(optimizer="sgd", temperature=3.0, teacher_reduction="mean_kl")
        history = distiller.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        histories.append(history.history)
        final_weights.append(clone.get_weights())
    for history, weights in zip(histories[1:], final_weights[1:]):
        for key in ("loss", "distillation_loss", "student_loss"):
            np.testing.assert_allclose(history[key], histories[0][key], rtol=1e-6)
        for got, want in zip(weights, final_weights[0]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "weights, match",
    [
        ([1.0, 2.0], r"one weight per teacher.*\(2 weights\) for 3 teachers"),
        ([1.0, 2.0, 3.0, 4.0], r"\(4 weights\) for 3 teachers"),
        ([1.0, -1.0, 1.0], r"non-negative.*\[1.0, -1.0, 1.0\]"),
        ([0.0, 0.0, 0.0], r"sum to a positive number.*sum 0.0"),
        ([1.0, float("nan"), 1.0], "finite"),
    ],
)
def test_bad_teacher_weights_raise(weights, match):
    with pytest.raises(ValueError, match=match):
        keras_kd.Distiller(
            models.cnn_student(width=4), teacher=_teachers(), teacher_weights=weights
        )


def test_bad_teacher_lists_raise():
    student = models.cnn_student(width=4)
    with pytest.raises(ValueError, match=r"non-empty list.*teacher=\[\]"):
        keras_kd.Distiller(student, teacher=[])
    with pytest.raises(TypeError, match=r"`teacher\[1\]` must be a `keras.Model`"):
        keras_kd.Distiller(student, teacher=[_small_cnn("a"), "not a model"])
    five_classes = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                     keras.layers.Dense(5)], name="five")
    with pytest.raises(ValueError, match="same number of classes"):
        keras_kd.Distiller(student, teacher=[_small_cnn("a"), five_classes])
