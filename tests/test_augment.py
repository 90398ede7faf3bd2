"""In-step augmentation: the mixers, the consistent view, and bad input."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import ops

import keras_kd
from keras_kd.src.augment import augment


class Recorder(keras.layers.Layer):
    """Stores the last batch it saw in a variable, then passes it on."""

    def __init__(self, batch_shape, **kwargs):
        super().__init__(**kwargs)
        self.seen = self.add_weight(shape=batch_shape, initializer="zeros", trainable=False)

    def call(self, inputs):
        self.seen.assign(ops.cast(inputs, "float32"))
        return inputs


def recording_model(batch_shape, classes=3, name=None):
    inputs = keras.Input(batch_shape[1:])
    recorder = Recorder(batch_shape, name="recorder")
    x = keras.layers.Flatten()(recorder(inputs))
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name=name)


def dense_model(shape=(5,), classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes)])


class FixedMixer(augment.InputMixer):
    """Pairs example i with batch-1-i with a fixed share: a known mixing."""

    def __init__(self, share=0.3, **kwargs):
        super().__init__(**kwargs)
        self.share = share

    def mix(self, inputs):
        batch = ops.shape(inputs)[0]
        partner = ops.flip(ops.arange(batch), 0)
        weight = ops.full((batch,), self.share, "float32")
        w = ops.reshape(weight, (-1,) + (1,) * (len(inputs.shape) - 1))
        return w * inputs + (1 - w) * ops.take(inputs, partner, axis=0), partner, weight


def numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# ------------------------------------------------------------------- mixers


@pytest.mark.parametrize("shape", [(16, 7), (16, 4, 5), (16, 6, 6, 2)])
def test_mixup_mixes_inputs_of_any_rank_by_its_weights(shape):
    x = np.random.rand(*shape).astype("float32")
    mixed, partner, weight = augment.MixUp(seed=0).mix(x)
    mixed, partner, weight = map(np.asarray, (mixed, partner, weight))
    assert sorted(partner.tolist()) == list(range(shape[0]))
    assert ((weight >= 0) & (weight <= 1)).all()
    w = weight.reshape((-1,) + (1,) * (len(shape) - 1))
    np.testing.assert_allclose(mixed, w * x + (1 - w) * x[partner], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("concentration", [0.2, 0.5, 1.0, 2.0])
def test_beta_samples_have_the_beta_distributions_moments(concentration):
    samples = np.asarray(augment.sample_beta((40000,), concentration, keras.random.SeedGenerator(1)))
    assert ((samples >= 0) & (samples <= 1)).all()
    variance = 1.0 / (4 * (2 * concentration + 1))  # Beta(a, a): 1 / (4 (2a + 1))
    assert abs(samples.mean() - 0.5) < 0.01
    assert abs(samples.var() - variance) < 0.1 * variance


def test_cutmix_weight_is_the_share_of_pixels_kept():
    images = np.stack([np.full((10, 10, 1), i, "float32") for i in range(8)])
    mixed, partner, weight = map(np.asarray, augment.CutMix(seed=4).mix(images))
    for i in range(8):
        if partner[i] == i:
            continue
        kept = np.mean(mixed[i] == images[i])
        assert abs(kept - weight[i]) < 1e-6
        assert set(np.unique(mixed[i])) <= {float(i), float(partner[i])}


def test_cutmix_refuses_inputs_that_are_not_images():
    with pytest.raises(ValueError, match="CutMix cuts boxes out of image batches"):
        augment.CutMix().mix(np.zeros((4, 5), "float32"))


def test_mixers_refuse_integer_inputs_and_bad_alpha():
    with pytest.raises(TypeError, match="token ids cannot be mixed"):
        augment.MixUp().mix(np.zeros((4, 5), "int32"))
    with pytest.raises(ValueError, match=r"alpha=0"):
        augment.MixUp(alpha=0)
    with pytest.raises(TypeError, match="seed"):
        augment.MixUp(seed=1.5)


def test_mixer_is_the_identity_outside_training():
    x = np.random.rand(4, 3).astype("float32")
    np.testing.assert_array_equal(augment.MixUp(seed=0)(x, training=False), x)


def test_mixers_compile_under_xla():
    mixer = augment.MixUp(alpha=0.4, seed=0)
    cutmix = augment.CutMix(alpha=2.0, seed=0)

    @tf.function(jit_compile=True)
    def mix(x):
        return mixer.mix(x)[0], cutmix.mix(x)[0]

    first, second = mix(tf.random.uniform((8, 6, 6, 1)))
    assert first.shape == second.shape == (8, 6, 6, 1)


def test_mix_labeled_mixes_one_hot_labels_with_the_same_weights():
    x = np.random.rand(8, 3).astype("float32")
    y = np.eye(4, dtype="float32")[np.arange(8) % 4]
    # Two mixers with one seed make the same draws.
    _, partner, weight = map(np.asarray, augment.MixUp(seed=2).mix(x))
    mixed_x, mixed_y = map(np.asarray, augment.MixUp(seed=2).mix_labeled(x, y))
    w = weight[:, None]
    np.testing.assert_allclose(mixed_x, w * x + (1 - w) * x[partner], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mixed_y, w * y + (1 - w) * y[partner], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------- the Distiller's view


@pytest.mark.parametrize("jit_compile", [False, True])
def test_teacher_and_student_see_the_identical_augmented_batch(jit_compile):
    batch_shape = (8, 4, 4, 1)
    x = np.random.rand(*batch_shape).astype("float32")
    y = np.arange(8) % 3
    student = recording_model(batch_shape, name="student")
    teacher = recording_model(batch_shape, name="teacher")
    augmentation = keras.Sequential(
        [keras.layers.RandomFlip("horizontal", seed=1), augment.MixUp(seed=2)]
    )
    distiller = keras_kd.Distiller(student, teacher, augmentation=augmentation)
    distiller.compile(optimizer="sgd", jit_compile=jit_compile)
    distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    seen_by_student = student.get_layer("recorder").seen.numpy()
    seen_by_teacher = teacher.get_layer("recorder").seen.numpy()
    np.testing.assert_array_equal(seen_by_student, seen_by_teacher)
    assert np.abs(seen_by_student - x).max() > 1e-3  # it was augmented


def test_several_teachers_see_the_students_view():
    batch_shape = (8, 6)
    x = np.random.rand(*batch_shape).astype("float32")
    student = recording_model(batch_shape, name="student")
    teachers = [recording_model(batch_shape, name=f"teacher{i}") for i in range(2)]
    distiller = keras_kd.Distiller(student, teachers, augmentation=augment.MixUp(seed=0))
    distiller.compile(optimizer="sgd")
    distiller.fit(x, batch_size=8, epochs=1, verbose=0)  # unlabeled batch
    views = [m.get_layer("recorder").seen.numpy() for m in (student, *teachers)]
    np.testing.assert_array_equal(views[0], views[1])
    np.testing.assert_array_equal(views[0], views[2])


def test_no_augmentation_in_evaluate_predict_or_call():
    batch_shape = (8, 6)
    x = np.random.rand(*batch_shape).astype("float32")
    student = recording_model(batch_shape, name="student")
    distiller = keras_kd.Distiller(student, dense_model((6,)), augmentation=augment.MixUp(seed=0))
    distiller.compile(optimizer="sgd")
    recorder = student.get_layer("recorder")
    distiller.evaluate(x, np.zeros(8, "int32"), batch_size=8, verbose=0)
    np.testing.assert_array_equal(recorder.seen.numpy(), x)
    recorder.seen.assign(np.zeros(batch_shape, "float32"))
    distiller.predict(x, batch_size=8, verbose=0)
    np.testing.assert_array_equal(recorder.seen.numpy(), x)
    recorder.seen.assign(np.zeros(batch_shape, "float32"))
    distiller(x)
    np.testing.assert_array_equal(recorder.seen.numpy(), x)


def test_hard_label_loss_follows_both_labels_of_a_mixed_example():
    x = np.random.rand(6, 5).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    student, teacher = dense_model(seed=1), dense_model(seed=2)
    distiller = keras_kd.Distiller(student, teacher, augmentation=FixedMixer(share=0.3))
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.5, temperature=1.0)
    logs = distiller.train_on_batch(x, y, return_dict=True)
    mixed = 0.3 * x + 0.7 * x[::-1]
    log_q = numpy_log_softmax(student.predict(mixed, verbose=0).astype(np.float64))
    expected = np.mean(-0.3 * log_q[np.arange(6), y] - 0.7 * log_q[np.arange(6), y[::-1]])
    np.testing.assert_allclose(logs["student_loss"], expected, rtol=1e-5)
    # The soft term is computed on the mixed view the teacher saw.
    log_p = numpy_log_softmax(teacher.predict(mixed, verbose=0).astype(np.float64))
    kl = np.mean((np.exp(log_p) * (log_p - log_q)).sum(-1))
    np.testing.assert_allclose(logs["distillation_loss"], kl, rtol=1e-5)


def test_mixed_example_with_an_unlabeled_partner_gets_no_hard_loss():
    x = np.random.rand(4, 5).astype("float32")
    y = np.array([0, keras_kd.UNLABELED, 2, 1])
    student = dense_model(seed=1)
    distiller = keras_kd.Distiller(student, dense_model(seed=2), augmentation=FixedMixer(share=0.3))
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.5, temperature=1.0)
    logs = distiller.train_on_batch(x, y, return_dict=True)
    mixed = 0.3 * x + 0.7 * x[::-1]
    log_q = numpy_log_softmax(student.predict(mixed, verbose=0).astype(np.float64))
    # Partners: 0<->3, 1<->2; only the pair (0, 3) is labeled on both sides.
    rows = [0, 3]
    expected = np.mean([-0.3 * log_q[i, y[i]] - 0.7 * log_q[i, y[3 - i]] for i in rows])
    np.testing.assert_allclose(logs["student_loss"], expected, rtol=1e-5)


def test_seeded_runs_with_augmentation_repeat_exactly():
    x = np.random.rand(64, 6, 6, 1).astype("float32")
    y = np.arange(64) % 3

    def run():
        keras.utils.set_random_seed(5)
        student, teacher = dense_model((6, 6, 1), seed=5), dense_model((6, 6, 1), seed=6)
        augmentation = keras.Sequential(
            [keras.layers.RandomFlip("horizontal", seed=3), augment.CutMix(seed=4)]
        )
        distiller = keras_kd.Distiller(student, teacher, augmentation=augmentation)
        distiller.compile(optimizer="adam")
        distiller.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return student.get_weights()

    for first, second in zip(run(), run()):
        np.testing.assert_array_equal(first, second)


def test_save_and_load_keep_the_augmentation(tmp_path):
    augmentation = keras.Sequential(
        [keras.layers.RandomTranslation(0.1, 0.1, seed=1), augment.MixUp(alpha=0.4, seed=7)]
    )
    distiller = keras_kd.Distiller(dense_model((6, 6, 1)), dense_model((6, 6, 1)),
                                   augmentation=augmentation)
    distiller.compile(optimizer="adam", alpha=0.2, temperature=1.0)
    x = np.random.rand(16, 6, 6, 1).astype("float32")
    distiller.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    distiller.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    layers = loaded.augmentation.layers
    assert isinstance(layers[0], keras.layers.RandomTranslation)
    assert isinstance(layers[1], augment.MixUp)
    assert layers[1].alpha == 0.4 and layers[1].seed == 7
    loaded.fit(x, np.arange(16) % 3, epochs=1, verbose=0)


def test_unlabeled_mixed_batches_and_tf_data_train():
    x = np.random.rand(32, 5).astype("float32")
    distiller = keras_kd.Distiller(dense_model(), dense_model(seed=3),
                                   augmentation=augment.MixUp(seed=1))
    distiller.compile(optimizer="adam", alpha=0.0, temperature=1.0)
    history = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=2, verbose=0)
    assert set(history.history) == {"loss", "distillation_loss"}
    assert np.isfinite(history.history["loss"]).all()


# ----------------------------------------------------------------- bad input


def test_augmentation_that_changes_the_batch_size_is_refused_before_any_step():
    student = dense_model()
    before = [w.copy() for w in student.get_weights()]
    drop_one = keras.layers.Lambda(lambda t: t[:-1])
    distiller = keras_kd.Distiller(student, dense_model(seed=3), augmentation=drop_one)
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"`augmentation` must keep the batch size.*\(8, 5\).*\(7, 5\)"):
        distiller.fit(np.zeros((8, 5), "float32"), np.zeros(8, "int32"), batch_size=8, verbose=0)
    for old, new in zip(before, student.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_augmentation_that_changes_the_example_shape_or_dtype_is_refused():
    distiller = keras_kd.Distiller(dense_model(), dense_model(seed=3),
                                   augmentation=lambda t: ops.concatenate([t, t], axis=-1))
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match="shape of each example"):
        distiller.fit(np.zeros((8, 5), "float32"), np.zeros(8, "int32"), batch_size=8, verbose=0)
    distiller = keras_kd.Distiller(dense_model(), dense_model(seed=3),
                                   augmentation=lambda t: t > 0.5)
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match="numeric inputs.*bool"):
        distiller.fit(np.zeros((8, 5), "float32"), np.zeros(8, "int32"), batch_size=8, verbose=0)


def test_augmentation_with_cached_teacher_logits_is_refused_up_front():
    x = np.zeros((8, 5), "float32")
    dataset = tf.data.Dataset.from_tensor_slices(
        ({keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: np.zeros((8, 3), "float32")},
         np.zeros(8, "int32"))
    ).batch(4)
    distiller = keras_kd.Distiller(dense_model(), teacher=None, augmentation=augment.MixUp())
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match="cannot be used with precomputed teacher logits"):
        distiller.fit(dataset, verbose=0)


def test_augmentation_argument_is_validated():
    with pytest.raises(TypeError, match=r"`augmentation` must be a Keras layer.*Received: augmentation=3"):
        keras_kd.Distiller(dense_model(), dense_model(), augmentation=3)
    with pytest.raises(ValueError, match="at most one mixer"):
        keras_kd.Distiller(dense_model(), dense_model(),
                           augmentation=keras.Sequential([augment.MixUp(), augment.CutMix()]))
