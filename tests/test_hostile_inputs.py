"""Hostile inputs (issue 13, the Distiller, report and transfer-set part).

A careless or hostile user must get a clear error, raised before any weight
or file changes, never a silently wrong result or a NaN student. Each test
is one class of defect; tiny models and real fits of a few steps.
"""

import importlib
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd.src.cli import cli

CLASSES, FEATURES, N = 5, 6, 64


def make_model(seed=0, activation=None, name=None, hidden=8):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(hidden, activation="relu"),
         keras.layers.Dense(CLASSES, activation=activation)],
        name=name,
    )


def make_data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, FEATURES)).astype("float32"),
            rng.integers(0, CLASSES, size=n).astype("int64"))


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


def assert_unchanged(model, before):
    for now, then in zip(model.get_weights(), before):
        assert np.isfinite(now).all()
        np.testing.assert_array_equal(now, then)


def distiller_for(teacher=None, student=None, **compile_kwargs):
    distiller = keras_kd.Distiller(student or make_model(1), teacher or make_model(0))
    compile_kwargs.setdefault("optimizer", keras.optimizers.SGD(0.1))
    distiller.compile(**compile_kwargs)
    return distiller


class Scale(keras.layers.Layer):
    """Multiplies its input by a constant (NaN or inf makes a broken teacher)."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor


# ------------------------------------------- item 4: labels the step sees

@pytest.mark.parametrize("jit_compile", [True, False])
def test_out_of_range_label_in_a_dataset_raises_and_keeps_the_weights(jit_compile):
    # Under XLA the in-graph asserts vanished: NaN losses and a NaN student.
    x, y = make_data()
    y[3] = CLASSES + 4
    distiller = distiller_for(jit_compile=jit_compile)
    before = weights_of(distiller.student)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with pytest.raises(ValueError, match=r"^1 labels in training batch 0 of epoch 1 are invalid.*\[0, 5\)") as error:
        distiller.fit(dataset, epochs=1, verbose=0)
    # The message leads; no graph traceback buries it.
    assert len(str(error.value)) < 500
    assert_unchanged(distiller.student, before)


def test_out_of_range_label_after_good_batches_names_the_batch():
    x, y = make_data()
    y[40] = -7
    distiller = distiller_for(jit_compile=True)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with pytest.raises(ValueError, match="training batch 2 of epoch 1"):
        distiller.fit(dataset, epochs=1, verbose=0)
    assert all(np.isfinite(w).all() for w in distiller.student.get_weights())


def test_evaluate_checks_labels_on_the_host_and_in_the_step():
    x, y = make_data()
    y[0] = CLASSES
    distiller = distiller_for(metrics=["accuracy"], jit_compile=True)
    with pytest.raises(ValueError, match=r"class indices in \[0, 5\).*Received a label 5"):
        distiller.evaluate(x, y, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with pytest.raises(ValueError, match="labels in evaluation batch 0 are invalid"):
        distiller.evaluate(dataset, verbose=0)


def test_bad_validation_labels_in_a_dataset_stop_fit():
    x, y = make_data()
    y_val = y.copy()
    y_val[1] = 99
    distiller = distiller_for(jit_compile=True)
    validation = tf.data.Dataset.from_tensor_slices((x, y_val)).batch(16)
    with pytest.raises(ValueError, match="evaluation batch 0"):
        distiller.fit(x, y, batch_size=16, validation_data=validation, verbose=0)


# ---------------------------------------- item 5: a non-finite teacher

@pytest.mark.parametrize("factor", [float("nan"), float("inf")])
def test_non_finite_teacher_stops_training_and_keeps_the_student(factor):
    x, y = make_data()
    teacher = keras.Sequential([make_model(0), Scale(factor)])
    distiller = distiller_for(teacher=teacher)
    before = weights_of(distiller.student)
    with pytest.raises(RuntimeError, match=r"teacher's outputs hold NaN or \+inf for 16 examples of training batch 0"):
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert_unchanged(distiller.student, before)
    assert int(distiller.optimizer.iterations) == 0


class PoisonRows(keras.layers.Layer):
    """The teacher's logits, NaN in the rows whose first input is > 1000."""

    def call(self, inputs):
        x, logits = inputs
        return tf.where(x[:, :1] > 1000.0, float("nan"), logits)


