"""Labeled and unlabeled examples in one fit."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_kd
from keras_kd.src.data import datasets
from keras_kd.src.models import models

from conftest import numpy_kd, numpy_log_softmax


@pytest.fixture(scope="module")
def fashion():
    (x, y), _ = datasets.load_fashion_mnist()
    return x[:40], y[:40], x[40:64]


def _teacher():
    teacher = models.cnn_teacher(width=4)
    kernel, bias = teacher.layers[-1].get_weights()
    teacher.layers[-1].set_weights([kernel * 20.0, bias])
    return teacher


@pytest.mark.parametrize("one_hot", [False, True], ids=["sparse", "one_hot"])
def test_logged_loss_matches_hand_computation(fashion, one_hot):
    x_lab, y_lab, x_unl = fashion
    labels = keras.utils.to_categorical(y_lab, 10) if one_hot else y_lab
    mixed = keras_kd.mix_transfer_set((x_lab, labels), x_unl, batch_size=64, seed=3)
    x, y = next(iter(mixed))
    x, y = x.numpy(), y.numpy()
    labeled = (y.sum(-1) > 0) if one_hot else (y >= 0)
    assert labeled.sum() == 40 and (~labeled).sum() == 24
    assert not one_hot and y.dtype == np.int32 or one_hot and np.all(y[~labeled] == 0)

    teacher, student = _teacher(), models.cnn_student(width=4)
    t = teacher.predict(x, verbose=0)
    s = keras.ops.convert_to_numpy(student(x, training=False))
    alpha, temperature = 0.4, 2.0
    distiller = keras_kd.Distiller(student, teacher=teacher)
    distiller.compile(optimizer="sgd", alpha=alpha, temperature=temperature)
    logs = distiller.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0).history

    classes = y.argmax(-1) if one_hot else y
    # Hard loss over the labeled rows only; soft loss over every row.
    hard = -numpy_log_softmax(s)[labeled, classes[labeled]].mean()
    soft = numpy_kd(t, s, temperature).mean()
    np.testing.assert_allclose(logs["student_loss"][0], hard, rtol=1e-5)
    np.testing.assert_allclose(logs["distillation_loss"][0], soft, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"][0], alpha * hard + (1 - alpha) * soft, rtol=1e-5)
    # Averaging the hard loss over all 64 rows would be a different number.
    assert abs(logs["student_loss"][0] - hard * 40 / 64) > 0.1


def test_mixed_set_trains_and_every_example_appears_once(fashion):
    x_lab, y_lab, x_unl = fashion
    mixed = keras_kd.mix_transfer_set((x_lab, y_lab), x_unl, batch_size=16, seed=0)
    epoch = [y for _, y in mixed.as_numpy_iterator()]
    labels = np.concatenate(epoch)
    assert len(labels) == 64 and (labels == keras_kd.UNLABELED).sum() == 24
    np.testing.assert_array_equal(np.sort(labels[labels >= 0]), np.sort(y_lab))
    distiller = keras_kd.Distiller(models.cnn_student(width=4), teacher=_teacher())
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    history = distiller.fit(mixed, epochs=2, verbose=0).history
    assert all(np.isfinite(history["student_loss"])) and "accuracy" in history


def test_mixed_set_with_a_cached_teacher(tmp_path, fashion):
    x_lab, y_lab, x_unl = fashion
    examples = keras_kd.mix_transfer_set((x_lab, y_lab), x_unl, batch_size=None)
    teacher = _teacher()
    path = tmp_path / "mixed.kdcache"
    keras_kd.cache_teacher_outputs(teacher, examples, path)
    data = keras_kd.load_teacher_cache(path, examples, batch_size=64, shuffle=False)
    inputs, y = next(iter(data))
    np.testing.assert_array_equal(y[40:], keras_kd.UNLABELED)
    np.testing.assert_allclose(
        inputs[keras_kd.TEACHER_LOGITS_KEY], teacher.predict(inputs[keras_kd.INPUTS_KEY], verbose=0),
        atol=1e-5,
    )
    distiller = keras_kd.Distiller(models.cnn_student(width=4), teacher=None)
    distiller.compile(optimizer="adam")
    assert np.isfinite(distiller.fit(data, epochs=1, verbose=0).history["loss"][0])


def test_bad_sources_raise(fashion):
    x_lab, y_lab, x_unl = fashion
    with pytest.raises(TypeError, match="`labeled` must be a tuple"):
        keras_kd.mix_transfer_set(x_lab, x_unl)
    with pytest.raises(ValueError, match="`labeled` must carry labels"):
        keras_kd.mix_transfer_set(tf.data.Dataset.from_tensor_slices(x_lab), x_unl)
    with pytest.raises(ValueError, match="same shape and dtype"):
        keras_kd.mix_transfer_set((x_lab, y_lab), x_unl[:, :20])
    with pytest.raises(TypeError, match="`unlabeled` must be inputs"):
        keras_kd.mix_transfer_set((x_lab, y_lab), (x_unl, y_lab[:24]))
    with pytest.raises(ValueError, match="same number of examples.*40 inputs and 39 labels"):
        keras_kd.mix_transfer_set((x_lab, y_lab[:39]), x_unl)
    with pytest.raises(ValueError, match="batch_size=0"):
        keras_kd.mix_transfer_set((x_lab, y_lab), x_unl, batch_size=0)
