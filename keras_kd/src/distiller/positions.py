"""Outputs of any rank: one row of logits per position.

A classifier outputs `(batch, classes)`: one row per example. A causal
language model outputs `(batch, sequence, vocabulary)`: one row per token.
The `Distiller` flattens such outputs to `(rows, classes)` and gives every
row a weight, so that one train step and the same terms serve both:

- a classifier's terms are averaged over its examples (Keras's
  `sum_over_batch_size`: `sum(w * loss) / batch_size`);
- a sequence model's terms are averaged over its *real* tokens:
  `sum(w * loss) / sum(w)`, where `w` is the per-token `sample_weight`
  (keras-hub's `CausalLMPreprocessor` yields it as the third element of
  `(x, y, sample_weight)`, 0 at padding) times the input's `padding_mask`
  when the inputs are a dict that has one, times the Keras mask of the
  outputs when the model has one (`Embedding(mask_zero=True)`). Both sums run over the *global*
  batch, so the loss does not depend on how replicas split it, however
  unevenly the padding falls.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
from keras import ops

from keras_kd.src import keras_compat
from keras_kd.src.terms import divergences

PADDING_MASK_KEY = "padding_mask"
"""Key of the token mask in keras-hub's model inputs."""


def is_sequence(logits) -> bool:
    """True for outputs with position axes beyond the batch: rank > 2."""
    return len(logits.shape) > 2


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def check_same_positions(student_logits, teacher_logits: list) -> None:
    """Raises unless every teacher output has the student's position axes."""
    expected = tuple(student_logits.shape[:-1])
    for index, logits in enumerate(teacher_logits):
        if divergences.is_top_k(logits):
            shape = tuple(logits["tail"].shape)
        else:
            shape = tuple(logits.shape[:-1])
        if len(shape) != len(expected) or any(
            a is not None and b is not None and a != b for a, b in zip(shape, expected)
        ):
            raise ValueError(
                "The teacher and the student must give one row of logits for "
                "the same positions (e.g. the same sequence length). Received: "
                f"student output {_shape_text(student_logits.shape)}, teacher "
                f"output {index} with positions {_shape_text(shape)}. Feed both "
                "the same inputs (same `sequence_length` in the preprocessor)."
            )


def flatten_rows(values, classes: Optional[int] = None):
    """`(batch, ..., classes)` -> `(rows, classes)`; top-k dicts too."""
    if divergences.is_top_k(values):
        k = values["values"].shape[-1]
        return {
            "values": ops.reshape(values["values"], (-1, k)),
            "indices": ops.reshape(values["indices"], (-1, k)),
            "tail": ops.reshape(values["tail"], (-1,)),
        }
    classes = values.shape[-1] if classes is None else classes
    return ops.reshape(values, (-1, classes))


def flatten_labels(labels, student_logits):
    """Per-position labels `(batch, ...)` or one-hot `(batch, ..., classes)`
    -> `(rows,)` or `(rows, classes)`, checked against the outputs."""
    if labels is None:
        return None
    positions = tuple(student_logits.shape[:-1])
    classes = student_logits.shape[-1]
    shape = tuple(labels.shape)
    if len(shape) == len(positions) + 1 and shape[-1] == classes and classes not in (None, 1):
        return ops.reshape(labels, (-1, classes))
    if len(shape) == len(positions) + 1 and shape[-1] == 1:
        shape = shape[:-1]
        labels = ops.reshape(labels, ops.shape(labels)[:-1])
    if len(shape) != len(positions) or any(
        a is not None and b is not None and a != b for a, b in zip(shape, positions)
    ):
        raise ValueError(
            "Labels of a model with outputs shaped "
            f"{_shape_text(student_logits.shape)} need one class index per "
            f"position, shaped {_shape_text(positions)} (-1 for positions with "
            "no label, e.g. prompt tokens), or one-hot rows shaped "
            f"{_shape_text(student_logits.shape)}. Received labels of shape "
            f"{_shape_text(labels.shape)}."
        )
    return ops.reshape(labels, (-1,))


def padding_mask(inputs):
    """The inputs' `padding_mask`, when they are a dict that has one."""
    if isinstance(inputs, dict) and PADDING_MASK_KEY in inputs:
        return inputs[PADDING_MASK_KEY]
    return None


def output_mask(logits):
    """The Keras mask the model attached to its outputs (e.g. from
    `Embedding(mask_zero=True)`), or `None`.

    Keras has no public API for it (`keras_compat.keras_mask`).
    """
    return keras_compat.keras_mask(logits)


def combined_mask(inputs, logits):
    """The inputs' `padding_mask` and the outputs' Keras mask, both applied."""
    masks = [m for m in (padding_mask(inputs), output_mask(logits)) if m is not None]
    if not masks:
        return None
    mask = ops.cast(masks[0], "float32")
    for other in masks[1:]:
        mask = mask * ops.cast(other, "float32")
    return mask


def row_weights(student_logits, sample_weight=None, mask=None):
    """One float32 weight per row of a sequence model's outputs.

    `sample_weight` may be per example `(batch,)` (spread over its
    positions) or per position, shaped like the outputs without their last
    axis; `mask` (a padding mask) is per position. Either may be `None`.

    Example:

    >>> import numpy as np
    >>> logits = np.zeros((2, 3, 5), "float32")  # (batch, sequence, vocabulary)
    >>> mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    >>> row_weights(logits, np.array([1.0, 2.0]), mask).numpy().tolist()
    [1.0, 1.0, 0.0, 2.0, 0.0, 0.0]
    """
    positions = tuple(student_logits.shape[:-1])
    weight = ops.ones(ops.shape(student_logits)[:-1], "float32")
    for value, argument in ((sample_weight, "sample_weight"), (mask, PADDING_MASK_KEY)):
        if value is None:
            continue
        value = ops.cast(value, "float32")
        shape = tuple(value.shape)
        if len(shape) == len(positions) + 1 and shape[-1] == 1:
            value, shape = value[..., 0], shape[:-1]
        if len(shape) == 1 and argument == "sample_weight":
            value = ops.reshape(value, (-1,) + (1,) * (len(positions) - 1))
        elif len(shape) != len(positions) or any(
            a is not None and b is not None and a != b for a, b in zip(shape, positions)
        ):
            raise ValueError(
                f"`{argument}` must be shaped {_shape_text(positions)}, one "
                f"weight per position of the outputs {_shape_text(student_logits.shape)}"
                + (", or (batch,), one per example" if argument == "sample_weight" else "")
                + f". Received {argument} of shape {_shape_text(shape)}."
            )
        weight = weight * value
    return ops.reshape(weight, (-1,))


def rows_of(values) -> tf.Tensor:
    """The number of rows of 2-D logits (or of a top-k dict)."""
    if divergences.is_top_k(values):
        return ops.shape(values["tail"])[0]
    return ops.shape(values)[0]