def test_some_non_finite_teacher_rows_are_counted_not_hidden():
    # One bad row: logged as distillation_loss = 0.0 before, gradients NaN.
    x, y = make_data(16)
    x[2, 0] = 1e4
    inputs = keras.Input((FEATURES,))
    teacher = keras.Model(inputs, PoisonRows()([inputs, make_model(0)(inputs)]))
    distiller = distiller_for(teacher=teacher)
    before = weights_of(distiller.student)
    with pytest.raises(RuntimeError, match="for 1 examples"):
        distiller.train_on_batch(x, y)
    assert_unchanged(distiller.student, before)


def test_non_finite_cached_teacher_logits_say_where_they_came_from():
    x, y = make_data(32)
    logits = np.random.default_rng(0).normal(size=(32, CLASSES)).astype("float32")
    logits[5, 1] = np.nan
    distiller = keras_kd.Distiller(make_model(1), teacher=None)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    before = weights_of(distiller.student)
    dataset = tf.data.Dataset.from_tensor_slices(
        ({keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: logits}, y)
    ).batch(8)
    with pytest.raises(RuntimeError, match=r"inputs\['teacher_logits'\].*training batch 0"):
        distiller.fit(dataset, verbose=0)
    assert_unchanged(distiller.student, before)


def test_overflowing_teacher_under_mixed_float16_is_not_skipped_silently():
    # The loss-scale optimizer skipped these batches without notice.
    previous = keras.mixed_precision.global_policy()
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        x, y = make_data()
        teacher = keras.Sequential([make_model(0), Scale(1e6)])  # > 65504: inf
        distiller = distiller_for(teacher=teacher)
        with pytest.raises(RuntimeError, match="teacher's outputs hold NaN or \\+inf"):
            distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy(previous)


# ------------------------------------------- item 6: labels shaped (N, 1)

def test_report_scores_labels_shaped_n_by_1_like_flat_labels():
    x, y = make_data(200)
    teacher, student = make_model(0), make_model(1)
    flat = keras_kd.report(teacher, student, (x, y), output_dir=None)
    column = keras_kd.report(teacher, student, (x, y[:, None]), output_dir=None)
    assert column.teacher_accuracy == flat.teacher_accuracy
    assert column.student_accuracy == flat.student_accuracy
    np.testing.assert_array_equal(column.teacher_confusion, flat.teacher_confusion)


