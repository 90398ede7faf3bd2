"""Outputs of any rank: token-level distillation of sequence models.

The divergences against a float64 numpy reference (values and gradients),
chunked against unchunked, padding invariance, per-token labels and weights,
top-k cached teacher logits, and the bad inputs of issue 16. The two-replica
run with uneven padding is in `tests/test_sequence_distribute.py`.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_kd
from keras_kd.src.terms import divergences

VOCABULARY, LENGTH = 40, 10


def numpy_log_softmax(z, temperature):
    z = np.asarray(z, np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_divergence(teacher, student, kind, temperature=1.0, beta=0.5):
    """Per-row reference in float64."""
    log_p, log_q = numpy_log_softmax(teacher, temperature), numpy_log_softmax(student, temperature)
    p, q = np.exp(log_p), np.exp(log_q)
    if kind == "forward_kl":
        value = (p * (log_p - log_q)).sum(-1)
    elif kind == "reverse_kl":
        value = (q * (log_q - log_p)).sum(-1)
    elif kind == "tvd":
        value = 0.5 * np.abs(p - q).sum(-1)
    else:
        m = beta * p + (1 - beta) * q
        value = beta * (p * (log_p - np.log(m))).sum(-1) + (1 - beta) * (q * (log_q - np.log(m))).sum(-1)
    return value * temperature**2


def numpy_gradient(teacher, student, kind, temperature, beta, weights, step=1e-6):
    """d sum(weights * divergence) / d student, by central differences."""
    gradient = np.zeros_like(student, dtype=np.float64)
    for index in np.ndindex(*student.shape):
        up, down = student.astype(np.float64).copy(), student.astype(np.float64).copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (
            (weights * numpy_divergence(teacher, up, kind, temperature, beta)).sum()
            - (weights * numpy_divergence(teacher, down, kind, temperature, beta)).sum()
        ) / (2 * step)
    return gradient


def _gradient(teacher, student, kind, temperature, beta, weights, chunk_size):
    student = tf.constant(student)
    with tf.GradientTape() as tape:
        tape.watch(student)
        values = divergences.distillation_divergence(
            teacher, student, temperature, kind, beta, chunk_size=chunk_size
        )
        total = tf.reduce_sum(values * weights)
    return values.numpy(), tape.gradient(total, student).numpy()


@pytest.mark.parametrize("kind", divergences.DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_divergences_match_numpy_values_and_gradients(kind, temperature):
    rng = np.random.default_rng(0)
    teacher = (rng.normal(size=(2, 3, 7)) * 2).astype("float32")
    student = (rng.normal(size=(2, 3, 7)) * 2).astype("float32")
    weights = rng.uniform(0.5, 2.0, size=(2, 3)).astype("float32")
    values, gradient = _gradient(teacher, student, kind, temperature, 0.3, weights, None)
    np.testing.assert_allclose(values, numpy_divergence(teacher, student, kind, temperature, 0.3),
                               rtol=1e-5, atol=1e-6)
    expected = numpy_gradient(teacher, student, kind, temperature, 0.3, weights)
    np.testing.assert_allclose(gradient, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kind", divergences.DIVERGENCES)
def test_divergences_are_zero_for_identical_distributions(kind):
    logits = np.random.default_rng(1).normal(size=(5, 9)).astype("float32")
    values = divergences.distillation_divergence(logits, logits, 2.0, kind)
    np.testing.assert_allclose(values.numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize("kind", divergences.DIVERGENCES)
@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_equals_unchunked(kind, chunk_size):
    rng = np.random.default_rng(2)
    teacher = (rng.normal(size=(3, 11, VOCABULARY)) * 3).astype("float32")
    student = (rng.normal(size=(3, 11, VOCABULARY)) * 3).astype("float32")
    weights = rng.uniform(size=(3, 11)).astype("float32")
    values, gradient = _gradient(teacher, student, kind, 2.0, 0.5, weights, None)
    chunked_values, chunked_gradient = _gradient(teacher, student, kind, 2.0, 0.5, weights, chunk_size)
    np.testing.assert_allclose(chunked_values, values, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunked_gradient, gradient, rtol=1e-6, atol=1e-6)


def test_chunked_compiles_under_xla_with_a_partial_last_chunk():
    rng = np.random.default_rng(3)
    teacher = rng.normal(size=(37, 13)).astype("float32")
    student = rng.normal(size=(37, 13)).astype("float32")

    @tf.function(jit_compile=True)
    def chunked(values):
        with tf.GradientTape() as tape:
            tape.watch(values)
            loss = divergences.distillation_divergence(teacher, values, 1.5, "jsd", chunk_size=8)
            total = tf.reduce_sum(loss)
        return loss, tape.gradient(total, values)

    loss, gradient = chunked(tf.constant(student))
    expected_loss, expected_gradient = _gradient(teacher, student, "jsd", 1.5, 0.5, 1.0, None)
    np.testing.assert_allclose(loss.numpy(), expected_loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gradient.numpy(), expected_gradient, rtol=1e-6, atol=1e-6)


def test_top_k_teacher_rows_match_the_rebuilt_logits():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(20, 30)).astype("float32")
    values, indices = tf.math.top_k(logits, k=5)
    tail = np.full((20,), -1.0, "float32")
    top_k = {"values": values, "indices": indices, "tail": tail}
    rebuilt = keras_kd.src.data.cache.rebuild_top_k_logits(values, indices, tail, 30)
    student = rng.normal(size=(20, 30)).astype("float32")
    expected = divergences.distillation_divergence(rebuilt, student, 2.0, "reverse_kl")
    for chunk_size in (None, 6):
        got = divergences.distillation_divergence(top_k, student, 2.0, "reverse_kl",
                                                  chunk_size=chunk_size)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(divergence="kl"), r"`divergence` must be one of .*Received: divergence='kl'"),
        (dict(divergence="jsd", jsd_beta=1.0), r"`jsd_beta` must be strictly between 0 and 1.*1.0"),
        (dict(chunk_size=0), r"`chunk_size` must be None.*Received: chunk_size=0"),
    ],
)
def test_bad_divergence_arguments_are_refused_by_compile(arguments, message):
    distiller = keras_kd.Distiller(token_model(0), token_model(1))
    with pytest.raises(ValueError, match=message):
        distiller.compile(**arguments)


# ------------------------------------------------------- sequence models


def token_model(seed, vocabulary=VOCABULARY, length=LENGTH, width=8, scale=1.0):
    """A small causal sequence model over dict inputs, like keras-hub's;
    `scale` multiplies its logits (a confident teacher)."""
    keras.utils.set_random_seed(seed)
    token_ids = keras.Input((length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((length,), dtype="bool", name="padding_mask")
    hidden = keras.layers.Embedding(vocabulary, width)(token_ids)
    hidden = keras.layers.Conv1D(width, 3, padding="causal", activation="relu")(hidden)
    # Padding positions' features are zeroed, as a keras-hub backbone's mask
    # would: causal, right padding, so no real position changes (and Keras
    # 3.10-3.13 refuse an input that feeds nothing).
    hidden = hidden * keras.ops.expand_dims(keras.ops.cast(padding_mask, hidden.dtype), -1)
    logits = keras.layers.Rescaling(scale)(keras.layers.Dense(vocabulary)(hidden))
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, logits)


def token_batch(seed=0, batch=6, length=LENGTH, vocabulary=VOCABULARY):
    """Right-padded token batches: inputs, next-token labels, weights."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocabulary, size=(batch, length)).astype("int32")
    lengths = rng.integers(3, length + 1, size=batch)
    mask = np.arange(length)[None, :] < lengths[:, None]
    tokens[~mask] = 0
    labels = np.roll(tokens, -1, axis=1)
    weights = (mask & (np.arange(length)[None, :] < lengths[:, None] - 1)).astype("float32")
    return {"token_ids": tokens, "padding_mask": mask}, labels, weights


