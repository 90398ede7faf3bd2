"""Schedules and callbacks for temperatures and loss weights."""

import math

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_kd
from keras_kd.src.callbacks import callbacks
from keras_kd.src.data import datasets
from keras_kd.src.models import models
from keras_kd.src.callbacks import schedules


@pytest.fixture(scope="module")
def fashion_tiny():
    """1,024 real Fashion-MNIST training images."""
    (x, y), _ = datasets.load_fashion_mnist()
    return x[:1024], y[:1024]


class TracingDistiller(keras_kd.Distiller):
    """Counts how often the training step is traced (its Python body runs
    once per trace when compiled)."""

    traces = 0

    def train_step(self, data):
        TracingDistiller.traces += 1
        return super().train_step(data)


def _mlp_distiller(cls=keras_kd.Distiller):
    return cls(models.mlp((16,), name="student"), models.mlp((64,), name="teacher"))


# ----------------------------------------------------------------- schedules


def test_schedule_values():
    assert [schedules.Constant(3)(e) for e in (0, 100)] == [3.0, 3.0]
    step = schedules.Step(values=[1.0, 0.5, 0.1], boundaries=[2, 4])
    assert [step(e) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    linear = schedules.Linear(start=10.0, end=2.0, epochs=4, offset=1)
    assert [linear(e) for e in range(7)] == [10.0, 10.0, 8.0, 6.0, 4.0, 2.0, 2.0]
    cosine = schedules.Cosine(start=4.0, end=1.0, epochs=4)
    expected = [1.0 + 3.0 * (1 + math.cos(math.pi * min(e / 4, 1))) / 2 for e in range(6)]
    np.testing.assert_allclose([cosine(e) for e in range(6)], expected)
    # DKD's warm-up, as mdistiller computes it with epochs counted from 1.
    warm = schedules.WarmUp(epochs=20, value=2.0)
    assert [warm(e) for e in (0, 9, 19, 30)] == [2.0 * min(e / 20, 1.0) for e in (1, 10, 20, 31)]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: schedules.Step(values=[1.0], boundaries=[3]), ValueError, "one more entry"),
        (lambda: schedules.Step(values=[1.0, 2.0, 3.0], boundaries=[3, 3]), ValueError, "strictly increasing"),
        (lambda: schedules.Linear(1.0, float("nan"), epochs=3), ValueError, "end"),
        (lambda: schedules.Cosine(1.0, 0.0, epochs=0), ValueError, "epochs"),
        (lambda: schedules.WarmUp(epochs=2.5), ValueError, "epochs"),
        (lambda: schedules.Constant("4"), TypeError, "value"),
        (lambda: schedules.get("cosine"), TypeError, "schedule"),
    ],
)
def test_bad_schedules(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.Constant(2.0),
        schedules.Step([3.0, 1.0], [5]),
        schedules.Linear(8.0, 2.0, 10, offset=2),
        schedules.Cosine(8.0, 2.0, 10),
        schedules.WarmUp(20, 0.5),
    ],
)
def test_schedules_serialize(schedule):
    clone = schedules.get(keras.saving.serialize_keras_object(schedule))
    assert type(clone) is type(schedule) and clone.get_config() == schedule.get_config()
    assert [clone(e) for e in range(12)] == [schedule(e) for e in range(12)]


@pytest.mark.parametrize(
    "callback",
    [
        callbacks.TermScheduler("hint_loss", schedules.Linear(1.0, 0.0, 5)),
        callbacks.TemperatureScheduler(schedules.Cosine(8.0, 2.0, 10), term="dkd"),
        callbacks.LossWeightScheduler("dkd", schedules.WarmUp(20)),
        callbacks.GradientNormBalancer(
            (np.ones((4, 3), "float32"), np.arange(4)), terms=["a", "b"], alpha=0.5, smoothing=0.2
        ),
    ],
)
def test_callbacks_serialize(callback):
    config = callback.get_config()
    clone = type(callback).from_config(config)
    cloned = clone.get_config()
    assert cloned.keys() == config.keys()
    for key in config:
        if key == "data":
            for got, expected in zip(cloned[key], config[key]):
                np.testing.assert_array_equal(got, expected)
        else:
            assert cloned[key] == config[key]
    # And through Keras's own serialization (the probe batch as arrays).
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
    assert type(restored) is type(callback)


# ----------------------------------------------------------- in training