def test_report_cli_scores_labels_shaped_n_by_1(tmp_path, capsys):
    x, y = make_data(200)
    teacher, student = make_model(0), make_model(1)
    teacher.save(tmp_path / "t.keras")
    student.save(tmp_path / "s.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:, None])
    expected = keras_kd.report(teacher, student, (x, y), output_dir=None)
    rc = cli.main(["report", "--teacher", str(tmp_path / "t.keras"), "--student",
                   str(tmp_path / "s.keras"), "--x", str(tmp_path / "x.npy"), "--y",
                   str(tmp_path / "y.npy"), "--output-dir", str(tmp_path / "out")])
    assert rc == 0
    assert f"teacher accuracy {100 * expected.teacher_accuracy:.2f}%" in capsys.readouterr().out


def test_report_refuses_other_label_shapes():
    x, y = make_data(20)
    teacher, student = make_model(0), make_model(1)
    with pytest.raises(ValueError, match=r"Labels in `data`.*\(N, 5\).*Received labels of shape \(20, 6\)"):
        keras_kd.report(teacher, student, (x, np.eye(CLASSES + 1)[y]), output_dir=None)
    with pytest.raises(ValueError, match=r"Received labels of shape \(20, 2, 1\)"):
        keras_kd.report(teacher, student, (x, y.reshape(20, 1, 1).repeat(2, 1)), output_dir=None)


def test_mix_transfer_set_accepts_labels_shaped_n_by_1():
    x, y = make_data(10)
    mixed = keras_kd.mix_transfer_set((x, y[:, None]), x[:4], batch_size=None)
    labels = [int(label) for _, label in mixed.as_numpy_iterator()]
    assert labels == [*y.tolist(), -1, -1, -1, -1]
    distiller = distiller_for()
    distiller.fit(keras_kd.mix_transfer_set((x, y[:, None]), x[:4], batch_size=7), verbose=0)


def test_mix_transfer_set_refuses_labels_it_cannot_mix():
    x, y = make_data(10)
    with pytest.raises(ValueError, match="must be numbers.*dtype <U"):
        keras_kd.mix_transfer_set((x, y.astype(str)), x[:4])
    with pytest.raises(ValueError, match=r"integer class indices.*Received a label 2\.5\."):
        keras_kd.mix_transfer_set((x, y + 0.5), x[:4])


# ------------------------------------------------- item 8: also silent

def test_probabilities_declared_for_a_teacher_that_outputs_logits():
    with pytest.raises(ValueError, match="teacher_outputs='probabilities', but `teacher`.*outputs logits"):
        keras_kd.Distiller(make_model(1), make_model(0), teacher_outputs="probabilities")


def test_cached_logits_declared_as_probabilities_are_refused_in_the_step():
    x, y = make_data(16)
    logits = np.random.default_rng(0).normal(size=(16, CLASSES)).astype("float32")
    distiller = keras_kd.Distiller(make_model(1), teacher=None, teacher_outputs="probabilities")
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    before = weights_of(distiller.student)
    dataset = tf.data.Dataset.from_tensor_slices(
        ({keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: logits}, y)
    ).batch(16)
    with pytest.raises(ValueError, match="not probabilities.*teacher_outputs='logits'"):
        distiller.fit(dataset, verbose=0)
    assert_unchanged(distiller.student, before)


def test_fractional_float_labels_are_refused_not_truncated():
    x, y = make_data()
    labels = y.astype("float32")
    labels[7] = 2.5
    distiller = distiller_for()
    before = weights_of(distiller.student)
    with pytest.raises(ValueError, match="integer class indices.*truncated.*2.5"):
        distiller.fit(x, labels, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(32)
    with pytest.raises(ValueError, match="1 labels in training batch 0"):
        distiller.fit(dataset, verbose=0)
    assert_unchanged(distiller.student, before)
    # Integral floats are class indices.
    distiller.fit(x, y.astype("float32"), verbose=0)


def test_negative_sample_weights_are_refused():
    x, y = make_data()
    weights = np.ones(N, "float32")
    weights[4] = -1.0
    distiller = distiller_for()
    before = weights_of(distiller.student)
    with pytest.raises(ValueError, match=r"`sample_weight` must be finite and non-negative. Received a weight -1\.0 \(at index 4\)"):
        distiller.fit(x, y, sample_weight=weights, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(32)
    with pytest.raises(ValueError, match="1 sample weights in training batch 0"):
        distiller.fit(dataset, verbose=0)
    with pytest.raises(ValueError, match="class_weight"):
        distiller.fit(x, y, class_weight={0: -2.0, 1: 1.0}, verbose=0)
    assert_unchanged(distiller.student, before)


def test_alpha_one_with_only_unlabeled_data_says_nothing_trains():
    x, _ = make_data()
    unlabeled = np.full(N, keras_kd.UNLABELED)
    distiller = distiller_for(alpha=1.0)
    with pytest.raises(ValueError, match="Nothing would be trained.*alpha=1"):
        distiller.fit(x, unlabeled, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, unlabeled)).batch(16)
    with pytest.raises(ValueError, match="Nothing was trained in epoch 1.*alpha=1"):
        distiller.fit(dataset, verbose=0)
    # With alpha < 1 the teacher trains it.
    distiller.alpha = 0.5
    distiller.fit(dataset, verbose=0)


def test_load_weights_keeps_the_alpha_and_temperature_of_a_newer_compile(tmp_path):
    x, y = make_data()
    distiller = distiller_for(alpha=0.1, temperature=4.0)
    distiller.fit(x, y, verbose=0)
    path = tmp_path / "distiller.weights.h5"
    distiller.save_weights(path)
    student_weights = weights_of(distiller.student)
    other = distiller_for(alpha=0.7, temperature=2.0)
    other.load_weights(path)
    assert other.alpha == pytest.approx(0.7)
    assert other.temperature == pytest.approx(2.0)
    assert float(other.terms[1].loss_weight.numpy()) == pytest.approx(0.3)
    for loaded, saved in zip(other.student.get_weights(), student_weights):
        np.testing.assert_array_equal(loaded, saved)


def test_a_teacher_that_shares_layers_with_the_student_is_refused_and_left_unfrozen():
    shared = keras.layers.Dense(8, activation="relu")
    teacher = keras.Sequential([keras.Input((FEATURES,)), shared, keras.layers.Dense(CLASSES)])
    student = keras.Sequential([keras.Input((FEATURES,)), shared, keras.layers.Dense(CLASSES)])
    with pytest.raises(ValueError, match=r"`teacher`.*shares 2 weights with `student`"):
        keras_kd.Distiller(student, teacher)
    assert teacher.trainable and shared.trainable


def test_the_teacher_passed_as_the_student_is_refused_and_left_unfrozen():
    model = make_model(0)
    with pytest.raises(ValueError, match="`teacher` and `student` must be different models"):
        keras_kd.Distiller(model, model)
    assert model.trainable


def _nested_softmax_student():
    inner = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(CLASSES, activation="softmax")])
    return keras.Sequential([keras.Input((FEATURES,)), inner])


