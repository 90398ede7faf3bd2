"""Divergences between the teacher's and the student's tempered softmax.

Pure functions on logits, computed in float32 in log space whatever the input
dtype, so they are stable under mixed precision. Each returns one value per
row of the last axis: `(batch, classes)` gives `(batch,)`, `(batch, sequence,
vocabulary)` gives `(batch, sequence)`.

With `p` the teacher's and `q` the student's softmax at temperature `T`:

| `divergence` | value (times `T**2`) | from |
|---|---|---|
| `"forward_kl"` | `KL(p || q) = sum p (log p - log q)` | Hinton et al. 2015 |
| `"reverse_kl"` | `KL(q || p) = sum q (log q - log p)` | MiniLLM, Gu et al. 2024 |
| `"jsd"` | `beta KL(p || m) + (1 - beta) KL(q || m)`, `m = beta p + (1 - beta) q` | GKD, Agarwal et al. 2024 |
| `"tvd"` | `sum |p - q| / 2` | total variation distance |

Every divergence is multiplied by `T**2`, as Hinton's, so that the size of
the gradient does not shrink as `T` grows (exact for the KL divergences).
Forward KL is mode-covering (the student spreads over every mode of the
teacher); reverse KL is mode-seeking (it puts its mass on the teacher's main
modes), which MiniLLM and GKD found better for generation; the JSD moves
between the two with `beta`; TVD is bounded by 1 per token, so a few very
wrong tokens cannot dominate a batch.

Large vocabularies: `chunk_size` rows at a time. Unchunked, the loss and its
gradient hold several float32 copies of `rows x vocabulary` (both
log-softmaxes, the probabilities, the pointwise terms and their gradients).
Chunked, each chunk's value and gradient with respect to the student's
logits are computed together in the forward pass (a custom gradient), so
only the chunk's intermediates and one float32 `rows x vocabulary` gradient
are alive at once. The values are the same to float32 rounding.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Union

import tensorflow as tf
from keras import ops

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "tvd")
TEACHER_REDUCTIONS = ("mean_probabilities", "mean_kl")

#: Keys of teacher logits given in top-k form (see `keras_kd.cache`): the `k`
#: largest logits, their class indices and one tail logit per row.
TOP_K_KEYS = ("values", "indices", "tail")

#: `chunk_size="auto"` chunks rows so that one chunk holds about this many
#: float32 logits (16 MiB).
AUTO_CHUNK_ELEMENTS = 1 << 22


def check_divergence(divergence: str, jsd_beta: float = 0.5) -> tuple:
    """Validates `divergence` and `jsd_beta`; returns `(divergence, beta)`."""
    if divergence not in DIVERGENCES:
        raise ValueError(
            f"`divergence` must be one of {DIVERGENCES}. Received: "
            f"divergence={divergence!r}."
        )
    if isinstance(jsd_beta, bool) or not isinstance(jsd_beta, (int, float)):
        raise TypeError(f"`jsd_beta` must be a number. Received: jsd_beta={jsd_beta!r}.")
    beta = float(jsd_beta)
    if not 0.0 < beta < 1.0:
        raise ValueError(
            "`jsd_beta` must be strictly between 0 and 1 (the weight of the "
            "teacher in the mixture; its ends are divergence='forward_kl' and "
            f"'reverse_kl'). Received: jsd_beta={jsd_beta!r}."
        )
    return divergence, beta


def check_chunk_size(chunk_size) -> Union[int, str, None]:
    """Validates `chunk_size`: `None`, `"auto"` or a positive integer."""
    if chunk_size is None or chunk_size == "auto":
        return chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            "`chunk_size` must be None (no chunks), 'auto' or a positive "
            f"number of rows. Received: chunk_size={chunk_size!r}."
        )
    return int(chunk_size)


def is_top_k(teacher_logits) -> bool:
    """True for teacher logits in top-k form: a mapping with `TOP_K_KEYS`."""
    return isinstance(teacher_logits, Mapping) and set(TOP_K_KEYS) <= set(teacher_logits)


def rebuild_top_k(values, indices, tail, num_classes: int):
    """Full logits from top-k form: class `indices[..., j]` gets
    `values[..., j]`, every other class the row's `tail` logit.

    A scatter into a `(rows, num_classes)` tensor filled with the tail, so it
    holds one copy of the result (a one-hot of the indices would hold `k`).
    """
    values = tf.cast(tf.convert_to_tensor(values), tf.float32)
    tail = tf.cast(tf.convert_to_tensor(tail), tf.float32)
    indices = tf.cast(tf.convert_to_tensor(indices), tf.int32)
    outer = tf.shape(tail)
    k = tf.shape(values)[-1]
    values = tf.reshape(values, (-1, k))
    indices = tf.reshape(indices, (-1, k))
    rows = tf.shape(values)[0]
    base = tf.broadcast_to(tf.reshape(tail, (-1, 1)), (rows, num_classes))
    row_ids = tf.broadcast_to(tf.range(rows)[:, None], (rows, k))
    positions = tf.stack([row_ids, indices], axis=-1)
    full = tf.tensor_scatter_nd_update(base, tf.reshape(positions, (-1, 2)), tf.reshape(values, (-1,)))
    return tf.reshape(full, tf.concat([outer, [num_classes]], axis=0))


def divergence_from_log_probabilities(
    target_log_probabilities, predicted_log_probabilities,
    divergence: str = "forward_kl", jsd_beta: float = 0.5,
):
    """`divergence(p, q)` over the last axis, from `log p` and `log q`.

    Args:
        target_log_probabilities: `log p`, the teacher's.
        predicted_log_probabilities: `log q`, the student's.
        divergence: One of `DIVERGENCES`.
        jsd_beta: The teacher's weight in the JSD's mixture, in `(0, 1)`.

    Returns:
        float32 values shaped like the inputs without their last axis.

    Example:

    >>> import numpy as np
    >>> p = np.log(np.array([[0.5, 0.5]], "float32"))
    >>> q = np.log(np.array([[0.9, 0.1]], "float32"))
    >>> round(float(divergence_from_log_probabilities(p, q, "tvd")[0]), 4)
    0.4
    """
    divergence, beta = check_divergence(divergence, jsd_beta)
    log_p = ops.cast(target_log_probabilities, "float32")
    log_q = ops.cast(predicted_log_probabilities, "float32")
    if divergence == "forward_kl":
        return _kl(log_p, log_q)
    if divergence == "reverse_kl":
        return _kl(log_q, log_p)
    if divergence == "tvd":
        return 0.5 * ops.sum(ops.abs(ops.exp(log_p) - ops.exp(log_q)), axis=-1)
    log_m = ops.logaddexp(log_p + math.log(beta), log_q + math.log(1.0 - beta))
    return beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)


def _kl(log_p, log_q):
    """`sum p (log p - log q)`; rows where `p == 0` contribute exactly 0."""
    p = ops.exp(log_p)
    # where(p > 0, ...) keeps 0 * (-inf - x) from turning into NaN.
    return ops.sum(ops.where(p > 0.0, p * (log_p - log_q), ops.zeros_like(p)), axis=-1)


def teacher_target_log_probabilities(
    teacher_logits: Sequence, temperature, teacher_weights: Optional[Sequence[float]] = None,
):
    """`log` of the weighted mean of the teachers' tempered softmax."""
    if teacher_weights is None:
        weights = [1.0 / len(teacher_logits)] * len(teacher_logits)
    else:
        total = float(sum(teacher_weights))
        weights = [float(w) / total for w in teacher_weights]
    log_probabilities = [
        ops.log_softmax(ops.cast(t, "float32") / temperature, axis=-1) for t in teacher_logits
    ]
    if len(log_probabilities) == 1:
        return log_probabilities[0]
    weighted = [lp + math.log(w) for lp, w in zip(log_probabilities, weights) if w > 0]
    return ops.logsumexp(ops.stack(weighted, axis=0), axis=0)


