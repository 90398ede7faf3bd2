"""Runs the Distiller on one device and on two logical CPU devices.

Logical devices must be configured before TensorFlow initializes, so
`tests/test_distribute.py` runs this file in a fresh process:

    python tests/distribute_worker.py OUTPUT.json

Every scenario trains the same models on the same Fashion-MNIST subset once
under the default strategy and once under a two-replica `MirroredStrategy`,
and records both students' weights, the logged history and the evaluation.
Bad-input scenarios record the error they raise.
"""

import json
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from two_cpus import two_cpu_strategy  # noqa: E402

STRATEGY, DEFAULT = two_cpu_strategy()

import keras  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd.src.models import models  # noqa: E402
from keras_kd.src.data import datasets



def load_data(n: int = 249):
    (x, y), _ = datasets.load_fashion_mnist()
    return x[:n], y[:n].astype("int32")


def trained_teacher_weights(x, y):
    keras.utils.set_random_seed(7)
    teacher = models.mlp((48,), name="teacher")
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    teacher.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return teacher.get_weights()


def make_models(teacher_weights, regularized=False):
    keras.utils.set_random_seed(11)
    teacher = models.mlp((48,), name="teacher")
    teacher.set_weights(teacher_weights)
    student = models.mlp((16,), name="student")
    if regularized:
        # An L2 penalty exercises the split of layer losses over replicas.
        student.get_layer("hidden1").kernel_regularizer = keras.regularizers.L2(1e-3)
    return teacher, student


def weights_of(model):
    return [w.tolist() for w in model.get_weights()]


def history_of(history):
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def numpy_scenario(strategy, data, teacher_weights, jit_compile=False):
    """Live teacher, numpy input, 249 examples in batches of 16: the last
    batch has 9 examples, split 5/4 over two replicas."""
    x, y = data
    with strategy.scope():
        teacher, student = make_models(teacher_weights, regularized=True)
        distiller = keras_kd.Distiller(student, teacher)
        distiller.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
            alpha=0.3,
            temperature=3.0,
            jit_compile=jit_compile,
        )
    history = distiller.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    evaluation = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    return {
        "weights": weights_of(student),
        "history": history_of(history),
        "evaluate": {k: float(v) for k, v in evaluation.items()},
        "jit_compile": bool(distiller.jit_compile),
    }


def dataset_scenario(strategy, data, teacher_weights):
    """Cached teacher logits in a `tf.data` pipeline, a third of the labels
    unlabeled (-1), sample weights, and an uneven last batch (249 = 15*16+9)."""
    x, y = data
    teacher, _ = make_models(teacher_weights)
    logits = teacher.predict(x, batch_size=64, verbose=0)
    y = y.copy()
    y[::3] = keras_kd.UNLABELED
    weights = np.linspace(0.5, 1.5, len(x)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(
        ({keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: logits}, y, weights)
    ).batch(16)
    with strategy.scope():
        _, student = make_models(teacher_weights)
        distiller = keras_kd.Distiller(student, teacher=None)
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
            alpha=0.5,
            temperature=2.0,
        )
    history = distiller.fit(dataset, epochs=1, verbose=0)
    evaluation = distiller.evaluate(dataset, verbose=0, return_dict=True)
    return {
        "weights": weights_of(student),
        "history": history_of(history),
        "evaluate": {k: float(v) for k, v in evaluation.items()},
    }


def error_of(fn):
    try:
        fn()
    except (ValueError, TypeError) as error:
        return {"type": type(error).__name__, "message": str(error)}
    return None


def bad_inputs(data, teacher_weights):
    x, y = data

    def distiller_outside_scope():
        with STRATEGY.scope():
            teacher, student = make_models(teacher_weights)
        keras_kd.Distiller(student, teacher)

    def models_outside_scope():
        teacher, student = make_models(teacher_weights)
        with STRATEGY.scope():
            keras_kd.Distiller(student, teacher)

    def compiled(fit):
        def run():
            with STRATEGY.scope():
                teacher, student = make_models(teacher_weights)
                distiller = keras_kd.Distiller(student, teacher)
                distiller.compile(optimizer="sgd")
            fit(distiller)
        return run

    dataset = tf.data.Dataset.from_tensor_slices((x[:8], y[:8])).batch(1)
    return {
        "distiller_outside_scope": error_of(distiller_outside_scope),
        "models_outside_scope": error_of(models_outside_scope),
        "batch_size_1": error_of(compiled(
            lambda d: d.fit(x[:8], y[:8], batch_size=1, verbose=0))),
        "dataset_batch_1": error_of(compiled(lambda d: d.fit(dataset, verbose=0))),
        "evaluate_batch_size_1": error_of(compiled(
            lambda d: d.evaluate(x[:8], y[:8], batch_size=1, verbose=0))),
    }


def plain_teacher_scenario(strategy, data, teacher_weights):
    """A teacher built outside the scope (plain variables), student inside."""
    x, y = data
    teacher, _ = make_models(teacher_weights)
    with strategy.scope():
        _, student = make_models(teacher_weights)
        distiller = keras_kd.Distiller(student, teacher)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = distiller.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return {"weights": weights_of(student), "history": history_of(history)}


def augmented_scenario(strategy, data, teacher_weights):
    """A deterministic in-step augmentation (a horizontal flip of every
    image): each replica augments its share, and the result equals one
    device's."""
    x, y = data
    with strategy.scope():
        teacher, student = make_models(teacher_weights)
        flip = keras.layers.Lambda(lambda images: images[:, :, ::-1], name="flip")
        distiller = keras_kd.Distiller(student, teacher, augmentation=flip)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3), alpha=0.3, temperature=2.0)
    history = distiller.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return {"weights": weights_of(student), "history": history_of(history)}


def mixup_scenario(data, teacher_weights):
    """MixUp under two replicas: each replica mixes within its share, so the
    result is not one device's; it must train and stay finite."""
    x, y = data
    with STRATEGY.scope():
        teacher, student = make_models(teacher_weights)
        distiller = keras_kd.Distiller(
            student, teacher, augmentation=keras_kd.src.augment.augment.MixUp(seed=3))
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3), alpha=0.3, temperature=1.0)
    history = distiller.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return {"history": history_of(history),
            "finite": bool(all(np.isfinite(w).all() for w in student.get_weights()))}


def main(output: str) -> None:
    data = load_data()
    teacher_weights = trained_teacher_weights(*data)
    results = {"replicas": STRATEGY.num_replicas_in_sync}
    for name, scenario in [
        ("numpy", numpy_scenario),
        ("dataset", dataset_scenario),
        ("plain_teacher", plain_teacher_scenario),
        ("augmented", augmented_scenario),
    ]:
        results[name] = {
            "one": scenario(DEFAULT, data, teacher_weights),
            "mirrored": scenario(STRATEGY, data, teacher_weights),
        }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results["jit"] = numpy_scenario(STRATEGY, data, teacher_weights, jit_compile=True)
    results["jit"]["warnings"] = [str(w.message) for w in caught if "jit_compile" in str(w.message)]
    results["bad_inputs"] = bad_inputs(data, teacher_weights)
    results["mixup"] = mixup_scenario(data, teacher_weights)
    with open(output, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
