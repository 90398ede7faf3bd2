"""Exact gradient accumulation: `k` micro-batches equal one `k`-times-larger batch.

The micro-batches hold different numbers of real tokens (and of labelled
ones), so averaging their per-batch means, as Keras's optimizer does,
would differ; a check below shows by how much on the same data.
"""

import numpy as np
import pytest
import keras
from keras import ops

import keras_kd
from keras_kd.src.distiller.accumulation import combine_group_gradients

VOCABULARY, LENGTH = 20, 6


def token_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((LENGTH,), dtype="int32"),
        # One-hot + Dense rather than Embedding: Keras's Adam applies an
        # embedding table's sparse gradient lazily, accumulated gradients are
        # dense (in Keras's own accumulation too).
        keras.layers.CategoryEncoding(VOCABULARY, output_mode="one_hot"),
        keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(VOCABULARY, kernel_regularizer=keras.regularizers.L2(1e-2)),
    ])


@pytest.fixture(scope="module")
def token_data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCABULARY, (8, LENGTH)).astype("int32")
    y = rng.integers(0, VOCABULARY, (8, LENGTH))
    y[:2, :3] = keras_kd.UNLABELED  # prompt tokens: soft loss only
    weights = np.ones((8, LENGTH), "float32")
    weights[:4, 3:] = 0.0  # the first micro-batches are mostly padding
    weights[5, 1:] = 0.0
    return x, y, weights


@pytest.fixture(scope="module")
def teacher():
    return token_model(1)


def train(teacher, data, optimizer, batch_size, steps=None, epochs=1):
    x, y, weights = data
    student = token_model(0)
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=optimizer, alpha=0.5, temperature=2.0,
                      gradient_accumulation_steps=steps)
    distiller.fit(x, y, sample_weight=weights, batch_size=batch_size, epochs=epochs,
                  shuffle=False, verbose=0)
    return distiller, [w.numpy() for w in student.weights]


def assert_same_weights(actual, expected, atol=1e-6):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=atol)


def test_combine_group_gradients_matches_numpy():
    rng = np.random.default_rng(1)
    sums = [[rng.normal(size=(3, 2)).astype("float32"), None],
            [rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=4).astype("float32")]]
    counts = [np.float32(5.0), np.float32(7.0)]
    combined = combine_group_gradients(sums, counts)
    np.testing.assert_allclose(combined[0], sums[0][0] / 5 + sums[1][0] / 7, rtol=1e-6)
    np.testing.assert_allclose(combined[1], sums[1][1] / 7, rtol=1e-6)
    # A group that counted nothing contributes nothing (no NaN).
    empty = combine_group_gradients([[np.ones(2, "float32")]], [np.float32(0.0)])
    np.testing.assert_array_equal(empty[0], [0.0, 0.0])


@pytest.mark.parametrize("steps", [2, 4])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_micro_batches_with_uneven_tokens_equal_one_large_batch(teacher, token_data, steps,
                                                                 optimizer):
    make = {"sgd": lambda: keras.optimizers.SGD(0.5),
            "adam": lambda: keras.optimizers.Adam(1e-2)}[optimizer]
    one, expected = train(teacher, token_data, make(), batch_size=8)
    accumulated, actual = train(teacher, token_data, make(), batch_size=8 // steps, steps=steps)
    assert_same_weights(actual, expected)
    # One optimizer step each: `iterations` counts optimizer steps.
    assert int(one.optimizer.iterations) == int(accumulated.optimizer.iterations) == 1


def test_the_data_tells_exact_from_averaged_means(teacher, token_data):
    """Keras's accumulation (the mean of the micro-batches' means) would give
    visibly different weights on this data: the test above can fail."""
    x, y, weights = token_data
    _, exact = train(teacher, token_data, keras.optimizers.SGD(0.5), batch_size=8)
    student = token_model(0)
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), alpha=0.5, temperature=2.0)
    import tensorflow as tf

    gradients = []
    for half in (slice(0, 4), slice(4, 8)):
        with tf.GradientTape() as tape:
            values = distiller.term_losses(x[half], y[half], sample_weight=weights[half],
                                           training=True)
            loss = 0.5 * values["student_loss"] + 0.5 * values["distillation_loss"]
            loss = loss + ops.sum(student.losses)
        gradients.append(tape.gradient(loss, student.trainable_weights))
    averaged = [w.numpy() - 0.5 * (g0 + g1).numpy() / 2
                for w, g0, g1 in zip(student.trainable_weights, *gradients)]
    largest = max(float(np.abs(a - e).max()) for a, e in zip(averaged, exact))
    assert largest > 1e-3


