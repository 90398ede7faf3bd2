"""Feature distillation, attention transfer and DKD: math, wiring, bad input."""

import math

import numpy as np
import pytest

import keras
import keras_kd
from keras_kd.src.data import datasets
from keras_kd.src.terms import losses
from keras_kd.src.models import models

from conftest import numpy_kd, numpy_log_softmax


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def fashion_small():
    """A real Fashion-MNIST subset: 2,000 training and 500 test images."""
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist()
    return (x[:2000], y[:2000]), (x_test[:500], y_test[:500])


# ------------------------------------------------------------ numpy references


def numpy_attention(features, p=2.0):
    f = np.asarray(features, np.float64)
    a = (np.abs(f) ** p).mean(-1).reshape(f.shape[0], -1)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def numpy_dkd(teacher, student, labels, temperature, alpha, beta):
    """DKD written out with probabilities, in float64, per example."""
    p = np.exp(numpy_log_softmax(teacher, temperature))
    q = np.exp(numpy_log_softmax(student, temperature))
    out = []
    for i, y in enumerate(labels):
        pt, qt = p[i, y], q[i, y]
        tckd = pt * np.log(pt / qt) + (1 - pt) * np.log((1 - pt) / (1 - qt))
        p_hat = np.delete(p[i], y) / (1 - pt)
        q_hat = np.delete(q[i], y) / (1 - qt)
        nckd = (p_hat * np.log(p_hat / q_hat)).sum()
        out.append(temperature**2 * (alpha * tckd + beta * nckd))
    return np.array(out)