@pytest.mark.slow
def test_schedules_change_the_compiled_step_without_retracing(fashion_tiny):
    x, y = fashion_tiny
    distiller = _mlp_distiller(TracingDistiller)
    distiller.compile(
        optimizer=keras.optimizers.SGD(0.1),
        alpha=0.5,
        distillation_terms=[keras_kd.DecoupledKD()],
    )
    snapshots = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(
            [w.numpy().copy() for w in distiller.student.weights]
        )
    )
    # Epoch 2 has every weight at zero: if the step reads the variables, the
    # student does not move in that epoch.
    zero_at_2 = schedules.Step(values=[0.5, 0.5, 0.0, 0.5], boundaries=[1, 2, 3])
    history = distiller.fit(
        x, y, batch_size=128, epochs=4, verbose=0,
        callbacks=[
            callbacks.TemperatureScheduler(schedules.Linear(8.0, 2.0, epochs=3)),
            callbacks.LossWeightScheduler("dkd", schedules.Step([1.0, 1.0, 0.0, 1.0], [1, 2, 3])),
            callbacks.LossWeightScheduler("student_loss", zero_at_2),
            callbacks.LossWeightScheduler("distillation_loss", zero_at_2),
            record,
        ],
    ).history
    assert TracingDistiller.traces == 1
    assert history["distillation_loss_temperature"] == [8.0, 6.0, 4.0, 2.0]
    assert history["dkd_loss_weight"] == [1.0, 1.0, 0.0, 1.0]
    assert history["student_loss_loss_weight"] == [0.5, 0.5, 0.0, 0.5]
    assert distiller.temperature == 2.0
    for before, after in zip(snapshots[1], snapshots[2]):
        np.testing.assert_array_equal(before, after)
    assert not all(np.array_equal(b, a) for b, a in zip(snapshots[2], snapshots[3]))
    assert not all(np.array_equal(b, a) for b, a in zip(snapshots[0], snapshots[1]))


def test_scheduler_bad_targets(fashion_tiny):
    x, y = fashion_tiny
    distiller = _mlp_distiller()
    distiller.compile(alpha=0.5)
    cases = [
        (callbacks.LossWeightScheduler("dkd", 1.0), r"no term named 'dkd'.*\['student_loss', 'distillation_loss'\]"),
        (callbacks.TemperatureScheduler(2.0, term="student_loss"), "has no `temperature`"),
        (callbacks.LossWeightScheduler("student_loss", schedules.Linear(1.0, -1.0, 1)), "loss_weight"),
        (callbacks.TemperatureScheduler(schedules.Linear(1.0, 0.0, 1)), "temperature"),
    ]
    for callback, match in cases:
        with pytest.raises(ValueError, match=match):
            distiller.fit(x[:128], y[:128], batch_size=128, epochs=2, verbose=0, callbacks=[callback])
    with pytest.raises(ValueError, match="attribute"):
        callbacks.TermScheduler("dkd", 1.0, attribute="alpha")


# -------------------------------------------------------- gradient balance


def _gradient_norms(distiller, x, y, names):
    variables = distiller.student.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        values = distiller.term_losses(x, y)
    return {n: float(tf.linalg.global_norm(tape.gradient(values[n], variables))) for n in names}


@pytest.mark.slow
def test_gradient_norm_balancer_equalises_weighted_gradients(fashion_tiny):
    x, y = fashion_tiny
    probe = (x[:256], y[:256])
    distiller = _mlp_distiller()
    # A badly scaled start: the hint term outweighs the labels 100 to 1.
    distiller.compile(
        optimizer="adam",
        metrics=["accuracy"],
        alpha=1.0,
        distillation_terms=[keras_kd.HintLoss(student_layer="hidden1", teacher_layer="hidden1", loss_weight=100.0)],
    )
    names = ["student_loss", "hint_loss"]
    norms = _gradient_norms(distiller, *probe, names)
    balancer = callbacks.GradientNormBalancer(probe, terms=names)
    history = distiller.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[balancer]).history
    # The weights set at epoch 1's start follow 1 / (gradient norm), keep
    # their sum (101), and make the weighted gradient norms equal.
    w = {n: history[f"{n}_loss_weight"][0] for n in names}
    assert w["student_loss"] + w["hint_loss"] == pytest.approx(101.0, rel=1e-5)
    expected_hint = 101.0 * (1 / norms["hint_loss"]) / sum(1 / v for v in norms.values())
    assert w["hint_loss"] == pytest.approx(expected_hint, rel=1e-3)
    assert w["student_loss"] * norms["student_loss"] == pytest.approx(w["hint_loss"] * norms["hint_loss"], rel=1e-3)
    # Re-balanced at epoch 2 from the gradients measured then.
    final = _gradient_norms(distiller, *probe, names)
    assert history["student_loss_loss_weight"][1] != w["student_loss"]
    assert all(np.isfinite(v) for v in final.values())
    assert history["accuracy"][-1] > 0.5


def test_gradient_norm_balancer_bad_input(fashion_tiny):
    x, y = fashion_tiny
    with pytest.raises(ValueError, match="alpha"):
        callbacks.GradientNormBalancer((x[:8], y[:8]), alpha=-1.0)
    with pytest.raises(ValueError, match="smoothing"):
        callbacks.GradientNormBalancer((x[:8], y[:8]), smoothing=1.0)
    with pytest.raises(ValueError, match="at least two"):
        callbacks.GradientNormBalancer((x[:8], y[:8]), terms=["student_loss"])
    with pytest.raises(ValueError, match="frequency"):
        callbacks.GradientNormBalancer((x[:8], y[:8]), frequency=0)
    distiller = _mlp_distiller()
    distiller.compile(alpha=0.5)
    with pytest.raises(ValueError, match=r"need labels.*data=\(x, y\)"):
        distiller.fit(
            x[:64], y[:64], epochs=1, verbose=0,
            callbacks=[callbacks.GradientNormBalancer(x[:8], terms=["student_loss", "distillation_loss"])],
        )