def make_distiller(**compile_arguments):
    distiller = keras_kd.Distiller(token_model(1), token_model(0, width=16, scale=20.0))
    compile_arguments.setdefault("optimizer", keras.optimizers.SGD(0.1))
    distiller.compile(**compile_arguments)
    return distiller


def gradients_of(distiller, x, y, w):
    with tf.GradientTape() as tape:
        values = distiller.term_losses(x, y, w, training=True)
        total = sum(values.values())
    return [tf.convert_to_tensor(g).numpy()
            for g in tape.gradient(total, distiller.student.trainable_weights)]


def test_masked_positions_change_no_loss_and_no_gradient():
    x, y, w = token_batch()
    distiller = make_distiller(alpha=0.5)
    before = distiller.term_losses(x, y, w)
    grads = gradients_of(distiller, x, y, w)
    # Whatever sits at masked positions (tokens, labels) changes nothing.
    noisy_x = {"token_ids": x["token_ids"].copy(), "padding_mask": x["padding_mask"]}
    noisy_x["token_ids"][~x["padding_mask"]] = 7
    noisy_y = y.copy()
    noisy_y[w == 0] = 3
    after = distiller.term_losses(noisy_x, noisy_y, w)
    assert before.keys() == after.keys() == {"student_loss", "distillation_loss"}
    for name in before:
        np.testing.assert_allclose(float(after[name]), float(before[name]), rtol=1e-6)
    for g, h in zip(grads, gradients_of(distiller, noisy_x, noisy_y, w)):
        np.testing.assert_allclose(h, g, rtol=1e-5, atol=1e-7)


