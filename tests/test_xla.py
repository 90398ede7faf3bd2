"""XLA: `jit_compile` True, False and "auto" train alike, without retracing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from tests.scale_helpers import assert_weights_close, fashion_subset, tiny_teacher_and_student

# 200 examples in batches of 32: six full batches and a partial one of 8.
N, BATCH = 200, 32


class TraceCountingDistiller(keras_kd.Distiller):
    """Counts how often TensorFlow traces the (one) train step."""

    traces = 0

    def train_step(self, data):
        # Python code in a traced function runs once per trace.
        TraceCountingDistiller.traces += 1
        return super().train_step(data)


def train(jit_compile, epochs=1, steps_per_execution=1, distiller_class=keras_kd.Distiller):
    x, y = fashion_subset(N)
    teacher, student = tiny_teacher_and_student()
    distiller = distiller_class(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        temperature=4.0,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    history = distiller.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    return distiller, student.get_weights(), history.history


@pytest.fixture(scope="module")
def reference():
    return train(False)


@pytest.mark.parametrize("jit_compile", [True, "auto"])
def test_jit_compile_gives_the_same_result(reference, jit_compile):
    distiller, weights, history = train(jit_compile)
    if jit_compile is True:
        assert distiller.jit_compile is True
    _, expected_weights, expected_history = reference
    # XLA may fuse and reorder float32 arithmetic: equal to float rounding.
    assert_weights_close(expected_weights, weights, rtol=1e-4, atol=1e-5)
    assert history.keys() == expected_history.keys()
    for name in expected_history:
        np.testing.assert_allclose(history[name], expected_history[name], rtol=1e-4, err_msg=name)


def test_training_moved_the_weights(reference):
    _, student = tiny_teacher_and_student()
    moved = [np.abs(a - b).max() for a, b in zip(reference[1], student.get_weights())]
    assert max(moved) > 1e-3


class TraceLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.traces_after_batch = []

    def on_train_batch_end(self, batch, logs=None):
        self.traces_after_batch.append(TraceCountingDistiller.traces)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_no_retracing_over_epochs_ending_in_a_partial_batch(jit_compile):
    x, y = fashion_subset(N)
    teacher, student = tiny_teacher_and_student()
    distiller = TraceCountingDistiller(student, teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"], jit_compile=jit_compile)
    TraceCountingDistiller.traces = 0
    log = TraceLog()
    distiller.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[log])
    # 2 epochs x 7 batches, the last of each epoch holding 8 examples.
    assert len(log.traces_after_batch) == 14
    # TensorFlow traces a function twice when its first trace creates
    # variables (Keras builds the optimizer and metrics there); plain
    # `keras.Model.fit` does the same. After that: never again.
    assert log.traces_after_batch[0] <= 2
    assert set(log.traces_after_batch) == {log.traces_after_batch[0]}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_steps_per_execution_gives_the_same_result(reference, jit_compile):
    # 7 batches per epoch in executions of 3: 3 + 3 + 1.
    distiller, weights, history = train(jit_compile, steps_per_execution=3)
    assert distiller.steps_per_execution == 3
    _, expected_weights, expected_history = reference
    assert_weights_close(expected_weights, weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(history["loss"], expected_history["loss"], rtol=1e-4)


def test_train_step_has_no_python_or_numpy_ops():
    """A step that TPUs and XLA can compile: no py_function, no numpy_function."""
    distiller, _, _ = train(False)
    x, y = fashion_subset(8)
    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32), tf.TensorSpec((None,), tf.int32))
    graph = tf.function(distiller.train_step).get_concrete_function(spec).graph
    op_types = {op.type for op in graph.get_operations()}
    for function in graph._functions.values():
        op_types |= {node.op for node in function.definition.node_def}
    assert op_types, "nothing was traced"
    assert not op_types & {"PyFunc", "EagerPyFunc", "PyFuncStateless", "NumpyFunction"}
