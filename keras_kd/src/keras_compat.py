"""Every private Keras and TensorFlow API that keras_kd uses, in one place.

Each entry says why no public API does the job. `tests/test_keras_compat.py`
checks each one against the installed versions, so that an upgrade that
moves or changes one fails there, by name, instead of somewhere deep in a
training step. Everything else in keras_kd uses public API only.

The floor (`setup.cfg`: keras 3.10, tensorflow 2.18) is the oldest pair
`.ci/run` tests, in a second environment (`.ci/constraints-oldest.txt`):
`Trainer._maybe_symbolic_build` arrived in Keras 3.5, `get_input_signature`
in 3.8 and keeps dict inputs a dict from 3.10; the public
`keras.quantizers.fake_quant_with_min_max_vars` arrived in 3.9. The helpers
at the end smooth over what still differs between 3.10 and the newest.
"""

from typing import Optional

import keras
import tensorflow as tf

# `Distiller.compile` stores its own arguments (alpha, temperature, terms, ...)
# as the compile config Keras saves with a `.keras` file. Keras's `compile`
# does the same with this class; `get_compile_config` serializes it and
# `compile_from_config` gets its contents back.
from keras.src.saving.serialization_lib import SerializableDict  # noqa: F401

# The compiled metrics container: the Distiller's subclass weighs metrics by
# the label mask (unlabelled rows and padding are no examples). Keras has no
# public hook for masking compiled metrics.
from keras.src.trainers.compile_utils import CompileMetrics  # noqa: F401

# A scope in which assigning a metric container to a model attribute does not
# track it a second time (Keras's trainer uses it for the same attribute).
from keras.src.utils.tracking import DotNotTrackScope as no_tracking  # noqa: F401

# The `keras.Model` methods the Distiller overrides: Keras's own fit calls
# them, and there is no public extension point for what they do (see the
# overrides' comments in `keras_kd.src.distiller.distiller`).
TRAINER_HOOKS = ("_maybe_symbolic_build", "_get_metrics_result_or_logs")


def compile_metrics(model: keras.Model):
    """The model's compiled metrics container (`model._compile_metrics`);
    `model.metrics` flattens it, and the Distiller must replace it."""
    return model._compile_metrics


def set_compile_metrics(model: keras.Model, container) -> None:
    """Replaces the compiled metrics container, untracked as Keras does."""
    with no_tracking():
        model._compile_metrics = container


def flatten_targets(container, values):
    """`CompileMetrics._flatten_y`: labels or predictions as one flat list,
    aligned with the container's per-output metric lists."""
    return container._flatten_y(values)


def metric_lists(container):
    """`(metrics, weighted_metrics)`: per-output lists of the compiled
    metrics, built by `CompileMetrics.build`."""
    return container._flat_metrics, container._flat_weighted_metrics


def loss_tracker(model: keras.Model):
    """The `Mean` that Keras logs as `loss` (`model._loss_tracker`), reset
    and aggregated across replicas with the other metrics."""
    return model._loss_tracker


def set_compile_config(model: keras.Model, config: dict) -> None:
    """Sets what `get_compile_config` returns (`model._compile_config`)."""
    model._compile_config = SerializableDict(**config)


def creation_strategy(model: keras.Model):
    """The strategy under whose scope `model` was created, or `None` when no
    scope was entered (`model._distribute_strategy`); the public
    `distribute_strategy` falls back to the current strategy instead."""
    return model._distribute_strategy


def values_strategy(values) -> Optional[tf.distribute.Strategy]:
    """The strategy that owns distributed variable values, or `None` for a
    plain variable: tf.distribute has no public accessor."""
    if isinstance(values, tf.distribute.DistributedValues):
        return values._distribute_strategy
    return None


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several workers (Keras's own trainer asks
    `strategy.extended._in_multi_worker_mode()` too)."""
    check = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return bool(check is not None and check())


def supports_no_merge_call() -> bool:
    """Whether the current strategy's `apply_gradients` runs without a
    `merge_call` (as `LossScaleOptimizer` asks before a conditional step)."""
    return tf.__internal__.distribute.strategy_supports_no_merge_call()


def dataset_batch_size(dataset: tf.data.Dataset) -> int:
    """The batch size of a batched `tf.data.Dataset` whose element spec does
    not say it (tf.distribute's own rebatching helper); -1 when unknown."""
    from tensorflow.python.data.experimental.ops import distribute

    return int(distribute.compute_batch_size(dataset))


def keras_mask(tensor):
    """The Keras mask attached to a layer's output (`Embedding(mask_zero=True)`
    propagates one), or `None`: Keras reads it internally, with no public
    accessor."""
    from keras.src.backend import get_keras_mask

    return get_keras_mask(tensor)


def call_nodes(layer: keras.layers.Layer) -> list:
    """The layer's calls in a functional graph (`layer._inbound_nodes`):
    each node's `input_tensors`, `operation` and `parent_nodes` are how a
    feature or a BatchNormalization's input is traced back to its layer."""
    return list(getattr(layer, "_inbound_nodes", []))


def keras_history(tensor):
    """`(layer, node_index, tensor_index)` of the call that produced a
    symbolic tensor (`tensor._keras_history`): how a functional graph is
    walked backwards, to rebuild it with quantized layers."""
    return tensor._keras_history


def sequential_is_functional(model: keras.Sequential) -> bool:
    """Whether a Sequential model has a known input, and so a functional
    graph (`model._functional`) with `inputs` and `outputs`."""
    return bool(getattr(model, "_functional", None))


def causal_padding(layer: keras.layers.Layer):
    """The padding a `Conv1D(padding="causal")` adds on the left
    (`layer._compute_causal_padding()`), so that its quantized twin can pad
    and run a valid convolution as LiteRT does."""
    return layer._compute_causal_padding()


def input_signature(model: keras.Model):
    """The input specs Keras's own `export` derives for a model, from its
    inputs or its build shapes (`keras.src.export.export_utils`)."""
    from keras.src.export.export_utils import get_input_signature

    return get_input_signature(model)


# ----------------------------------------- differences between Keras versions


def _version(text: str) -> tuple:
    """`"3.12.0rc1"` as `(3, 12, 0)`."""
    parts = []
    for part in text.split(".")[:3]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        parts.append(int(digits or 0))
    return tuple(parts)


#: The installed Keras as `(major, minor, patch)`.
KERAS_VERSION = _version(keras.__version__)

#: `keras.distillation` appeared in Keras 3.12; keras_kd's adapters of its
#: losses need it, nothing else does.
HAS_KERAS_DISTILLATION = KERAS_VERSION >= (3, 12)

KERAS_DISTILLATION_MISSING = (
    f"keras.distillation needs Keras 3.12 or newer; this is Keras "
    f"{keras.__version__}. keras_kd's own terms (HintonKD, features, ...) "
    f"work without it."
)


def first_epoch_batches(iterator):
    """The batches of the first step of the `EpochIterator` that
    `_maybe_symbolic_build(iterator=...)` receives: it yields `(step,
    batches)` in Keras 3.10 and `(begin_step, end_step, batches)` from 3.11.
    `None` for an empty epoch."""
    for item in iterator:
        return item[-1]
    return None


def metrics_result(results: dict) -> dict:
    """`results` as `Model.get_metrics_result()` returns them: Python floats
    before Keras 3.14 (which converts in `evaluate` instead). The Distiller
    overrides `get_metrics_result`, so it converts where Keras did."""
    if KERAS_VERSION >= (3, 14):
        return results
    from keras.src.utils.python_utils import pythonify_logs

    return pythonify_logs(results)