def test_terms_are_means_over_real_tokens():
    x, y, w = token_batch()
    distiller = make_distiller(alpha=0.5, divergence="reverse_kl", temperature=2.0)
    values = distiller.term_losses(x, y, w)
    student = keras.ops.convert_to_numpy(distiller.student(x))
    teacher = keras.ops.convert_to_numpy(distiller.teachers[0](x))
    rows = w * x["padding_mask"]
    soft = numpy_divergence(teacher, student, "reverse_kl", 2.0)
    np.testing.assert_allclose(float(values["distillation_loss"]),
                               (soft * rows).sum() / rows.sum(), rtol=1e-4, atol=1e-8)
    log_q = numpy_log_softmax(student, 1.0)
    hard = -np.take_along_axis(log_q, y[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(values["student_loss"]),
                               (hard * rows).sum() / rows.sum(), rtol=1e-5)


def test_unlabeled_tokens_only_get_the_soft_loss():
    x, y, w = token_batch()
    prompt = np.zeros_like(y, bool)
    prompt[:, :4] = True
    y_with_prompt = np.where(prompt, keras_kd.UNLABELED, y)
    distiller = make_distiller(alpha=0.5)
    values = distiller.term_losses(x, y_with_prompt, w)
    student = keras.ops.convert_to_numpy(distiller.student(x))
    teacher = keras.ops.convert_to_numpy(distiller.teachers[0](x))
    rows = w * x["padding_mask"]
    labeled = rows * ~prompt
    hard = -np.take_along_axis(numpy_log_softmax(student, 1.0), y[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(values["student_loss"]),
                               (hard * labeled).sum() / labeled.sum(), rtol=1e-5)
    soft = numpy_divergence(teacher, student, "forward_kl")
    np.testing.assert_allclose(float(values["distillation_loss"]),
                               (soft * rows).sum() / rows.sum(), rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("divergence", divergences.DIVERGENCES)
def test_fit_lowers_the_loss_with_every_divergence(divergence):
    x, y, w = token_batch(batch=16)
    distiller = make_distiller(optimizer=keras.optimizers.Adam(0.02), divergence=divergence,
                               metrics=["accuracy"], chunk_size=17)
    history = distiller.fit(x, y, sample_weight=w, batch_size=8, epochs=6, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    logs = distiller.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"} and 0.0 <= logs["accuracy"] <= 1.0


def test_metrics_count_real_tokens_only():
    x, y, w = token_batch()
    distiller = make_distiller(metrics=["accuracy"])
    logs = distiller.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    predicted = keras.ops.convert_to_numpy(distiller.student(x)).argmax(-1)
    rows = (w * x["padding_mask"]) > 0
    np.testing.assert_allclose(logs["accuracy"], (predicted == y)[rows].mean(), rtol=1e-6)


def test_xla_and_eager_steps_agree():
    x, y, w = token_batch(batch=8)
    weights = []
    for jit_compile in (False, True):
        distiller = make_distiller(jit_compile=jit_compile, chunk_size=13)
        distiller.fit(x, y, sample_weight=w, batch_size=8, epochs=2, verbose=0, shuffle=False)
        weights.append(distiller.student.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_top_k_cached_teacher_logits_train_without_the_teacher():
    x, y, w = token_batch(batch=8)
    teacher = token_model(0, width=16)
    logits = keras.ops.convert_to_numpy(teacher(x))
    values, indices = tf.math.top_k(logits, k=8)
    rest = tf.where(tf.reduce_sum(tf.one_hot(indices, VOCABULARY), -2) > 0, -np.inf, logits)
    tail = tf.reduce_logsumexp(rest, -1) - np.log(VOCABULARY - 8)
    cached = {"inputs": x, "teacher_logits": {"values": values, "indices": indices, "tail": tail}}
    live = make_distiller(alpha=0.0)
    distiller = keras_kd.Distiller(token_model(1), teacher=None)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.0, chunk_size=16)
    rebuilt = keras_kd.src.data.cache.rebuild_top_k_logits(values, indices, tail, VOCABULARY)
    expected = divergences.distillation_divergence(rebuilt, distiller.student(x))
    rows = w * x["padding_mask"]
    value = distiller.term_losses(cached, y, w)["distillation_loss"]
    np.testing.assert_allclose(float(value), (expected.numpy() * rows).sum() / rows.sum(),
                               rtol=1e-5)
    history = distiller.fit(tf.data.Dataset.from_tensors((cached, y, w)).repeat(5),
                            epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert float(live.term_losses(x, y, w)["distillation_loss"]) > 0


# ------------------------------------------------------------ bad input


def _assert_refused_before_any_change(distiller, message, *fit_args, **fit_kwargs):
    before = [v.numpy().copy() for v in distiller.student.weights]
    with pytest.raises(ValueError, match=message):
        distiller.fit(*fit_args, verbose=0, **fit_kwargs)
    for old, new in zip(before, distiller.student.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_sample_weight_of_the_wrong_shape_is_refused():
    x, y, w = token_batch()
    distiller = make_distiller()
    _assert_refused_before_any_change(
        distiller, r"`sample_weight` must be shaped \(6, 10\).*Received sample_weight of shape \(6, 9\)",
        tf.data.Dataset.from_tensors((x, y, w[:, :9])),
    )


def test_padding_mask_of_the_wrong_shape_is_refused():
    x, y, w = token_batch()
    student = token_model(1)
    teacher = token_model(0)
    distiller = keras_kd.Distiller(student, teacher)
    distiller.compile()
    bad = dict(x)
    bad["padding_mask"] = x["padding_mask"][:, :1]
    with pytest.raises(ValueError, match=r"`padding_mask` must be shaped .*Received padding_mask of shape \(6, 1\)"):
        keras_kd.src.distiller.positions.row_weights(
            tf.zeros((6, LENGTH, VOCABULARY)), None, tf.constant(bad["padding_mask"])
        )


def test_labels_of_the_wrong_shape_are_refused():
    x, y, w = token_batch()
    distiller = make_distiller()
    _assert_refused_before_any_change(
        distiller, r"Labels in `y` must be class indices shaped \(N, sequence\)",
        x, y[:, 0], batch_size=6,
    )
    _assert_refused_before_any_change(
        distiller, r"Labels .* one class index per position, shaped \(6, 10\).*Received labels of shape \(6, 9\)",
        tf.data.Dataset.from_tensors((x, y[:, :9], w)),
    )


def test_teacher_with_another_sequence_length_is_refused():
    x, y, w = token_batch()
    student = token_model(1)
    teacher_inputs = {"token_ids": keras.Input((LENGTH,), dtype="int32"),
                      "padding_mask": keras.Input((LENGTH,), dtype="bool")}
    embedded = keras.layers.Embedding(VOCABULARY, VOCABULARY)(teacher_inputs["token_ids"])
    # Every input feeds the output (Keras 3.10-3.13 refuse one that does not).
    embedded = embedded * keras.ops.expand_dims(
        keras.ops.cast(teacher_inputs["padding_mask"], embedded.dtype), -1)
    shorter = keras.layers.Lambda(lambda t: t[:, :-1])(embedded)
    teacher = keras.Model(teacher_inputs, shorter)
    distiller = keras_kd.Distiller(student, teacher)
    distiller.compile()
    _assert_refused_before_any_change(
        distiller, r"same positions \(e.g. the same sequence length\).*student output \(6, 10, 40\).*\(6, 9\)",
        tf.data.Dataset.from_tensors((x, y, w)),
    )


def test_teacher_with_another_vocabulary_is_refused():
    distiller_student = token_model(1)
    teacher = token_model(0, vocabulary=VOCABULARY + 1)
    with pytest.raises(ValueError, match=r"same number of classes.*41.*40|classes.*40.*41"):
        keras_kd.Distiller(distiller_student, teacher)


def test_a_keras_mask_on_the_outputs_masks_padding():
    # Embedding(mask_zero=True) puts a Keras mask on the outputs, as a
    # Keras user's LM would have; padding (token 0) then counts for nothing.
    def masked_lm(seed, units):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((LENGTH,), dtype="int32")
        hidden = keras.layers.Embedding(VOCABULARY, units, mask_zero=True)(inputs)
        hidden = keras.layers.GRU(units, return_sequences=True)(hidden)
        return keras.Model(inputs, keras.layers.Dense(VOCABULARY)(hidden))

    x, y, _ = token_batch()
    tokens = x["token_ids"]
    distiller = keras_kd.Distiller(masked_lm(1, 8), masked_lm(0, 16))
    distiller.compile(alpha=0.5)
    assert keras_kd.src.distiller.positions.output_mask(distiller.student(tokens)) is not None
    before = distiller.term_losses(tokens, y)
    other_labels = np.where(tokens == 0, 5, y)
    after = distiller.term_losses(tokens, other_labels)
    for name in before:
        np.testing.assert_allclose(float(after[name]), float(before[name]), rtol=1e-6)
    student = keras.ops.convert_to_numpy(distiller.student(tokens))
    rows = tokens != 0
    hard = -np.take_along_axis(numpy_log_softmax(student, 1.0), y[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(before["student_loss"]), hard[rows].mean(), rtol=1e-5)