def test_feature_mse_matches_numpy():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(2, 3, 5, 5, 4)).astype("float32")
    np.testing.assert_allclose(
        _np(losses.feature_mean_squared_error(t, s)), ((s - t) ** 2).mean((1, 2, 3)), rtol=1e-5
    )


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_attention_transfer_matches_numpy(p):
    rng = np.random.default_rng(1)
    t = rng.normal(size=(3, 6, 6, 16)).astype("float32")
    s = rng.normal(size=(3, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(_np(losses.spatial_attention_map(t, p)), numpy_attention(t, p), rtol=1e-5)
    expected = ((numpy_attention(s, p) - numpy_attention(t, p)) ** 2).mean(-1)
    np.testing.assert_allclose(
        _np(losses.attention_transfer_distance(t, s, p)), expected, rtol=1e-4, atol=1e-9
    )


@pytest.mark.parametrize("temperature, alpha, beta", [(1.0, 1.0, 8.0), (4.0, 0.5, 2.0), (10.0, 1.0, 0.0)])
def test_dkd_matches_numpy(temperature, alpha, beta):
    rng = np.random.default_rng(2)
    t = rng.normal(0, 3, (16, 10)).astype("float32")
    s = rng.normal(0, 3, (16, 10)).astype("float32")
    y = rng.integers(0, 10, 16)
    got = _np(losses.decoupled_kd(t, s, y, alpha, beta, temperature))
    # float32 against float64, scaled by T**2.
    np.testing.assert_allclose(got, numpy_dkd(t, s, y, temperature, alpha, beta), rtol=1e-3, atol=1e-6 * temperature**2)
    # The same labels one-hot, through the term.
    term = keras_kd.DecoupledKD(alpha=alpha, beta=beta, temperature=temperature)
    one_hot = np.eye(10, dtype="float32")[y]
    np.testing.assert_allclose(_np(term(s, [t], labels=one_hot)), got, rtol=1e-5, atol=1e-6)


def test_dkd_decomposes_hinton_kd():
    # Zhao et al.'s identity: KD = TCKD + (1 - p_t) * NCKD.
    rng = np.random.default_rng(3)
    t = rng.normal(0, 2, (8, 5)).astype("float32")
    s = rng.normal(0, 2, (8, 5)).astype("float32")
    y = rng.integers(0, 5, 8)
    tckd, nckd = losses.decoupled_kd_components(t, s, y, temperature=3.0)
    p_target = np.exp(numpy_log_softmax(t, 3.0))[np.arange(8), y]
    np.testing.assert_allclose(
        _np(tckd) + (1 - p_target) * _np(nckd), numpy_kd(t, s, 3.0), rtol=1e-4, atol=1e-6
    )


def test_dkd_finite_for_confident_logits_in_float16():
    t = np.array([[60.0, -60.0, 0.0]], dtype="float16")
    s = np.array([[-60.0, 60.0, 0.0]], dtype="float16")
    for y in ([0], [1]):
        value = _np(losses.decoupled_kd(t, s, np.array(y), temperature=1.0))
        assert np.all(np.isfinite(value)) and value.dtype == np.float32, value


def test_hint_loss_matches_numpy_through_its_adapter():
    rng = np.random.default_rng(4)
    s = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    t = rng.normal(size=(2, 4, 4, 5)).astype("float32")
    term = keras_kd.HintLoss(student_layer="a", teacher_layer="b")
    got = _np(term(np.zeros((2, 2)), [], student_features={"a": s}, teacher_features={"b": t}))
    kernel, bias = (_np(w) for w in term.adapters[0].weights)
    assert kernel.shape == (1, 1, 3, 5)
    adapted = s @ kernel[0, 0] + bias
    np.testing.assert_allclose(got, ((adapted - t) ** 2).mean((1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize(
    "term",
    [
        keras_kd.HintLoss(feature_pairs={"block2": "block2"}, adapter=None, loss_weight=0.5),
        keras_kd.AttentionTransfer(feature_pairs=[("block1", "block1"), ("block2", "block2")], p=1.5),
        keras_kd.DecoupledKD(alpha=0.5, beta=4.0, temperature=2.0, name="dkd2"),
    ],
    ids=["hint", "attention", "dkd"],
)
def test_terms_serialize(term):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert type(clone) is type(term)
    assert clone.get_config() == term.get_config()
    assert list(clone.student_feature_names) == list(term.student_feature_names)


# ------------------------------------------------------------------ wiring


def _dense_models(sequential):
    """Small MLPs on flattened images, as Sequential or Functional models."""

    def make(width, prefix):
        layers = [
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(width, activation="relu", name=f"{prefix}hidden"),
            keras.layers.Dense(10, name="logits"),
        ]
        if sequential:
            return keras.Sequential([keras.Input((28, 28, 1)), *layers])
        inputs = keras.Input((28, 28, 1))
        x = inputs
        for layer in layers:
            x = layer(x)
        return keras.Model(inputs, x)

    return make(16, "s_"), make(64, "t_")


@pytest.mark.parametrize("sequential", [True, False], ids=["sequential", "functional"])
def test_hint_on_dense_features_trains_adapter_not_student_architecture(sequential, fashion_small):
    (x, y), _ = fashion_small
    student, teacher = _dense_models(sequential)
    params = student.count_params()
    distiller = keras_kd.Distiller(student, teacher)
    hint = keras_kd.HintLoss(feature_pairs={"s_hidden": "t_hidden"})
    distiller.compile(optimizer="adam", distillation_terms=[hint])
    adapter = hint.adapters[0]
    assert isinstance(adapter, keras.layers.Dense) and adapter.units == 64
    before = _np(adapter.kernel).copy()
    distiller.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    assert not np.allclose(_np(adapter.kernel), before)
    assert student.count_params() == params
    assert any(w is adapter.kernel for w in distiller.trainable_weights)
    assert not any(w is adapter.kernel for w in student.weights)


def test_feature_distiller_saves_and_loads(tmp_path, fashion_small):
    (x, y), _ = fashion_small
    distiller = keras_kd.Distiller(models.cnn_student(), models.cnn_teacher())
    distiller.compile(
        optimizer="adam",
        distillation_terms=[
            keras_kd.HintLoss(student_layer="block2", teacher_layer="block2"),
            keras_kd.AttentionTransfer(student_layer="block1", teacher_layer="block1", loss_weight=10.0),
        ],
    )
    distiller.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        _np(loaded.terms[2].adapters[0].kernel), _np(distiller.terms[2].adapters[0].kernel)
    )
    assert loaded.terms[3].loss_weight.numpy() == 10.0
    # The student alone comes back unchanged, with no adapter in it.
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0), distiller.predict(x[:8], verbose=0), atol=1e-5)
    assert len(loaded.student.weights) == len(distiller.student.weights)


def test_term_losses_match_the_logged_step_values(fashion_small):
    (x, y), _ = fashion_small
    distiller = keras_kd.Distiller(models.cnn_student(), models.cnn_teacher())
    distiller.compile(
        optimizer=keras.optimizers.SGD(0.0),
        distillation_terms=[keras_kd.AttentionTransfer(student_layer="block2", teacher_layer="block2")],
    )
    values = distiller.term_losses(x[:64], y[:64])
    logs = distiller.fit(x[:64], y[:64], batch_size=64, epochs=1, verbose=0, shuffle=False).history
    for name in ("student_loss", "distillation_loss", "attention_transfer"):
        np.testing.assert_allclose(logs[name][0], _np(values[name]), rtol=1e-4)


# ------------------------------------------------------------------ bad input


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, name="hidden")
        self.out = keras.layers.Dense(10)

    def call(self, x):
        return self.out(self.hidden(keras.ops.reshape(x, (-1, 784))))


def _compile_with(term, student=None, teacher="cnn"):
    student = student or models.cnn_student()
    teacher = models.cnn_teacher() if teacher == "cnn" else teacher
    distiller = keras_kd.Distiller(student, teacher)
    distiller.compile(distillation_terms=[term])
    return distiller


def test_unknown_layer_lists_available_names():
    with pytest.raises(ValueError, match=r"no layer named 'block3'.*Available layer names: \['image', 'block1'"):
        _compile_with(keras_kd.HintLoss(student_layer="block3", teacher_layer="block2"))


def test_subclassed_model_explains_what_to_do():
    student = _Subclassed()
    student(np.zeros((1, 28, 28, 1), "float32"))  # built by a call, as users do
    with pytest.raises(ValueError, match="subclassed model.*Functional API"):
        _compile_with(keras_kd.HintLoss(student_layer="hidden", teacher_layer="features"), student=student)


@pytest.mark.parametrize(
    "term, match",
    [
        (keras_kd.HintLoss(student_layer="block1", teacher_layer="block2"), r"spatial sizes differ"),
        (keras_kd.HintLoss(student_layer="features", teacher_layer="block2"), r"ranks differ"),
        (keras_kd.HintLoss(student_layer="block2", teacher_layer="block2", adapter=None), r"channels differ"),
        (keras_kd.AttentionTransfer(student_layer="block1", teacher_layer="block2"), r"same spatial size"),
        (keras_kd.AttentionTransfer(student_layer="features", teacher_layer="features"), r"same spatial size"),
    ],
    ids=["spatial", "rank", "no-adapter", "attention-spatial", "attention-dense"],
)
def test_feature_shapes_no_adapter_can_map(term, match):
    with pytest.raises(ValueError, match=match):
        _compile_with(term)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_loss_weight(bad):
    with pytest.raises(ValueError, match="loss_weight"):
        keras_kd.HintLoss(student_layer="a", teacher_layer="b", loss_weight=bad)
    term = keras_kd.DecoupledKD()
    with pytest.raises(ValueError, match="loss_weight"):
        term.loss_weight = bad
    with pytest.raises(ValueError, match="beta"):
        keras_kd.DecoupledKD(beta=bad)


def test_two_terms_with_the_same_name():
    distiller = keras_kd.Distiller(models.cnn_student(), models.cnn_teacher())
    with pytest.raises(ValueError, match=r"unique name.*\['hint_loss'\]"):
        distiller.compile(
            distillation_terms=[
                keras_kd.HintLoss(student_layer="block1", teacher_layer="block1"),
                keras_kd.HintLoss(student_layer="block2", teacher_layer="block2"),
            ]
        )


def test_feature_terms_need_one_live_teacher():
    with pytest.raises(ValueError, match="exactly one live teacher.*teacher=None"):
        _compile_with(keras_kd.AttentionTransfer(student_layer="block1", teacher_layer="block1"), teacher=None)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({}, ValueError),
        ({"student_layer": "a"}, ValueError),
        ({"student_layer": "a", "teacher_layer": "b", "feature_pairs": {"a": "b"}}, ValueError),
        ({"feature_pairs": {}}, ValueError),
        ({"feature_pairs": ["block1"]}, TypeError),
    ],
)
def test_bad_feature_pairs(kwargs, error):
    with pytest.raises(error, match="feature_pairs|student_layer|layers to match"):
        keras_kd.HintLoss(**kwargs)


