"""Cached teacher outputs: exactness, top-k math, replayed views, bad input."""

import os

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_kd
from keras_kd.src.data import datasets
from keras_kd.src.models import models

from conftest import numpy_log_softmax


@pytest.fixture(scope="module")
def fashion():
    (x, y), _ = datasets.load_fashion_mnist()
    return x[:384], y[:384].astype("int32")


@pytest.fixture(scope="module")
def teacher():
    """A CNN teacher trained briefly, so its outputs are not uniform."""
    (x, y), _ = datasets.load_fashion_mnist()
    keras.utils.set_random_seed(7)
    model = models.cnn_teacher(width=8)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[1000:2000], y[1000:2000], batch_size=64, epochs=1, verbose=0)
    return model


def flip_and_shift(x, seed):
    """A seeded augmentation: random flip, brightness and a random crop."""
    x = tf.image.stateless_random_flip_left_right(x, seed)
    x = tf.image.stateless_random_brightness(x, 0.3, seed + 1)
    padded = tf.pad(x, [[2, 2], [2, 2], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(x), seed + 2)


def other_augment(x, seed):
    return tf.image.stateless_random_flip_up_down(x, seed)


class BatchLogs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append({k: float(v) for k, v in logs.items()})


def _fit(distiller, data, epochs=2):
    recorder = BatchLogs()
    distiller.fit(data, epochs=epochs, verbose=0, callbacks=[recorder])
    return recorder.batches


@pytest.mark.slow
@pytest.mark.parametrize("several", [False, True], ids=["one_teacher", "two_teachers"])
def test_float32_cache_trains_like_the_live_teacher(tmp_path, fashion, teacher, several):
    x, y = fashion
    teachers = [teacher, models.mlp((32,), name="mlp_teacher")] if several else teacher
    weights = [0.7, 0.3] if several else None
    path = tmp_path / "teacher.kdcache"
    keras_kd.cache_teacher_outputs(teachers, (x, y), path, batch_size=100)
    # One teacher: read into memory; two: batches read from the mapped file.
    cached = keras_kd.load_teacher_cache(path, x, y, batch_size=64, seed=5, in_memory=not several)
    # The same batches, in the same order, without the cached logits.
    live = keras_kd.load_teacher_cache(path, x, y, batch_size=64, seed=5).map(
        lambda inputs, labels: (inputs[keras_kd.INPUTS_KEY], labels)
    )
    student = models.cnn_student(width=4)
    runs = []
    for data, teacher_arg in [(live, teachers), (cached, None)]:
        clone = keras.models.clone_model(student)
        clone.set_weights(student.get_weights())
        distiller = keras_kd.Distiller(clone, teacher=teacher_arg, teacher_weights=weights)
        distiller.compile(
            optimizer="adam", alpha=0.2, temperature=3.0,
            teacher_reduction="mean_kl" if several else "mean_probabilities",
        )
        runs.append((_fit(distiller, data), clone.get_weights()))
    (live_logs, live_weights), (cached_logs, cached_weights) = runs
    assert len(live_logs) == len(cached_logs) == 2 * 6
    for a, b in zip(live_logs, cached_logs):
        for key in ("loss", "distillation_loss", "student_loss"):
            assert abs(a[key] - b[key]) <= 1e-5, (key, a[key], b[key])
    assert live_logs[-1]["distillation_loss"] < live_logs[0]["distillation_loss"]
    for got, want in zip(cached_weights, live_weights):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_cached_run_does_not_call_the_teacher(tmp_path, fashion, teacher):
    x, y = fashion
    x, y = x[:128], y[:128]
    path = tmp_path / "teacher.kdcache"
    keras_kd.cache_teacher_outputs(teacher, x, path)
    calls = []

    class CountingTeacher(keras.Model):
        def call(self, inputs, training=False):
            calls.append(1)
            return teacher(inputs, training=training)

    counting = CountingTeacher()
    counting(x[:1])
    calls.clear()
    distiller = keras_kd.Distiller(models.cnn_student(width=4), teacher=counting)
    distiller.compile(optimizer="adam")
    distiller.fit(keras_kd.load_teacher_cache(path, x, y, batch_size=128), epochs=1, verbose=0)
    assert calls == []
    distiller.fit(x, y, batch_size=128, epochs=1, verbose=0)
    assert calls  # traced: the live path does call it


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_rebuild_matches_numpy(tmp_path, k):
    rng = np.random.default_rng(k)
    classes = 12
    teacher = keras.Sequential([keras.Input((6,)), keras.layers.Dense(classes)])
    x = rng.normal(0, 3, (50, 6)).astype("float32")
    path = tmp_path / "top_k.kdcache"
    header = keras_kd.cache_teacher_outputs(teacher, x, path, top_k=k)
    full = teacher.predict(x, verbose=0).astype("float64")
    rebuilt = keras_kd.TeacherCache(path).teacher_logits(np.arange(50))[:, 0]

    p = np.exp(numpy_log_softmax(full))
    top = np.argsort(-full, axis=-1)[:, :k]
    expected = np.empty_like(p)
    for row in range(len(p)):
        rest = (1.0 - p[row, top[row]].sum()) / (classes - k)
        expected[row] = rest
        expected[row, top[row]] = p[row, top[row]]
    np.testing.assert_allclose(np.exp(numpy_log_softmax(rebuilt)), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.exp(numpy_log_softmax(rebuilt)).sum(-1), 1.0, rtol=1e-6)
    # At any temperature the top-k classes keep their exact relative odds.
    rows = np.arange(len(p))[:, None]
    tempered = numpy_log_softmax(rebuilt, temperature=4.0)
    np.testing.assert_allclose(
        tempered[rows, top] - tempered[rows, top[:, :1]],
        (full[rows, top] - full[rows, top[:, :1]]) / 4.0,
        atol=1e-5,
    )
    assert header["record_bytes"] == k * 4 + k * 2 + 4
    assert os.path.getsize(path) == header["data_offset"] + 50 * header["record_bytes"]


def test_rebuild_top_k_logits_places_values():
    logits = keras_kd.rebuild_top_k_logits(
        np.array([[5.0, 4.0], [1.0, -2.0]]), np.array([[3, 0], [1, 2]]),
        np.array([-1.0, -3.0]), num_classes=4,
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(logits), [[4.0, -1.0, -1.0, 5.0], [-3.0, 1.0, -2.0, -3.0]]
    )


def test_float16_and_storage_sizes(tmp_path, fashion, teacher):
    x, _ = fashion
    full = keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "a")
    half = keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "b", dtype="float16")
    top5 = keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "c", top_k=5)
    assert full["data_bytes"] == len(x) * 10 * 4 == keras_kd.cache_storage_bytes(len(x), 10)
    assert half["data_bytes"] == len(x) * 10 * 2
    assert top5["data_bytes"] == len(x) * (5 * 4 + 5 * 2 + 4)
    exact = keras_kd.TeacherCache(tmp_path / "a").teacher_logits(np.arange(len(x)))
    rounded = keras_kd.TeacherCache(tmp_path / "b").teacher_logits(np.arange(len(x)))
    np.testing.assert_allclose(exact[:, 0], teacher.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(rounded, exact, rtol=2e-3, atol=2e-3)
    assert keras_kd.cache_storage_bytes(1_281_167, 1000) == 5_124_668_000
    assert keras_kd.cache_storage_bytes(1_281_167, 1000, top_k=5) == 1_281_167 * 34


@pytest.mark.slow
@pytest.mark.parametrize(
    "view, source, in_memory",
    [("all", "arrays", False), ("random", "arrays", True), (2, "stream", None), ("random", "stream", False)],
)
def test_augmented_views_replay_identically(tmp_path, fashion, teacher, view, source, in_memory):
    x, y = fashion
    x, y = x[:96], y[:96]
    path = tmp_path / "views.kdcache"
    header = keras_kd.cache_teacher_outputs(
        teacher, x, path, views=3, augment=flip_and_shift, seed=11, top_k=None
    )
    assert header["views"] == 3 and header["augment"].endswith("flip_and_shift")
    # Arrays are gathered a batch at a time, streams example by example;
    # the cache is read into memory or from the memory-mapped file.
    inputs = (x, y) if source == "arrays" else (tf.data.Dataset.from_tensor_slices((x, y)), None)
    data = keras_kd.load_teacher_cache(
        path, *inputs, batch_size=32, view=view, augment=flip_and_shift, seed=1,
        in_memory=in_memory,
    )
    seen = []
    for _ in range(2):  # two epochs: "random" draws new views
        for inputs, _ in data:
            images = inputs[keras_kd.INPUTS_KEY].numpy()
            # Teacher and student see the same view: its live logits are the cached ones.
            np.testing.assert_allclose(
                teacher(images, training=False), inputs[keras_kd.TEACHER_LOGITS_KEY], atol=1e-5
            )
            seen.append(images)
    seen = np.concatenate(seen)
    assert len(seen) == (2 * 3 * 96 if view == "all" else 2 * 96)
    # The views are augmented, not the raw images.
    assert not any(np.array_equal(seen[0], raw) for raw in x)
    if view == "all":
        distinct = {image.tobytes() for image in seen}
        assert len(distinct) == 3 * 96


def test_several_views_need_augment_and_the_same_function(tmp_path, fashion, teacher):
    x, y = fashion
    with pytest.raises(ValueError, match="views=3.*needs an `augment`"):
        keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "v", views=3)
    keras_kd.cache_teacher_outputs(teacher, x[:40], tmp_path / "v", views=2, augment=flip_and_shift)
    with pytest.raises(ValueError, match="built with augment=.*flip_and_shift.*Received: augment=None"):
        keras_kd.load_teacher_cache(tmp_path / "v", x[:40], y[:40])
    with pytest.raises(ValueError, match="Received: augment=.*other_augment"):
        keras_kd.load_teacher_cache(tmp_path / "v", x[:40], y[:40], augment=other_augment)
    with pytest.raises(ValueError, match=r"view index in \[0, 2\).*view=2"):
        keras_kd.load_teacher_cache(tmp_path / "v", x[:40], y[:40], augment=flip_and_shift, view=2)