def test_optimizer_gradient_accumulation_steps_is_taken_over(teacher, token_data):
    _, expected = train(teacher, token_data, keras.optimizers.SGD(0.5), batch_size=8)
    optimizer = keras.optimizers.SGD(0.5, gradient_accumulation_steps=2)
    distiller, actual = train(teacher, token_data, optimizer, batch_size=4)
    assert_same_weights(actual, expected)
    assert optimizer.gradient_accumulation_steps is None
    assert distiller.get_compile_config()["gradient_accumulation_steps"] == 2


def test_classifier_with_unlabelled_rows_under_xla():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 5)).astype("float32")
    y = rng.integers(0, 3, 12)
    y[[0, 1, 2, 5]] = keras_kd.UNLABELED  # 1, 2 and 3 labelled rows per micro-batch

    def model(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])

    teacher = model(1)
    results = []
    for batch_size, steps in ((12, None), (4, 3)):
        student = model(0)
        distiller = keras_kd.Distiller(student=student, teacher=teacher)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-2), alpha=0.5,
                          gradient_accumulation_steps=steps, jit_compile=True)
        distiller.fit(x, y, batch_size=batch_size, epochs=3, shuffle=False, verbose=0)
        results.append([w.numpy() for w in student.weights])
    assert_same_weights(results[1], results[0])


def test_saved_distiller_keeps_its_accumulation(tmp_path, teacher, token_data):
    distiller, _ = train(teacher, token_data, keras.optimizers.SGD(0.5), batch_size=4, steps=2)
    path = tmp_path / "accumulating.keras"
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_compile_config()["gradient_accumulation_steps"] == 2
    assert loaded._accumulator_holder.steps == 2
    # And it trains, one optimizer step per two micro-batches.
    x, y, weights = token_data
    before = int(loaded.optimizer.iterations)
    loaded.fit(x, y, sample_weight=weights, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert int(loaded.optimizer.iterations) == before + 1


@pytest.mark.parametrize("steps", [1, 0, 2.0, True, "2"])
def test_bad_gradient_accumulation_steps_is_refused(teacher, steps):
    distiller = keras_kd.Distiller(student=token_model(0), teacher=teacher)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        distiller.compile(optimizer="sgd", gradient_accumulation_steps=steps)


def test_two_different_accumulation_settings_are_refused(teacher):
    distiller = keras_kd.Distiller(student=token_model(0), teacher=teacher)
    with pytest.raises(ValueError, match="pass one of them"):
        distiller.compile(optimizer=keras.optimizers.SGD(gradient_accumulation_steps=2),
                          gradient_accumulation_steps=3)


def test_an_optimizer_built_for_keras_accumulation_is_refused(teacher):
    student = token_model(0)
    optimizer = keras.optimizers.SGD(gradient_accumulation_steps=2)
    optimizer.build(student.trainable_weights)
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    with pytest.raises(ValueError, match="already built"):
        distiller.compile(optimizer=optimizer)


def test_mixed_precision_accumulation_is_taken_from_the_loss_scale_optimizer():
    """Under mixed_float16, Keras wraps the optimizer in a LossScaleOptimizer;
    the inner optimizer's accumulation is taken over, and the result equals
    the large batch up to float16 rounding."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 5)).astype("float32")
    y = rng.integers(0, 3, 12)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        def model(seed):
            keras.utils.set_random_seed(seed)
            return keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                                     keras.layers.Dense(3, dtype="float32")])

        teacher = model(1)
        results = []
        for batch_size, steps in ((12, None), (4, 3)):
            student = model(0)
            distiller = keras_kd.Distiller(student=student, teacher=teacher)
            distiller.compile(optimizer=keras.optimizers.Adam(
                1e-2, gradient_accumulation_steps=steps), alpha=0.5)
            assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
            distiller.fit(x, y, batch_size=batch_size, epochs=3, shuffle=False, verbose=0)
            assert int(distiller.optimizer.iterations) == 3
            results.append([w.numpy() for w in student.weights])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert_same_weights(results[1], results[0], atol=1e-3)
