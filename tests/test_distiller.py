"""The Distiller's contract: loss, training, evaluation, saving."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_kd
from conftest import numpy_kd, numpy_log_softmax

NUM_CLASSES = 5
FEATURES = 6


def make_teacher(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ],
        name="teacher",
    )


def make_student(seed=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES)], name="student"
    )


def make_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=n)
    return x, y


def frozen_step_logs(distiller, x, y=None, **fit_kwargs):
    """Logs of one full-batch step with a zero learning rate: the loss at the
    current weights, computed by the real train step."""
    history = distiller.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False, **fit_kwargs)
    return {k: v[0] for k, v in history.history.items()}


def student_and_teacher_logits(distiller, x):
    return distiller.student.predict(x, verbose=0), distiller.teacher.predict(x, verbose=0)


def numpy_ce(logits, labels):
    return -numpy_log_softmax(logits)[np.arange(len(labels)), labels]


@pytest.mark.parametrize("alpha, temperature", [(0.1, 4.0), (0.5, 1.0), (0.0, 20.0)])
def test_logged_losses_match_numpy_reference(alpha, temperature):
    x, y = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=alpha, temperature=temperature)
    s, t = student_and_teacher_logits(distiller, x)
    logs = frozen_step_logs(distiller, x, y)
    hard = numpy_ce(s, y).mean()
    soft = numpy_kd(t, s, temperature).mean()
    assert logs["student_loss"] == pytest.approx(hard, rel=1e-5)
    assert logs["distillation_loss"] == pytest.approx(soft, rel=1e-4, abs=1e-6)
    assert logs["loss"] == pytest.approx(alpha * hard + (1 - alpha) * soft, rel=1e-4)


def test_keras_io_example_call_gives_its_loss():
    x, y = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(
        optimizer=keras.optimizers.Adam(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    s, t = student_and_teacher_logits(distiller, x)
    # The keras.io example's own formula, with Keras's own losses.
    hard = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, s))
    soft = float(
        keras.losses.KLDivergence()(
            keras.ops.softmax(t / 10, axis=1), keras.ops.softmax(s / 10, axis=1)
        )
    ) * 10**2
    distiller.optimizer.learning_rate.assign(0.0)
    logs = frozen_step_logs(distiller, x, y)
    assert logs["loss"] == pytest.approx(0.1 * hard + 0.9 * soft, rel=1e-4)
    assert set(logs) == {"loss", "student_loss", "distillation_loss", "sparse_categorical_accuracy"}
    distiller.fit(x, y, epochs=3, verbose=0)
    results = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert set(results) == {"loss", "sparse_categorical_accuracy"}


def test_alpha_one_equals_plain_student_fit():
    x, y = make_data()
    student = make_student(seed=7)
    reference = make_student(seed=7)
    reference.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    reference.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    distiller = keras_kd.Distiller(student=student, teacher=make_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=1.0)
    distiller.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for got, expected in zip(student.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_teacher_is_frozen_and_unchanged():
    x, y = make_data()
    teacher = make_teacher()
    before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in make_student().get_weights()]
    distiller = keras_kd.Distiller(student=make_student(), teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    distiller.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for got, expected in zip(teacher.get_weights(), before):
        np.testing.assert_array_equal(got, expected)
    assert not any(w is t for w in distiller.trainable_weights for t in teacher.weights)
    changed = [not np.allclose(a, b) for a, b in zip(distiller.student.get_weights(), student_before)]
    assert all(changed)


def test_teacher_runs_in_inference_mode():
    """Dropout in the teacher must be off: its soft targets are deterministic."""
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dropout(0.9), keras.layers.Dense(NUM_CLASSES)]
    )
    x, y = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.0)
    first = frozen_step_logs(distiller, x, y)["distillation_loss"]
    second = frozen_step_logs(distiller, x, y)["distillation_loss"]
    assert first == pytest.approx(second, rel=1e-6)


def test_eager_and_compiled_steps_agree():
    x, y = make_data()
    results = []
    for run_eagerly in (True, False):
        distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=run_eagerly)
        history = distiller.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        results.append((history.history, distiller.student.get_weights()))
    (eager_logs, eager_weights), (graph_logs, graph_weights) = results
    for key in eager_logs:
        np.testing.assert_allclose(eager_logs[key], graph_logs[key], rtol=1e-5)
    for a, b in zip(eager_weights, graph_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_evaluate_and_predict_use_the_student_at_t1():
    x, y = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(optimizer="adam", metrics=["accuracy"], temperature=8.0)
    distiller.fit(x, y, epochs=2, verbose=0)
    student = distiller.student
    student.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    expected = student.evaluate(x, y, verbose=0, return_dict=True)
    got = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(expected["accuracy"])
    np.testing.assert_allclose(distiller.predict(x, verbose=0), student.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(distiller(x)), student.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_sample_weight_weights_every_term():
    x, y = make_data()
    weights = np.linspace(0.0, 2.0, len(x)).astype("float32")
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.3, temperature=2.0)
    s, t = student_and_teacher_logits(distiller, x)
    logs = frozen_step_logs(distiller, x, y, sample_weight=weights)
    # Keras's convention: weighted sum divided by the number of examples.
    assert logs["student_loss"] == pytest.approx((weights * numpy_ce(s, y)).mean(), rel=1e-5)
    assert logs["distillation_loss"] == pytest.approx((weights * numpy_kd(t, s, 2.0)).mean(), rel=1e-4)


def test_one_hot_and_sparse_labels_train_identically():
    x, y = make_data()
    histories = []
    for labels in (y, keras.utils.to_categorical(y, NUM_CLASSES)):
        distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
        histories.append(distiller.fit(x, labels, batch_size=16, shuffle=False, epochs=2, verbose=0).history)
    for key in ("loss", "student_loss", "distillation_loss", "accuracy"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5)


def test_tf_data_callbacks_and_validation():
    x, y = make_data(96)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(dataset, validation_data=dataset, epochs=2, verbose=0, callbacks=[callback])
    assert len(seen) == 2
    assert {"loss", "student_loss", "distillation_loss", "accuracy", "val_loss", "val_accuracy"} <= set(seen[0])


def test_unlabeled_batches_train_on_the_distillation_loss_alone():
    x, _ = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"], alpha=0.25, temperature=3.0)
    s, t = student_and_teacher_logits(distiller, x)
    logs = frozen_step_logs(distiller, x)
    assert set(logs) == {"loss", "distillation_loss"}
    soft = numpy_kd(t, s, 3.0).mean()
    assert logs["distillation_loss"] == pytest.approx(soft, rel=1e-4)
    assert logs["loss"] == pytest.approx(0.75 * soft, rel=1e-4)
    distiller.optimizer.learning_rate.assign(0.5)
    before = distiller.student.get_weights()[0].copy()
    distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0)
    assert not np.allclose(before, distiller.student.get_weights()[0])


def test_partially_labeled_batch_averages_hard_loss_over_labeled_rows():
    x, y = make_data()
    y_partial = y.copy()
    y_partial[::3] = keras_kd.UNLABELED
    labeled = y_partial >= 0
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"], alpha=0.5, temperature=2.0)
    s, t = student_and_teacher_logits(distiller, x)
    logs = frozen_step_logs(distiller, x, y_partial)
    assert logs["student_loss"] == pytest.approx(numpy_ce(s[labeled], y[labeled]).mean(), rel=1e-5)
    assert logs["distillation_loss"] == pytest.approx(numpy_kd(t, s, 2.0).mean(), rel=1e-4)
    accuracy = np.mean(np.argmax(s[labeled], -1) == y[labeled])
    assert logs["accuracy"] == pytest.approx(accuracy)


def test_save_and_load_round_trip(tmp_path):
    x, y = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.3, temperature=6.0)
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.temperature = 3.0  # a value changed after compile is kept too
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, keras_kd.Distiller)
    assert restored.temperature == pytest.approx(3.0)
    assert restored.alpha == pytest.approx(0.3)
    np.testing.assert_allclose(restored.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-6)
    for a, b in zip(restored.teacher.get_weights(), distiller.teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not restored.teacher.trainable
    # Training goes on from the restored optimizer state.
    restored.fit(x, y, epochs=1, verbose=0)
    # The student alone is an ordinary Keras model.
    student_path = tmp_path / "student.keras"
    restored.student.save(student_path)
    plain = keras.models.load_model(student_path)
    assert type(plain) is keras.Sequential
    np.testing.assert_allclose(plain.predict(x, verbose=0), restored.predict(x, verbose=0), rtol=1e-6)


def test_several_teachers_and_probability_teacher():
    x, y = make_data()
    teachers = [make_teacher(0), make_teacher(1)]
    distiller = keras_kd.Distiller(student=make_student(), teacher=teachers, teacher_weights=[3, 1])
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.0, temperature=2.0)
    s = distiller.student.predict(x, verbose=0)
    t = [m.predict(x, verbose=0) for m in teachers]
    logs = frozen_step_logs(distiller, x, y)
    assert logs["distillation_loss"] == pytest.approx(numpy_kd(t, s, 2.0, [0.75, 0.25]).mean(), rel=1e-4)

    softmax_teacher = keras.Sequential([make_teacher(0), keras.layers.Softmax()])
    declared = keras_kd.Distiller(
        student=make_student(), teacher=softmax_teacher, teacher_outputs="probabilities"
    )
    declared.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.0, temperature=2.0)
    logs = frozen_step_logs(declared, x, y)
    assert logs["distillation_loss"] == pytest.approx(numpy_kd(t[0], s, 2.0).mean(), rel=1e-3)


def test_cached_teacher_logits_in_the_batch_match_live_teacher():
    x, y = make_data()
    teacher = make_teacher()
    live = keras_kd.Distiller(student=make_student(), teacher=teacher)
    live.compile(optimizer=keras.optimizers.SGD(0.1), temperature=2.0)
    live_history = live.fit(x, y, batch_size=16, shuffle=False, epochs=2, verbose=0).history
    cached_inputs = {keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: teacher.predict(x, verbose=0)}
    cached = keras_kd.Distiller(student=make_student(), teacher=None)
    cached.compile(optimizer=keras.optimizers.SGD(0.1), temperature=2.0)
    cached_history = cached.fit(cached_inputs, y, batch_size=16, shuffle=False, epochs=2, verbose=0).history
    for key in live_history:
        np.testing.assert_allclose(live_history[key], cached_history[key], rtol=1e-5)
    np.testing.assert_allclose(cached.predict(x, verbose=0), live.predict(x, verbose=0), rtol=1e-5)


def test_regularization_losses_are_included():
    x, y = make_data()
    keras.utils.set_random_seed(1)
    student = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES, kernel_regularizer=keras.regularizers.L2(0.5))]
    )
    distiller = keras_kd.Distiller(student=student, teacher=make_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.5)
    logs = frozen_step_logs(distiller, x, y)
    penalty = 0.5 * np.sum(student.get_weights()[0] ** 2)
    expected = 0.5 * logs["student_loss"] + 0.5 * logs["distillation_loss"] + penalty
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("temperature", [0, -2.0, float("inf"), float("nan")])
def test_bad_temperature(temperature):
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    with pytest.raises(ValueError, match=r"temperature.*positive finite.*Received: temperature="):
        distiller.compile(temperature=temperature)


def test_temperature_of_wrong_type():
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    with pytest.raises(TypeError, match="temperature='hot'"):
        distiller.compile(temperature="hot")


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha(alpha):
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    with pytest.raises(ValueError, match="alpha"):
        distiller.compile(alpha=alpha)


def test_output_shapes_that_differ():
    teacher = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(100)], name="big_teacher")
    with pytest.raises(ValueError, match=r"same number of classes.*100.*5"):
        keras_kd.Distiller(student=make_student(), teacher=teacher)


def test_output_shapes_that_differ_for_subclassed_models_fail_before_any_update():
    class Sub(keras.Model):
        def __init__(self, classes):
            super().__init__()
            self.dense = keras.layers.Dense(classes)

        def call(self, x):
            return self.dense(x)

    x, y = make_data()
    student = make_student()
    before = [w.copy() for w in student.get_weights()]
    distiller = keras_kd.Distiller(student=student, teacher=Sub(100))
    distiller.compile()
    with pytest.raises(ValueError, match="same number of classes"):
        distiller.fit(x, y, verbose=0)
    for a, b in zip(student.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("argument", ["student", "teacher"])
def test_models_that_are_not_keras_models(argument):
    kwargs = {"student": make_student(), "teacher": make_teacher()}
    kwargs[argument] = lambda x: x
    with pytest.raises(TypeError, match=rf"`{argument}` must be a `keras.Model`.*Received"):
        keras_kd.Distiller(**kwargs)


def test_labels_outside_the_class_range_fail_before_any_update():
    x, y = make_data()
    y_bad = y.copy()
    y_bad[5] = NUM_CLASSES + 3
    student = make_student()
    before = [w.copy() for w in student.get_weights()]
    distiller = keras_kd.Distiller(student=student, teacher=make_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    # Arrays are checked on the host, before training starts.
    with pytest.raises(ValueError, match=r"class indices in \[0, 5\).*Received a label 8"):
        distiller.fit(x, y_bad, batch_size=len(x), verbose=0)
    y_bad[5] = -4
    with pytest.raises(ValueError, match="Received a label -4"):
        distiller.fit(x, y_bad, batch_size=len(x), verbose=0)
    # A dataset is checked in the step, which skips the update, and raised
    # on the host after the batch (in-graph asserts vanish under XLA).
    y_bad[5] = NUM_CLASSES
    dataset = tf.data.Dataset.from_tensor_slices((x, y_bad)).batch(len(x))
    with pytest.raises(ValueError, match=r"labels in training batch 0 .*class indices in \[0, 5\)"):
        distiller.fit(dataset, verbose=0)
    for a, b in zip(student.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_teacher_that_outputs_probabilities_says_how_to_declare_it():
    teacher = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES, activation="softmax")])
    with pytest.raises(ValueError, match="teacher_outputs='probabilities'"):
        keras_kd.Distiller(student=make_student(), teacher=teacher)


def test_student_with_softmax_is_rejected():
    student = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES, activation="softmax")])
    with pytest.raises(ValueError, match="student.*softmax"):
        keras_kd.Distiller(student=student, teacher=make_teacher())


def test_no_teacher_and_no_cached_logits():
    x, y = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=None)
    distiller.compile()
    with pytest.raises(ValueError, match="no teacher"):
        distiller.fit(x, y, verbose=0)


def test_duplicate_term_names():
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    with pytest.raises(ValueError, match="unique name"):
        distiller.compile(distillation_terms=[keras_kd.HintonKD(name="distillation_loss")])


def test_keras_io_compile_arguments_survive_saving(tmp_path):
    x, y = make_data()
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher())
    distiller.compile(
        optimizer="adam",
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.2,
        temperature=10,
    )
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.save(tmp_path / "d.keras")
    restored = keras.models.load_model(tmp_path / "d.keras")
    assert isinstance(restored.terms[0].loss_fn, keras.losses.SparseCategoricalCrossentropy)
    assert isinstance(restored.terms[1].loss_fn, keras.losses.KLDivergence)
    restored.optimizer.learning_rate.assign(0.0)
    distiller.optimizer.learning_rate.assign(0.0)
    assert frozen_step_logs(restored, x, y)["loss"] == pytest.approx(frozen_step_logs(distiller, x, y)["loss"], rel=1e-6)