def test_cache_for_another_teacher_is_rejected(tmp_path, fashion, teacher):
    x, y = fashion
    path = tmp_path / "teacher.kdcache"
    keras_kd.cache_teacher_outputs(teacher, x, path)
    keras_kd.load_teacher_cache(path, x, y, teacher=teacher)  # the right one passes
    stranger = models.cnn_teacher(width=8)
    with pytest.raises(ValueError, match=r"built for teacher\(s\) \['cnn_teacher'\] with other weights"):
        keras_kd.load_teacher_cache(path, x, y, teacher=stranger)


def test_cache_for_another_class_count_does_not_train(tmp_path, fashion, teacher):
    x, y = fashion
    path = tmp_path / "teacher.kdcache"
    keras_kd.cache_teacher_outputs(teacher, x, path)
    student = models.cnn_student(width=4, num_classes=5)
    before = [w.copy() for w in student.get_weights()]
    distiller = keras_kd.Distiller(student, teacher=None)
    distiller.compile(optimizer="adam")
    data = keras_kd.load_teacher_cache(path, x, y % 5, batch_size=64)
    with pytest.raises(ValueError, match="teacher output 0 has 10 classes, the student has 5"):
        distiller.fit(data, epochs=1, verbose=0)
    for old, new in zip(before, student.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_cache_for_another_dataset_is_rejected(tmp_path, fashion, teacher):
    x, y = fashion
    path = tmp_path / "teacher.kdcache"
    keras_kd.cache_teacher_outputs(teacher, x, path)
    with pytest.raises(ValueError, match="holds 384 examples, but `x` has 383"):
        keras_kd.load_teacher_cache(path, x[:-1], y[:-1])
    with pytest.raises(ValueError, match="inputs `x` differ from those teacher cache"):
        keras_kd.load_teacher_cache(path, x[::-1], y[::-1])
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(384, seed=1)
    with pytest.raises(ValueError, match="inputs `x` differ from those teacher cache"):
        keras_kd.load_teacher_cache(path, shuffled)
    # The same examples as a tf.data stream are accepted.
    stream = tf.data.Dataset.from_tensor_slices((x, y))
    batch = next(iter(keras_kd.load_teacher_cache(path, stream, batch_size=8, shuffle=False)))
    np.testing.assert_allclose(
        batch[0][keras_kd.TEACHER_LOGITS_KEY], teacher.predict(x[:8], verbose=0), atol=1e-5
    )


def _corrupt(path, offset, data):
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)


