"""Feature terms on one device and on two logical CPU devices.

Logical devices must be configured before TensorFlow initializes, so
`tests/test_methods.py` runs this file in a fresh process:

    python tests/feature_distribute_worker.py OUTPUT.npz

Trains the same student (with a hint adapter, attention transfer and DKD)
on the same Fashion-MNIST subset under the default strategy and under a
two-replica `MirroredStrategy`, and saves both runs' weights and logs.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd.src.models import models  # noqa: E402
from keras_kd.src.data import datasets


def run(strategy, x, y):
    with strategy.scope():
        keras.utils.set_random_seed(3)
        # A small CNN as the teacher: the same layer names, 16/32 channels.
        teacher = models.cnn_student(width=16, name="teacher")
        student = models.cnn_student(name="student")
        distiller = keras_kd.Distiller(student, teacher)
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.05),
            alpha=0.5,
            distillation_terms=[
                keras_kd.HintLoss(student_layer="block2", teacher_layer="block2"),
                keras_kd.AttentionTransfer(student_layer="block1", teacher_layer="block1", loss_weight=100.0),
                keras_kd.DecoupledKD(),
            ],
        )
    # 200 = 3 full batches of 64 and an uneven last one of 8.
    history = distiller.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0).history
    weights = [np.asarray(w) for w in distiller.trainable_weights]
    return weights, history


def main(output: str) -> None:
    (x, y), _ = datasets.load_fashion_mnist()
    x, y = x[:200], y[:200].astype("int32")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    one_weights, one_history = run(tf.distribute.get_strategy(), x, y)
    two_weights, two_history = run(mirrored, x, y)
    arrays = {"replicas": np.array(mirrored.num_replicas_in_sync)}
    for i, (a, b) in enumerate(zip(one_weights, two_weights)):
        arrays[f"one_w{i}"], arrays[f"two_w{i}"] = a, b
    for name in one_history:
        arrays[f"one_log_{name}"] = np.array(one_history[name])
        arrays[f"two_log_{name}"] = np.array(two_history[name])
    np.savez(output, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