# ------------------------------------------------ each method trains for real


@pytest.fixture(scope="module")
def trained_teacher(fashion_small):
    """`cnn_teacher` trained briefly (about 78% test accuracy)."""
    (x, y), _ = fashion_small
    keras.utils.set_random_seed(0)
    teacher = models.cnn_teacher()
    for layer in teacher.layers:
        # A short schedule leaves the default moving statistics (momentum
        # 0.99) far from the data, and the teacher useless in inference mode.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    teacher.fit(x, y, batch_size=32, epochs=2, verbose=0)
    return teacher


# name of the logged term, alpha, the extra terms.
METHODS = {
    "hinton": ("distillation_loss", 0.1, lambda: []),
    "hint": ("hint_loss", 0.5, lambda: [keras_kd.HintLoss(student_layer="block2", teacher_layer="block2")]),
    "attention": (
        "attention_transfer",
        0.5,
        lambda: [keras_kd.AttentionTransfer(feature_pairs={"block1": "block1", "block2": "block2"}, loss_weight=500.0)],
    ),
    # As in the paper: cross-entropy with weight 1 plus DKD, no Hinton term.
    "dkd": ("dkd", 1.0, lambda: [keras_kd.DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_loss_falls_on_fashion_mnist(method, trained_teacher, fashion_small):
    (x, y), (x_test, y_test) = fashion_small
    name, alpha, make_terms = METHODS[method]
    distiller = keras_kd.Distiller(models.cnn_student(), trained_teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        metrics=["accuracy"],
        alpha=alpha,
        temperature=4.0,
        distillation_terms=make_terms(),
    )
    # Measured on held-out images, before and after one epoch.
    before = float(distiller.term_losses(x_test, y_test)[name])
    distiller.fit(x, y, batch_size=64, epochs=1, verbose=0)
    after = float(distiller.term_losses(x_test, y_test)[name])
    assert math.isfinite(before) and after < 0.9 * before, (before, after)
    # Well above chance (10%) after one epoch on 2,000 images.
    assert distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"] > 0.2


@pytest.mark.slow
def test_feature_terms_under_mirrored_strategy_match_one_device(tmp_path):
    """Hint adapters, attention maps and DKD give the one-device result on
    two replicas, uneven last batch included (per-example losses, global
    mean)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    output = tmp_path / "runs.npz"
    completed = subprocess.run(
        [sys.executable, str(root / "tests" / "feature_distribute_worker.py"), str(output)],
        env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    runs = np.load(output)
    assert int(runs["replicas"]) == 2
    weights = sorted(k for k in runs if k.startswith("one_w"))
    # Student (4 conv/dense layers, 2 weights each) plus the hint adapter.
    assert len(weights) == 10
    for key in weights:
        np.testing.assert_allclose(runs["two" + key[3:]], runs[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for key in (k for k in runs if k.startswith("one_log_")):
        np.testing.assert_allclose(runs["two" + key[3:]], runs[key], rtol=1e-4, err_msg=key)