def _dense_rows(teacher_logits: Sequence, start, stop, num_classes: int) -> list:
    """Rows `[start, stop)` of each teacher's 2-D logits, rebuilt from top-k form."""
    rows = []
    for logits in teacher_logits:
        if is_top_k(logits):
            rows.append(rebuild_top_k(
                logits["values"][start:stop], logits["indices"][start:stop],
                logits["tail"][start:stop], num_classes,
            ))
        else:
            rows.append(logits[start:stop])
    return rows


def _rows_divergence(
    teacher_rows: list, student_rows, temperature, divergence, jsd_beta,
    teacher_weights, teacher_reduction,
):
    """`T**2 * divergence` of 2-D rows: the unchunked computation."""
    log_q = ops.log_softmax(ops.cast(student_rows, "float32") / temperature, axis=-1)
    if teacher_reduction == "mean_probabilities" or len(teacher_rows) == 1:
        log_p = teacher_target_log_probabilities(teacher_rows, temperature, teacher_weights)
        value = divergence_from_log_probabilities(log_p, log_q, divergence, jsd_beta)
    else:
        weights = teacher_weights or [1.0] * len(teacher_rows)
        total = float(sum(weights))
        value = sum(
            (float(w) / total) * divergence_from_log_probabilities(
                ops.log_softmax(ops.cast(t, "float32") / temperature, axis=-1),
                log_q, divergence, jsd_beta,
            )
            for t, w in zip(teacher_rows, weights)
        )
    return value * ops.square(temperature)


