"""Each private Keras/TensorFlow API of `keras_kd.src.keras_compat`, checked
against the installed versions: an upgrade that moves or changes one fails
here, by name."""

import inspect

import importlib.util

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_kd
from keras_kd.src import keras_compat


def small_model():
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))


def test_serializable_dict_round_trips_through_keras_serialization():
    config = keras_compat.SerializableDict(alpha=0.5, optimizer=keras.optimizers.Adam(1e-3))
    restored = keras.saving.deserialize_keras_object(config.serialize())
    assert restored["alpha"] == 0.5
    assert isinstance(restored["optimizer"], keras.optimizers.Adam)


def test_compiled_metrics_container_and_its_flat_lists():
    model = small_model()
    model.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mse"])
    container = keras_compat.compile_metrics(model)
    assert isinstance(container, keras_compat.CompileMetrics)
    y = np.zeros((2, 2), "float32")
    container.build(y, y)
    flat = keras_compat.flatten_targets(container, y)
    assert len(flat) == 1 and tuple(flat[0].shape) == (2, 2)
    metrics, weighted = keras_compat.metric_lists(container)
    # One entry per output, with `update_state(y_true, y_pred, sample_weight)`.
    assert [m.name for m in metrics[0].metrics] == ["mae"]
    assert [m.name for m in weighted[0].metrics] == ["mse"]
    metrics[0].update_state(y, y + 1.0, sample_weight=np.array([1.0, 0.0], "float32"))
    assert float(metrics[0].metrics[0].result()) == pytest.approx(1.0)
    replacement = keras_compat.CompileMetrics(["mae"], None, output_names=container.output_names)
    keras_compat.set_compile_metrics(model, replacement)
    assert keras_compat.compile_metrics(model) is replacement


def test_loss_tracker_is_the_metric_logged_as_loss():
    model = small_model()
    model.compile("sgd", "mse")
    tracker = keras_compat.loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker.name == "loss"
    assert tracker in model.metrics


def test_set_compile_config_is_what_get_compile_config_returns():
    model = small_model()
    model.compile("sgd", "mse")
    keras_compat.set_compile_config(model, {"alpha": 0.25, "loss": "mse"})
    assert model.get_compile_config() == {"alpha": 0.25, "loss": "mse"}


def test_creation_strategy_and_values_strategy():
    assert keras_compat.creation_strategy(small_model()) is None
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = small_model()
    assert keras_compat.creation_strategy(model) is strategy
    kernel = model.layers[1].kernel
    assert keras_compat.values_strategy(getattr(kernel, "value", kernel)) is strategy
    assert keras_compat.values_strategy(tf.Variable(1.0)) is None


def test_multi_worker_mode_and_merge_call_queries():
    assert keras_compat.in_multi_worker_mode(tf.distribute.get_strategy()) is False
    assert keras_compat.in_multi_worker_mode(tf.distribute.MirroredStrategy(["/cpu:0"])) is False
    assert callable(tf.distribute.get_strategy().extended._in_multi_worker_mode)
    assert isinstance(keras_compat.supports_no_merge_call(), bool)


def test_dataset_batch_size_reads_a_batch_size_the_spec_hides():
    dataset = tf.data.Dataset.range(10).batch(4)
    assert dataset.element_spec.shape[0] is None
    assert keras_compat.dataset_batch_size(dataset) == 4


def test_keras_mask_of_an_embedding_output():
    tokens = np.array([[3, 1, 0, 0]], "int32")
    embedded = keras.layers.Embedding(5, 2, mask_zero=True)(tokens)
    np.testing.assert_array_equal(keras_compat.keras_mask(embedded), [[True, True, False, False]])
    assert keras_compat.keras_mask(keras.ops.ones((1, 2))) is None


def test_call_nodes_trace_a_functional_graph():
    model = small_model()
    (node,) = keras_compat.call_nodes(model.get_layer("logits"))
    assert node.operation is model.get_layer("logits")
    (tensor,) = node.input_tensors
    assert tensor is model.get_layer("hidden").output
    assert keras_compat.call_nodes(keras.layers.Dense(2)) == []


def test_input_signature_of_a_functional_model():
    (spec,) = keras.tree.flatten(keras_compat.input_signature(small_model()))
    assert tuple(spec.shape) == (None, 4)


@pytest.mark.parametrize("hook", keras_compat.TRAINER_HOOKS)
def test_the_trainer_hooks_the_distiller_overrides_exist(hook):
    method = getattr(keras.Model, hook)
    assert callable(method)
    expected = {"_maybe_symbolic_build": ["self", "iterator", "data_batch"],
                "_get_metrics_result_or_logs": ["self", "logs"]}[hook]
    assert list(inspect.signature(method).parameters) == expected


# ------------------------------------------ differences between Keras versions


def test_version_parsing():
    assert keras_compat._version("3.10.0") == (3, 10, 0)
    assert keras_compat._version("3.15.1.dev2025") == (3, 15, 1)
    assert keras_compat._version("3.12.0rc1") == (3, 12, 0)
    assert keras_compat.KERAS_VERSION == keras_compat._version(keras.__version__)


def test_has_keras_distillation_matches_the_installed_keras():
    found = importlib.util.find_spec("keras.distillation") is not None
    assert keras_compat.HAS_KERAS_DISTILLATION == found


@pytest.mark.skipif(keras_compat.HAS_KERAS_DISTILLATION, reason="keras.distillation is installed")
def test_keras_distillation_adapters_say_which_keras_they_need():
    with pytest.raises(ImportError, match=r"Keras 3\.12"):
        keras_kd.KerasLogitsDistillation(object())
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with pytest.raises(ImportError, match=r"Keras 3\.12"):
        keras_kd.Distiller(teacher=model, student=model, distillation_losses=[object()])


def test_first_epoch_batches_reads_the_tf_epoch_iterator():
    # Private: the object `_maybe_symbolic_build(iterator=...)` receives.
    from keras.src.backend.tensorflow.trainer import TFEpochIterator

    iterator = TFEpochIterator(
        distribute_strategy=tf.distribute.get_strategy(), x=np.zeros((8, 3), "float32"),
        batch_size=4,
    )
    batch = keras.tree.flatten(next(keras_compat.first_epoch_batches(iterator)))[0]
    assert tuple(batch.shape) == (4, 3)


def test_the_symbolic_build_override_runs_under_a_strategy(monkeypatch):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    seen = []
    original = keras_compat.first_epoch_batches

    def spy(iterator):
        seen.append(True)
        return original(iterator)

    with strategy.scope():
        student = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        teacher = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        distiller = keras_kd.Distiller(student=student, teacher=teacher)
        distiller.compile(optimizer="sgd", metrics=["accuracy"])
    monkeypatch.setattr(keras_compat, "first_epoch_batches", spy)
    distiller.fit(np.zeros((8, 3), "float32"), np.zeros((8,), "int32"), batch_size=4,
                  epochs=1, verbose=0)
    assert seen


def test_evaluate_returns_python_numbers_as_keras_does():
    # Keras < 3.14 converts in get_metrics_result (which the Distiller
    # overrides), Keras 3.14+ in evaluate.
    student = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    teacher = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="sgd", metrics=["accuracy"])
    x, y = np.zeros((8, 3), "float32"), np.zeros((8,), "int32")
    results = distiller.evaluate(x, y, verbose=0, return_dict=True)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    expected = plain.evaluate(x, y, verbose=0, return_dict=True)
    assert results and {type(v) for v in expected.values()} == {type(v) for v in results.values()}