@pytest.mark.parametrize("make_student", [
    lambda: keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(CLASSES),
                              keras.layers.Lambda(lambda z: tf.nn.softmax(z))]),
    lambda: keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(CLASSES),
                              keras.layers.Lambda(keras.ops.softmax)]),
    _nested_softmax_student,
], ids=["lambda-tf-nn-softmax", "lambda-ops-softmax", "nested-model"])
def test_a_hidden_softmax_in_the_student_is_found(make_student):
    with pytest.raises(ValueError, match="`student`.*outputs probabilities"):
        keras_kd.Distiller(make_student(), make_model(0))


def test_a_hidden_softmax_in_the_teacher_is_found():
    teacher = keras.Sequential([make_model(0), keras.layers.Lambda(keras.ops.softmax)])
    with pytest.raises(ValueError, match="outputs probabilities.*teacher_outputs='probabilities'"):
        keras_kd.Distiller(make_model(1), teacher)
    # Declared, it is accepted.
    keras_kd.Distiller(make_model(1), teacher, teacher_outputs="probabilities")


def test_real_students_pass_the_probe():
    # Non-negative logits (ReLU) and integer inputs (token ids) are fine.
    keras_kd.Distiller(make_model(1, activation="relu"), make_model(0))
    tokens = keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(50, 4),
                               keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(CLASSES)])
    keras_kd.Distiller(tokens, teacher=None)


def test_demo_refuses_a_negative_number_of_examples(tmp_path, capsys):
    output = tmp_path / "kd_output"
    for flag, value in (("--train-examples", "-5"), ("--test-examples", "0"), ("--labels", "-1")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["demo", flag, value, "--output-dir", str(output)])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert f"argument {flag}: expected a positive integer, received {int(value)}" in error
        assert not output.exists()


@pytest.mark.parametrize("temperature", [3e3, 1e30])
def test_temperatures_where_float32_fails_are_refused(temperature):
    distiller = keras_kd.Distiller(make_model(1), make_model(0))
    with pytest.raises(ValueError, match=r"`temperature` must be at most 100.*Received: temperature=" + re.escape(repr(temperature))):
        distiller.compile(temperature=temperature)
    with pytest.raises(ValueError, match="at most 100"):
        keras_kd.HintonKD(temperature=temperature)


def test_the_largest_accepted_temperature_still_gives_a_true_kl():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(256, 10)).astype("float32")
    student = rng.normal(size=(256, 10)).astype("float32")
    got = np.asarray(keras_kd.distillation_kl_divergence(teacher, student, temperature=100.0))
    t, s = teacher.astype(np.float64) / 100, student.astype(np.float64) / 100
    log_p = t - np.log(np.exp(t).sum(-1, keepdims=True))
    log_q = s - np.log(np.exp(s).sum(-1, keepdims=True))
    expected = (np.exp(log_p) * (log_p - log_q)).sum(-1) * 100**2
    np.testing.assert_allclose(got, expected, atol=1e-2)
    assert (got > 0).all()