def resolve_chunk_size(chunk_size, num_classes: Optional[int]) -> Optional[int]:
    """Rows per chunk for `chunk_size` (`None`: no chunks)."""
    if chunk_size == "auto":
        if num_classes is None:
            return None
        return max(1, AUTO_CHUNK_ELEMENTS // int(num_classes))
    return chunk_size


def distillation_divergence(
    teacher_logits,
    student_logits,
    temperature: float = 1.0,
    divergence: str = "forward_kl",
    jsd_beta: float = 0.5,
    teacher_weights: Optional[Sequence[float]] = None,
    teacher_reduction: str = "mean_probabilities",
    chunk_size: Union[int, str, None] = None,
):
    """`T**2 * divergence(teacher softmax, student softmax)` at temperature `T`.

    Works on logits of any rank `(..., classes)`; returns one value per row.
    With several teachers, `teacher_reduction="mean_probabilities"` takes the
    weighted mean of their tempered probabilities as `p`; `"mean_kl"` the
    weighted mean of one divergence per teacher.

    Args:
        teacher_logits: Logits shaped like `student_logits`, a list of them,
            or (for 2-D rows) a top-k dict `{"values", "indices", "tail"}`
            as `keras_kd.cache` stores them, rebuilt chunk by chunk.
        student_logits: `(..., classes)` logits.
        temperature: `T > 0`; a float or a scalar variable.
        divergence: One of `DIVERGENCES` (see the module docstring).
        jsd_beta: The teacher's weight in the JSD's mixture, in `(0, 1)`.
        teacher_weights: One weight per teacher; `None` for equal weights.
        teacher_reduction: `"mean_probabilities"` or `"mean_kl"`.
        chunk_size: `None` computes everything at once; an integer computes
            that many rows at a time (value and gradient together, see the
            module docstring); `"auto"` picks rows so that a chunk holds
            about 4M logits, one chunk when they fit.

    Returns:
        float32 values shaped like `student_logits` without its last axis.

    Example:

    >>> import numpy as np
    >>> t = np.array([[[3.0, 1.0, 0.0], [0.0, 2.0, 0.0]]], "float32")
    >>> distillation_divergence(t, t, divergence="reverse_kl").shape
    TensorShape([1, 2])
    """
    divergence, beta = check_divergence(divergence, jsd_beta)
    if teacher_reduction not in TEACHER_REDUCTIONS:
        raise ValueError(
            f"`teacher_reduction` must be one of {TEACHER_REDUCTIONS}. "
            f"Received: teacher_reduction={teacher_reduction!r}."
        )
    chunk_size = check_chunk_size(chunk_size)
    teachers = list(teacher_logits) if isinstance(teacher_logits, (list, tuple)) else [teacher_logits]
    student_logits = ops.convert_to_tensor(student_logits)
    num_classes = student_logits.shape[-1]
    outer_shape = ops.shape(student_logits)[:-1]
    rank = len(student_logits.shape)
    if rank != 2:
        if any(is_top_k(t) for t in teachers):
            raise ValueError(
                "Top-k teacher logits must come as 2-D rows (one per token); "
                f"received student logits of rank {rank}."
            )
        student_logits = ops.reshape(student_logits, (-1, num_classes))
        teachers = [ops.reshape(ops.convert_to_tensor(t), (-1, num_classes)) for t in teachers]
    rows = resolve_chunk_size(chunk_size, num_classes)
    arguments = (temperature, divergence, beta, teacher_weights, teacher_reduction)
    if rows is None or _fits_one_chunk(student_logits, rows):
        dense = _dense_rows(teachers, None, None, num_classes)
        values = _rows_divergence(dense, student_logits, *arguments)
    else:
        values = _chunked_divergence(teachers, student_logits, rows, num_classes, arguments)
    return ops.reshape(values, outer_shape) if rank != 2 else values


def _fits_one_chunk(student_logits, rows: int) -> bool:
    count = student_logits.shape[0]
    return count is not None and count <= rows


def _chunked_divergence(teachers, student_logits, rows: int, num_classes: int, arguments):
    """The divergence of 2-D rows, `rows` at a time, with a custom gradient.

    Each chunk's value and its gradient with respect to the chunk of student
    logits are computed together in a `tf.while_loop`; the backward pass only
    scales the stored gradient by the upstream one (each row's value depends
    on its own logits alone).
    """
    teachers = [
        {k: tf.stop_gradient(ops.convert_to_tensor(t[k])) for k in TOP_K_KEYS}
        if is_top_k(t) else tf.stop_gradient(ops.convert_to_tensor(t))
        for t in teachers
    ]
    temperature = tf.stop_gradient(ops.convert_to_tensor(arguments[0], "float32"))
    rest = arguments[1:]

    @tf.custom_gradient
    def divergence_rows(student):
        count = tf.shape(student)[0]
        # Chunks of one fixed size (XLA needs static shapes): the last one
        # ends at the last row and overlaps the one before it.
        size = tf.maximum(tf.minimum(rows, count), 1)
        chunks = (count + size - 1) // size
        values = tf.TensorArray(tf.float32, size=chunks)
        gradients = tf.TensorArray(tf.float32, size=chunks)

        def body(index, values, gradients):
            start = tf.minimum(index * size, count - size)
            chunk = student[start : start + size]
            with tf.GradientTape() as tape:
                tape.watch(chunk)
                value = _rows_divergence(
                    _dense_rows(teachers, start, start + size, num_classes), chunk,
                    temperature, *rest,
                )
            gradient = tape.gradient(value, chunk)
            return (
                index + 1,
                values.write(index, value),
                gradients.write(index, ops.cast(gradient, "float32")),
            )

        _, values, gradients = tf.while_loop(
            lambda index, *_: index < chunks, body, (tf.constant(0), values, gradients)
        )
        # Row r sits in chunk min(r // size, chunks - 1), at its offset from
        # that chunk's start.
        row = tf.range(count)
        chunk_of_row = tf.minimum(row // size, chunks - 1)
        offset = row - tf.minimum(chunk_of_row * size, count - size)
        position = chunk_of_row * size + offset
        value = tf.gather(tf.reshape(values.stack(), (-1,)), position)
        stored = tf.gather(tf.reshape(gradients.stack(), (-1, num_classes)), position)

        def grad(upstream):
            return ops.cast(upstream[:, None] * stored, student.dtype)

        return value, grad

    return divergence_rows(student_logits)
