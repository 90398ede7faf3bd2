"""Checks that keep bad inputs from training a student silently wrong.

Two kinds live here:

- host checks, run in Python before any weight changes: label and sample
  weight arrays, dataset element specs, and a numerical probe of the models
  (a softmax hidden in a `Lambda` or a nested model is found by its output,
  not by the last layer's name);
- step checks, for what only the step sees (a `tf.data` pipeline, a teacher
  that outputs NaN). In-graph asserts vanish under XLA (`jit_compile=True`),
  so the step never asserts: it counts the bad examples, neutralises them
  so that nothing turns into NaN, skips the optimizer update of a batch that
  had any, and `HealthCheck` raises on the host after the batch.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd.src import keras_compat
from keras_kd.src.utils.keys import UNLABELED

#: What the step counts, in the order of `StepHealth`'s vector.
INVALID_LABELS, INVALID_WEIGHTS, NONFINITE_TEACHER, NOT_PROBABILITIES, WEIGHTED_EXAMPLES = range(5)
_NUM_COUNTS = 5

#: Rows of probabilities must sum to 1 within this (float16 and bfloat16
#: round a softmax's sum by up to about 1e-2).
_PROBABILITY_TOLERANCE = 2e-2

#: Rows the numerical probe runs the models on.
_PROBE_ROWS = 8


# --------------------------------------------------------------- host checks

def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value):
    """A numpy scalar as the Python value it holds (`2.5`, not `np.float64(2.5)`)."""
    return value.item() if isinstance(value, np.generic) else value


def as_label_array(labels) -> Optional[np.ndarray]:
    """Labels as a numpy array, or None when they are not an array-like."""
    if labels is None or isinstance(labels, (tf.data.Dataset, dict)):
        return None
    if isinstance(labels, tf.Tensor):
        return labels.numpy()
    if isinstance(labels, (list, tuple)) or hasattr(labels, "shape"):
        try:
            return np.asarray(labels)
        except (TypeError, ValueError):
            return None
    return None


def _positions_text(positions: int, last: Optional[str] = None) -> str:
    """A label shape in words: `(N,)`, `(N, sequence)`, `(N, 5)`, ..."""
    axes = ["N"] + (["sequence"] if positions == 2 else [f"d{i}" for i in range(1, positions)])
    if last is not None:
        axes.append(last)
    return "(N,)" if len(axes) == 1 else "(" + ", ".join(axes) + ")"


def check_label_array(
    labels, classes: Optional[int], argument: str, output_rank: int = 2
) -> Optional[str]:
    """Raises a `ValueError` for labels the student cannot learn from.

    Returns `"sparse"` or `"one_hot"` (None when nothing could be checked).
    Accepted: integer class indices in `[0, classes)` or `UNLABELED`, shaped
    `(N,)` or `(N, 1)` (as `keras.datasets.cifar10` ships them), integral
    floats, and one-hot (or soft) rows of width `classes` with finite,
    non-negative values. For a student whose outputs have rank
    `output_rank > 2` (e.g. `(N, sequence, vocabulary)`), one label per
    position: `(N, sequence)`, or one-hot `(N, sequence, classes)`.
    """
    array = as_label_array(labels)
    if array is None:
        return None
    if array.dtype.kind in "USOb" or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        example = array.ravel()[0] if array.size else None
        raise ValueError(
            f"Labels in `{argument}` must be numbers: integer class indices "
            "or one-hot rows. Received labels of dtype "
            f"{array.dtype} (e.g. {_describe(_plain(example))}). Map class names to "
            "indices first, e.g. with `np.unique(y, return_inverse=True)`."
        )
    if array.size == 0:
        return None
    positions = max(1, output_rank - 1)
    one_hot_width = classes if classes is not None else (
        array.shape[-1] if array.ndim == positions + 1 and array.shape[-1] > 1 else None
    )
    if (one_hot_width is not None and array.ndim == positions + 1
            and array.shape[-1] == one_hot_width and one_hot_width > 1):
        finite = np.isfinite(array)
        if not finite.all() or (array < 0).any():
            bad = array[~finite] if not finite.all() else array[array < 0]
            raise ValueError(
                f"One-hot labels in `{argument}` must be finite and "
                f"non-negative. Received a value {_plain(bad.ravel()[0])!r}."
            )
        return "one_hot"
    if array.ndim == positions + 1 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != positions:
        expected = f"{_positions_text(positions)} or {_positions_text(positions, '1')}"
        if classes is not None:
            expected += (f", or one-hot rows shaped {_positions_text(positions, str(classes))} "
                         f"for the student's {classes} outputs")
        raise ValueError(
            f"Labels in `{argument}` must be class indices shaped {expected}. "
            f"Received labels of shape {array.shape}."
        )
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array) | (np.mod(np.where(np.isfinite(array), array, 0), 1) != 0)
        if bad.any():
            raise ValueError(
                f"Labels in `{argument}` must be integer class indices; a "
                "float label would be truncated to a class. Received a label "
                f"{_plain(array[bad][0])!r}. Round them, or pass one-hot rows for "
                "soft labels."
            )
    if classes is not None:
        low, high = array.min(), array.max()
        if low < UNLABELED or high >= classes:
            bad = high if high >= classes else low
            raise ValueError(
                f"Labels in `{argument}` must be class indices in [0, {classes}) "
                f"(or {UNLABELED} for unlabeled examples) to match the "
                f"student's {classes} outputs. Received a label {bad:g}."
            )
    return "sparse"


def all_unlabeled(labels, kind: Optional[str]) -> bool:
    """True for a non-empty label array in which no example is labeled."""
    array = as_label_array(labels)
    if array is None or array.size == 0 or kind is None:
        return False
    if kind == "one_hot":
        return not bool((np.abs(array).sum(axis=-1) > 0).any())
    return not bool((array >= 0).any())


def check_sample_weight_array(sample_weight, argument: str = "sample_weight") -> None:
    """Raises a `ValueError` for negative or non-finite sample weights.

    A negative weight turns the loss into a reward: the student would be
    trained away from those labels and teachers.
    """
    array = as_label_array(sample_weight)
    if array is None or array.size == 0:
        return
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(
            f"`{argument}` must be numbers. Received dtype {array.dtype}."
        )
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        raise ValueError(
            f"`{argument}` must be finite and non-negative. Received a weight "
            f"{_plain(array[bad].ravel()[0])!r} (at index {int(np.argmax(bad.ravel()))})."
        )


def check_class_weight(class_weight) -> None:
    if not isinstance(class_weight, dict):
        return
    for key, value in class_weight.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number) or number < 0:
            raise ValueError(
                "`class_weight` must map classes to finite non-negative "
                f"weights. Received: class_weight[{key!r}]={value!r}."
            )


def check_dataset_labels(
    dataset, classes: Optional[int], argument: str, need_labels: bool, output_rank: int = 2
) -> None:
    """Checks a `tf.data.Dataset`'s label spec before the step is traced.

    Errors raised while tracing come wrapped in a graph traceback; these
    lead with the message instead.
    """
    if not isinstance(dataset, tf.data.Dataset):
        return
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        if need_labels:
            raise ValueError(
                f"`{argument}` yields no labels, but `evaluate` scores the "
                "student against labels: make the dataset yield `(x, y)`. "
                f"Received element_spec: {spec}."
            )
        return
    label_spec = spec[1]
    if not isinstance(label_spec, tf.TensorSpec):
        return
    if label_spec.dtype == tf.string or label_spec.dtype == tf.bool:
        raise ValueError(
            f"Labels in `{argument}` must be numbers: integer class indices or "
            f"one-hot rows. Received labels of dtype {label_spec.dtype.name}."
        )
    shape = label_spec.shape
    if shape.rank is None or classes is None:
        return
    # Batched: one index per position (rank P), or (..., 1) / one-hot (rank P + 1).
    positions = max(1, output_rank - 1)
    index_shape = "(batch" + ", sequence" * (positions - 1) + ")"
    if shape.rank == positions + 1 and shape[-1] not in (None, 1, classes):
        raise ValueError(
            f"Labels in `{argument}` must be class indices shaped {index_shape} or "
            f"{index_shape[:-1]}, 1), or one-hot rows shaped {index_shape[:-1]}, {classes}) "
            f"for the student's {classes} outputs. Received labels of shape "
            f"{tuple(shape)}."
        )
    if shape.rank > positions + 1:
        raise ValueError(
            f"Labels in `{argument}` must be class indices or one-hot rows "
            f"(rank {positions} or {positions + 1}). Received labels of shape "
            f"{tuple(shape)}; batch the dataset (`dataset.batch(n)`) and check its labels."
        )


def check_single_output(model: keras.Model, role: str) -> None:
    """Refuses a model with several outputs: the distiller needs one logit
    tensor (a list would fail later as "'list' object has no attribute
    'shape'")."""
    outputs = getattr(model, "_outputs_struct", None)
    if outputs is None:
        return
    flat = keras.tree.flatten(outputs)
    if len(flat) > 1:
        raise ValueError(
            f"`{role}` must have a single output, its logits of shape "
            f"(batch, classes). Received: {role} {model.name!r} with "
            f"{len(flat)} outputs of shapes {[tuple(o.shape) for o in flat]}. "
            "Wrap it in a model that returns the classification head only."
        )


def check_no_shared_weights(student: keras.Model, teachers: Sequence[keras.Model]) -> None:
    """Refuses teachers that share weights with the student.

    The distiller freezes its teachers, which would freeze those shared
    layers of the student too (and a teacher passed as the student would
    distil a frozen model into itself).
    """
    student_ids = {id(v) for v in student.weights}
    for index, teacher in enumerate(teachers):
        argument = "teacher" if len(teachers) == 1 else f"teacher[{index}]"
        if teacher is student:
            raise ValueError(
                f"`{argument}` and `student` must be different models. "
                f"Received the same model {student.name!r} for both."
            )
        shared = [v.path for v in teacher.weights if id(v) in student_ids]
        if shared:
            raise ValueError(
                f"`{argument}` ({teacher.name!r}) shares {len(shared)} weights "
                f"with `student` ({student.name!r}), e.g. {shared[0]!r}. The "
                "distiller freezes its teachers, which would freeze those "
                "layers of the student too. Give the student its own layers "
                "(e.g. `keras.models.clone_model(teacher)`)."
            )


def _probe_inputs(model: keras.Model):
    """A small batch of random inputs matching `model.input`, or None."""
    # Functional models keep their input structure (a dict, a list, ...);
    # a Sequential model built from `keras.Input` has one input.
    structure = getattr(model, "_inputs_struct", None)
    if structure is None:
        try:
            inputs = model.inputs
        except (AttributeError, ValueError, RuntimeError):
            return None
        if not inputs or len(inputs) != 1:
            return None
        structure = inputs[0]
    rng = np.random.default_rng(0)
    # Sequence inputs (e.g. 512 token ids) make outputs of rows x sequence x
    # vocabulary: two rows are enough to see what the model outputs.
    per_example = max(
        int(np.prod([8 if d is None else d for d in t.shape[1:]]))
        for t in keras.tree.flatten(structure)
    )
    rows = _PROBE_ROWS if per_example <= 4096 else 2

    def make(tensor):
        shape = tuple(rows if i == 0 else (8 if d is None else d)
                      for i, d in enumerate(tensor.shape))
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "int" in dtype:
            # Token ids and category codes: 0 is valid for any vocabulary.
            return np.zeros(shape, dtype)
        if "float" not in dtype:
            raise TypeError(dtype)
        return rng.normal(size=shape).astype(dtype)

    try:
        return keras.tree.map_structure(make, structure)
    except (TypeError, ValueError, AttributeError):
        return None


def probe_outputs(model: keras.Model) -> Optional[np.ndarray]:
    """The model's float64 outputs on a random probe batch, or None.

    None when the model cannot be probed (not built from `keras.Input`,
    string inputs, ...): the probe is an extra check and must not refuse a
    model that works.
    """
    inputs = _probe_inputs(model)
    if inputs is None:
        return None
    try:
        outputs = model(inputs, training=False)
    except Exception:  # noqa: BLE001 - any failure: skip the extra check
        return None
    flat = keras.tree.flatten(outputs)
    if len(flat) != 1:
        return None
    output = flat[0]
    if len(output.shape) < 2:
        return None
    # At most 64 rows of the last axis, in float64: a vocabulary of 256k
    # over every probe position would take gigabytes.
    rows = ops.reshape(output, (-1, output.shape[-1]))[:64]
    return np.asarray(ops.convert_to_numpy(rows), dtype=np.float64)


def rows_are_probabilities(values: np.ndarray) -> bool:
    """True when every row is non-negative and sums to 1: a softmax's output."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or values.shape[-1] < 2 or not np.isfinite(values).all():
        return False
    return bool(
        (values >= 0).all()
        and np.allclose(values.sum(axis=-1), 1.0, atol=_PROBABILITY_TOLERANCE, rtol=0)
    )


# --------------------------------------------------------------- step checks

def sanitize_sparse_labels(labels, classes: int):
    """`(safe_labels, labeled_mask, invalid_count)` for sparse labels.

    Labels outside `[0, classes)` other than `UNLABELED`, fractional or
    non-finite labels are invalid: they become unlabeled (mask 0, class 0)
    so that they cannot produce a NaN, and are counted.
    """
    if labels.dtype.is_floating:
        finite = tf.math.is_finite(labels)
        zeroed = tf.where(finite, labels, tf.zeros_like(labels))
        integral = tf.logical_and(finite, tf.equal(zeroed, tf.floor(zeroed)))
        # Clipped before the cast, so that huge values cannot wrap around.
        as_int = tf.cast(tf.clip_by_value(zeroed, -2.0, float(classes)), tf.int32)
    else:
        as_int = labels if labels.dtype in (tf.int32, tf.int64) else tf.cast(labels, tf.int32)
        integral = tf.ones_like(as_int, dtype=tf.bool)
    in_range = tf.logical_and(as_int >= UNLABELED, as_int < classes)
    valid = tf.logical_and(integral, in_range)
    labeled = tf.logical_and(valid, as_int >= 0)
    safe = tf.where(labeled, as_int, tf.zeros_like(as_int))
    invalid = tf.reduce_sum(tf.cast(tf.logical_not(valid), tf.float32))
    return safe, tf.cast(tf.reshape(labeled, (-1,)), tf.float32), invalid


def sanitize_one_hot_labels(labels):
    """`(safe_labels, labeled_mask, invalid_count)` for one-hot (or soft)
    rows: a row with a negative or non-finite value is invalid."""
    labels = tf.convert_to_tensor(labels)
    values = tf.cast(labels, tf.float32)
    row_ok = tf.reduce_all(tf.logical_and(tf.math.is_finite(values), values >= 0), axis=-1)
    safe = tf.where(row_ok[:, None], labels, tf.zeros_like(labels))
    labeled = tf.logical_and(row_ok, tf.reduce_sum(tf.cast(safe, tf.float32), axis=-1) > 0)
    invalid = tf.reduce_sum(tf.cast(tf.logical_not(row_ok), tf.float32))
    return safe, tf.cast(labeled, tf.float32), invalid


def sanitize_sample_weight(sample_weight):
    """`(safe_weight, invalid_count)`: negative or non-finite weights become 0."""
    if sample_weight is None:
        return None, tf.zeros((), tf.float32)
    weight = tf.cast(sample_weight, tf.float32)
    ok = tf.logical_and(tf.math.is_finite(weight), weight >= 0)
    invalid = tf.reduce_sum(tf.cast(tf.logical_not(ok), tf.float32))
    return tf.where(ok, weight, tf.zeros_like(weight)), invalid


def sanitize_teacher_outputs(outputs: list, probabilities: bool):
    """`(safe_outputs, nonfinite_count, not_probability_count)`.

    An example whose teacher output holds a NaN or +inf (or only -inf) is
    counted and its outputs zeroed, so that its soft targets stay finite
    rather than showing as `distillation_loss = 0.0`. With `probabilities`,
    rows that are not probabilities (negative, above 1, not summing to 1)
    are counted too: logits passed as probabilities.
    """
    bad_rows, not_probabilities = None, None
    for output in outputs:
        values = tf.cast(output, tf.float32)
        bad = tf.reduce_any(
            tf.logical_or(tf.math.is_nan(values), tf.equal(values, float("inf"))), axis=-1
        )
        if probabilities:
            finite = tf.where(tf.math.is_finite(values), values, tf.zeros_like(values))
            wrong = tf.logical_or(
                tf.reduce_any(
                    tf.logical_or(finite < -_PROBABILITY_TOLERANCE,
                                  finite > 1.0 + _PROBABILITY_TOLERANCE), axis=-1
                ),
                tf.abs(tf.reduce_sum(finite, axis=-1) - 1.0) > _PROBABILITY_TOLERANCE,
            )
            wrong = tf.logical_and(wrong, tf.logical_not(bad))
            not_probabilities = wrong if not_probabilities is None else tf.logical_or(not_probabilities, wrong)
        else:
            bad = tf.logical_or(bad, tf.reduce_all(tf.equal(values, float("-inf")), axis=-1))
        bad_rows = bad if bad_rows is None else tf.logical_or(bad_rows, bad)
    if bad_rows is None:
        zero = tf.zeros((), tf.float32)
        return outputs, zero, zero
    safe = [
        tf.where(bad_rows[..., None], tf.zeros_like(output), output) for output in outputs
    ]
    nonfinite = tf.reduce_sum(tf.cast(bad_rows, tf.float32))
    wrong = (
        tf.zeros((), tf.float32) if not_probabilities is None
        else tf.reduce_sum(tf.cast(not_probabilities, tf.float32))
    )
    return safe, nonfinite, wrong


def counts_vector(**counts) -> tf.Tensor:
    """The step's counts as `StepHealth`'s vector (missing ones are 0)."""
    names = ("invalid_labels", "invalid_weights", "nonfinite_teacher",
             "not_probabilities", "weighted_examples")
    return tf.stack([
        tf.cast(counts.get(name, 0.0), tf.float32) for name in names
    ])


def apply_gradients_if(ok, optimizer, grads, variables) -> None:
    """Applies the gradients only when `ok` (the same on every replica).

    A batch with invalid labels or a non-finite teacher must leave the
    weights, the optimizer's moments and its step count as they were. Under
    a strategy whose `apply_gradients` merges across replicas, the `cond`
    must run in the cross-replica context (as `LossScaleOptimizer` does).
    `grads` may be a function that returns them (e.g. accumulated gradients,
    divided once per window): it is then called inside the `cond` where the
    strategy allows, so that it runs only when `ok`.
    """
    variables = list(variables)

    def apply():
        optimizer.apply(list(grads() if callable(grads) else grads), variables)

    if keras_compat.supports_no_merge_call():
        ops.cond(ok, apply, lambda: None)
        return
    # Across a merge call the gradients travel as per-replica values.
    grads = list(grads() if callable(grads) else grads)

    def cross_replica(distribution, ok, grads, variables):
        ok = distribution.experimental_local_results(ok)[0]

        def apply_everywhere():
            distribution.extended.call_for_each_replica(
                lambda g, v: optimizer.apply(list(g), list(v)), args=(grads, variables)
            )

        ops.cond(ok, apply_everywhere, lambda: None)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(ok, grads, variables))


class StepHealth(keras.metrics.Metric):
    """Counts, since the last reset, what the steps found wrong.

    A metric so that its variable aggregates across replicas like Keras's
    own; the distiller keeps it out of `metrics`, logs and saved weights.
    """

    def __init__(self, name: str = "kd_step_health"):
        super().__init__(name=name)
        self.counts = self.add_variable(
            shape=(_NUM_COUNTS,), initializer="zeros", dtype="float32", name="counts"
        )

    def update_state(self, counts):
        self.counts.assign_add(tf.cast(counts, tf.float32))

    def result(self):
        return self.counts.value if hasattr(self.counts, "value") else self.counts

    def reset_state(self) -> None:
        self.counts.assign(tf.zeros((_NUM_COUNTS,), tf.float32))

    def values(self) -> np.ndarray:
        return np.asarray(ops.convert_to_numpy(self.result()), dtype=np.float64)


class HealthCheck(keras.callbacks.Callback):
    """Raises on the host after a batch in which the step found bad inputs.

    The step has already skipped that batch's update, so the weights are
    those of the last good batch. Added by `Distiller.fit`/`evaluate`
    themselves, first among the callbacks.
    """

    def __init__(self, distiller):
        super().__init__()
        self._distiller = distiller
        self._epoch = 0
        self._examples_at_epoch_start = 0.0

    def _health(self) -> Optional[StepHealth]:
        return getattr(self._distiller, "_step_health", None)

    def on_train_begin(self, logs=None):
        health = self._health()
        if health is not None:
            health.reset_state()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        health = self._health()
        if health is not None:
            self._examples_at_epoch_start = float(health.values()[WEIGHTED_EXAMPLES])

    def on_train_batch_end(self, batch, logs=None):
        self.check(f"training batch {batch} of epoch {self._epoch + 1}")

    def on_test_batch_end(self, batch, logs=None):
        self.check(f"evaluation batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        health = self._health()
        if health is None:
            return
        if health.values()[WEIGHTED_EXAMPLES] > self._examples_at_epoch_start:
            return
        weights = {term.name: float(ops.convert_to_numpy(term.loss_weight))
                   for term in self._distiller.terms}
        if not any(weights.values()):
            # Every weight is zero by choice (a schedule pausing training):
            # nothing to train is then what was asked for.
            return
        raise ValueError(
            f"Nothing was trained in epoch {epoch + 1}: every term with a "
            "positive weight needs labels, and no example had one (alpha="
            f"{self._distiller.alpha:g}; the term weights were {weights}). Unlabeled examples only reach terms "
            "that need no labels, such as the soft-target term, whose weight "
            "is `1 - alpha`: use alpha < 1 to learn from the teacher, or give "
            "labels."
        )

    def check(self, where: str) -> None:
        health = self._health()
        if health is None:
            return
        counts = health.values()
        if counts[:WEIGHTED_EXAMPLES].any():
            # Cleared first, so that catching the error and training on
            # does not raise again for the same batch.
            health.reset_state()
            raise_for_counts(self._distiller, counts, where)


def raise_for_eager_problems(distiller, problems) -> None:
    """`raise_for_counts` for a step run eagerly (e.g. `term_losses`)."""
    if tf.executing_eagerly():
        raise_for_counts(distiller, np.asarray(ops.convert_to_numpy(problems)), "this batch")


def raise_for_counts(distiller, counts: np.ndarray, where: str) -> None:
    """Raises the error that explains the first non-zero count."""
    classes = distiller._student_classes()
    if counts[INVALID_LABELS]:
        raise ValueError(
            f"{int(counts[INVALID_LABELS])} labels in {where} are invalid: "
            f"labels must be integer class indices in [0, {classes}) (or "
            f"{UNLABELED} for unlabeled examples) to match the student's "
            f"{classes} outputs, or finite non-negative one-hot rows. That "
            "batch was not trained on (the weights are unchanged by it)."
        )
    if counts[INVALID_WEIGHTS]:
        raise ValueError(
            f"{int(counts[INVALID_WEIGHTS])} sample weights in {where} are "
            "negative or not finite; sample weights must be finite and "
            "non-negative. That batch was not trained on."
        )
    if counts[NONFINITE_TEACHER]:
        source = (
            "The teacher logits carried by the data (inputs['teacher_logits'])"
            if not distiller.teachers else "The teacher's outputs"
        )
        raise RuntimeError(
            f"{source} hold NaN or +inf for {int(counts[NONFINITE_TEACHER])} "
            f"examples of {where}. Their soft targets are undefined, so "
            "that batch was not trained on (the student's weights are "
            "unchanged by it). Check the teacher (e.g. a float16 teacher "
            "whose logits overflow) or the cached logits."
        )
    if counts[NOT_PROBABILITIES]:
        raise ValueError(
            f"teacher_outputs='probabilities', but for "
            f"{int(counts[NOT_PROBABILITIES])} examples of {where} the "
            "teacher's outputs are not probabilities (rows in [0, 1] that "
            "sum to 1): they look like logits. Pass "
            "`teacher_outputs='logits'`. That batch was not trained on."
        )
