"""Trains a quantization-aware student on one device and on two logical CPUs.

Logical devices must be configured before TensorFlow initializes, so
`tests/test_quantization_distribute.py` runs this file in a fresh process:

    python tests/quantization_distribute_worker.py OUTPUT.json

Each scenario distils the same `quantization_aware` student (a small CNN:
Conv2D with BatchNormalization folded, ReLU, pooling, Dense) from the same
teacher on the same Fashion-MNIST subset, once under the default strategy and
once under a two-replica `MirroredStrategy`, and records the student's
weights (its activation ranges included) and the logged history.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from two_cpus import two_cpu_strategy  # noqa: E402

STRATEGY, DEFAULT = two_cpu_strategy()

import keras  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd.src.models import models  # noqa: E402
from keras_kd.src.data import datasets
from keras_kd.src.export.quantization import ActivationQuantizer  # noqa: E402



def load_data(n: int = 256):
    (x, y), _ = datasets.load_fashion_mnist()
    return x[:n], y[:n].astype("int32")


def float_weights(x, y):
    """A teacher and a float student, trained briefly, as weight lists."""
    keras.utils.set_random_seed(7)
    teacher = models.mlp((48,), name="teacher")
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=2, batch_size=32, verbose=0)
    student = make_student()
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(x, y, epochs=1, batch_size=32, verbose=0)
    return teacher.get_weights(), student.get_weights()


def make_student():
    inputs = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Conv2D(6, 3, strides=2, use_bias=False, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    h = keras.layers.Dense(16, activation="tanh", name="hidden")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h), name="student")


def scenario(strategy, data, weights, calibrated):
    """QAD from a float student; `calibrated=False` leaves the first training
    batch (the global batch, split over the replicas) to set the ranges."""
    x, y = data
    teacher_weights, student_weights = weights
    with strategy.scope():
        keras.utils.set_random_seed(11)
        teacher = models.mlp((48,), name="teacher")
        teacher.set_weights(teacher_weights)
        student = make_student()
        student.set_weights(student_weights)
        qat = keras_kd.quantization_aware(
            student, calibration_data=x[:64] if calibrated else None, momentum=0.9)
        distiller = keras_kd.Distiller(qat, teacher)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3), alpha=0.5, temperature=2.0)
    history = distiller.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    ranges = {layer.name: [float(layer.range_min.numpy()), float(layer.range_max.numpy())]
              for layer in qat.layers if isinstance(layer, ActivationQuantizer)}
    return {
        "weights": [w.tolist() for w in qat.get_weights()],
        "names": [w.path for w in qat.weights],
        "ranges": ranges,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }


def main(output: str) -> None:
    data = load_data()
    weights = float_weights(*data)
    results = {"replicas": STRATEGY.num_replicas_in_sync}
    for name, calibrated in (("calibrated", True), ("uncalibrated", False)):
        results[name] = {
            "one": scenario(DEFAULT, data, weights, calibrated),
            "mirrored": scenario(STRATEGY, data, weights, calibrated),
        }
    with open(output, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