def test_truncated_or_corrupted_files_are_rejected(tmp_path, fashion, teacher):
    x, y = fashion
    path = tmp_path / "teacher.kdcache"
    header = keras_kd.cache_teacher_outputs(teacher, x, path)
    pristine = path.read_bytes()

    path.write_bytes(pristine[:-7])
    with pytest.raises(ValueError, match="truncated"):
        keras_kd.load_teacher_cache(path, x, y)

    path.write_bytes(pristine)
    _corrupt(path, header["data_offset"] + 1000, b"\x7f\x7f")
    with pytest.raises(ValueError, match="corrupted: the checksum"):
        keras_kd.load_teacher_cache(path, x, y)

    path.write_bytes(pristine)
    _corrupt(path, 20, b"\x00\xff")
    with pytest.raises(ValueError, match="header .* is corrupted"):
        keras_kd.TeacherCache(path)

    # Valid JSON whose record size disagrees with its layout.
    field = pristine.index(b'"record_bytes": ') + len(b'"record_bytes": ')
    path.write_bytes(pristine[:field] + b"9" + pristine[field + 1:])
    with pytest.raises(ValueError, match=r"header of teacher cache .* is inconsistent \(format version 2"):
        keras_kd.TeacherCache(path)

    path.write_bytes(b"PK\x03\x04" + pristine[4:])
    with pytest.raises(ValueError, match="not a keras-kd teacher cache"):
        keras_kd.TeacherCache(path)

    with pytest.raises(FileNotFoundError, match="No teacher cache"):
        keras_kd.TeacherCache(tmp_path / "missing.kdcache")