# ---------------------------------------------------------------- cryptic

def test_string_labels_are_refused_clearly():
    x, y = make_data()
    distiller = distiller_for()
    with pytest.raises(ValueError, match=r"Labels in `y` must be numbers.*dtype <U.*e\.g\. '\d'"):
        distiller.fit(x, y.astype(str), verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype(str))).batch(16)
    with pytest.raises(ValueError, match=r"Labels in `x` must be numbers.*dtype string"):
        distiller.fit(dataset, verbose=0)


def test_one_hot_labels_one_column_too_wide_are_refused_clearly():
    x, y = make_data()
    wide = np.eye(CLASSES + 1, dtype="float32")[y]
    distiller = distiller_for()
    with pytest.raises(ValueError, match=r"one-hot rows shaped \(N, 5\).*Received labels of shape \(64, 6\)"):
        distiller.fit(x, wide, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, wide)).batch(16)
    with pytest.raises(ValueError, match=r"one-hot rows shaped \(batch, 5\).*\(None, 6\)"):
        distiller.fit(dataset, verbose=0)


def test_a_student_with_two_outputs_is_refused_clearly():
    inputs = keras.Input((FEATURES,))
    student = keras.Model(inputs, [keras.layers.Dense(CLASSES)(inputs), keras.layers.Dense(CLASSES)(inputs)])
    teacher = make_model(0)
    with pytest.raises(ValueError, match=r"`student` must have a single output.*2 outputs"):
        keras_kd.Distiller(student, teacher)
    assert teacher.trainable


def test_evaluate_without_labels_says_labels_are_needed():
    x, _ = make_data()
    distiller = distiller_for(metrics=["accuracy"])
    with pytest.raises(ValueError, match="`evaluate` scores the student against labels.*y=None"):
        distiller.evaluate(x, verbose=0)
    with pytest.raises(ValueError, match="yields no labels"):
        distiller.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(16), verbose=0)


def test_report_output_dir_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    x, y = make_data(20)
    target = tmp_path / "report.txt"
    target.write_text("keep me")
    teacher, student = make_model(0), make_model(1)
    with pytest.raises(ValueError, match=r"`output_dir` must be a directory.*which is a file"):
        keras_kd.report(teacher, student, (x, y), output_dir=target)
    assert target.read_text() == "keep me"
    teacher.save(tmp_path / "t.keras")
    student.save(tmp_path / "s.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    rc = cli.main(["report", "--teacher", str(tmp_path / "t.keras"), "--student",
                   str(tmp_path / "s.keras"), "--x", str(tmp_path / "x.npy"), "--y",
                   str(tmp_path / "y.npy"), "--output-dir", str(target / "inside")])
    assert rc == 2
    assert "keras-kd report: error: `output_dir` cannot be created" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only directories")
def test_report_output_dir_that_is_read_only_fails_before_any_work(tmp_path):
    x, y = make_data(20)
    directory = tmp_path / "locked"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="`output_dir` is not writable"):
            keras_kd.report(make_model(0), make_model(1), (x, y), output_dir=directory)
    finally:
        directory.chmod(0o700)


def test_report_cli_turns_an_os_error_into_a_message(tmp_path, capsys, monkeypatch):
    # E.g. a disk that fills up while the plots are written.
    x, y = make_data(20)
    make_model(0).save(tmp_path / "t.keras")
    make_model(1).save(tmp_path / "s.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(importlib.import_module("keras_kd.src.report.report"), "_plot_per_class_accuracy", full_disk)
    rc = cli.main(["report", "--teacher", str(tmp_path / "t.keras"), "--student",
                   str(tmp_path / "s.keras"), "--x", str(tmp_path / "x.npy"), "--y",
                   str(tmp_path / "y.npy"), "--output-dir", str(tmp_path / "out")])
    assert rc == 2
    assert "No space left on device" in capsys.readouterr().err
