"""Small real data and models shared by the scale tests (XLA, mixed precision)."""

import functools

import keras
import numpy as np

from keras_kd.src.data import datasets
from keras_kd.src.models import models


@functools.lru_cache(maxsize=None)
def _fashion_mnist():
    return datasets.load_fashion_mnist()


def fashion_subset(n: int, offset: int = 0):
    """`n` Fashion-MNIST training images (float32, 28x28x1) and int32 labels."""
    (x, y), _ = _fashion_mnist()
    return x[offset:offset + n], y[offset:offset + n].astype("int32")


def tiny_teacher_and_student(seed: int = 3, logit_scale: float = 0.0):
    """An MLP teacher and a smaller MLP student, initialized from `seed`.

    With `logit_scale`, the teacher's logits are `logit_scale * tanh(...)`:
    logits of that magnitude, as a confident teacher has.
    """
    keras.utils.set_random_seed(seed)
    teacher = models.mlp((32,), name="teacher")
    if logit_scale:
        inputs = teacher.input
        logits = keras.layers.Activation("tanh")(teacher.output)
        logits = keras.layers.Rescaling(logit_scale, name="scaled_logits")(logits)
        teacher = keras.Model(inputs, logits, name="confident_teacher")
    student = models.mlp((16,), name="student")
    return teacher, student


def assert_weights_close(expected, actual, rtol=1e-5, atol=1e-6):
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)