def test_interrupted_write_leaves_no_file(tmp_path, fashion, teacher):
    x, _ = fashion
    broken = x.copy()
    broken[300, 0, 0, 0] = np.nan
    stream = tf.data.Dataset.from_tensor_slices(broken).map(
        lambda image: tf.debugging.check_numerics(image, "bad pixel")
    )
    path = tmp_path / "teacher.kdcache"
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad pixel"):
        keras_kd.cache_teacher_outputs(teacher, stream, path, batch_size=64)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"top_k": 10}, ValueError, r"top_k.*\[1, 10\).*Received: top_k=10"),
        ({"top_k": 50}, ValueError, r"teacher with 10 classes.*top_k=50"),
        ({"top_k": 0}, ValueError, "top_k=0"),
        ({"top_k": 2.5}, ValueError, "top_k=2.5"),
        ({"dtype": "int8"}, ValueError, "dtype='int8'"),
        ({"views": 0}, ValueError, "views=0"),
        ({"augment": "flip"}, TypeError, "augment='flip'"),
        ({"teacher_outputs": "softmax"}, ValueError, "teacher_outputs='softmax'"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
    ],
)
def test_bad_cache_arguments(tmp_path, fashion, teacher, kwargs, error, match):
    x, _ = fashion
    with pytest.raises(error, match=match):
        keras_kd.cache_teacher_outputs(teacher, x[:16], tmp_path / "c", **kwargs)
    assert not (tmp_path / "c").exists()


def test_bad_teachers_and_datasets(tmp_path, fashion, teacher):
    x, _ = fashion
    with pytest.raises(TypeError, match="`teacher_or_teachers` must be a `keras.Model`"):
        keras_kd.cache_teacher_outputs("teacher", x, tmp_path / "c")
    with pytest.raises(ValueError, match="non-empty list"):
        keras_kd.cache_teacher_outputs([], x, tmp_path / "c")
    with pytest.raises(ValueError, match="is empty"):
        keras_kd.cache_teacher_outputs(teacher, x[:0], tmp_path / "c")
    with pytest.raises(TypeError, match="`dataset` must be a numpy array"):
        keras_kd.cache_teacher_outputs(teacher, "images/", tmp_path / "c")
    five = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
    with pytest.raises(ValueError, match="same number of classes"):
        keras_kd.cache_teacher_outputs([teacher, five], x, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_probability_teachers_store_log_probabilities(tmp_path, fashion, teacher):
    x, y = fashion
    softmax_teacher = keras.Sequential([teacher, keras.layers.Softmax()], name="softmax_teacher")
    path = tmp_path / "p.kdcache"
    keras_kd.cache_teacher_outputs(softmax_teacher, x, path, teacher_outputs="probabilities")
    stored = keras_kd.TeacherCache(path).teacher_logits(np.arange(len(x)))[:, 0]
    np.testing.assert_allclose(
        np.exp(numpy_log_softmax(stored)),
        np.exp(numpy_log_softmax(teacher.predict(x, verbose=0))),
        atol=1e-5,
    )
    assert keras_kd.read_teacher_cache_header(path)["teacher_outputs"] == "probabilities"


def test_subclassed_teacher_without_output_shape(tmp_path):
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.dense = keras.layers.Dense(7)

        def call(self, inputs, training=False):
            return self.dense(inputs)

    teacher = Subclassed()  # not built: it has neither weights nor shapes yet
    x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    header = keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "s", top_k=2)
    assert header["num_classes"] == 7 and header["teacher_names"] == ["subclassed"]
    keras_kd.load_teacher_cache(tmp_path / "s", x, teacher=teacher)
