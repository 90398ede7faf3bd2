"""Transfer sets that mix labeled and unlabeled examples.

Distillation needs no labels: the teacher's soft targets are the signal. A
`Distiller` trains on batches where some rows are unlabeled, marked with the
sparse label `keras_kd.UNLABELED` (-1) or an all-zero one-hot row; those rows
contribute the distillation terms only, and the hard-label loss is averaged
over the labeled rows of the (global) batch. `mix_transfer_set` builds such a
dataset from a labeled and an unlabeled source.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from keras_kd.src.data.cache import _check_int, _example_dataset
from keras_kd.src.distiller import checks
from keras_kd.src.utils.keys import UNLABELED


def mix_transfer_set(
    labeled,
    unlabeled,
    batch_size: Optional[int] = 32,
    shuffle: bool = True,
    seed: Optional[int] = None,
    shuffle_buffer: Optional[int] = None,
) -> tf.data.Dataset:
    """One dataset of labeled and unlabeled examples for `Distiller.fit`.

    Unlabeled examples get the label `keras_kd.UNLABELED` (-1) when the labels
    are class indices (cast to int32), or an all-zero row when they are
    one-hot. Every example of both sources appears once per epoch.

    Args:
        labeled: `(x, y)` numpy arrays, or a `tf.data.Dataset` of single
            `(x, y)` examples.
        unlabeled: Inputs `x` as a numpy array, or a `tf.data.Dataset` of
            single examples `x` (any labels it carries are dropped).
        batch_size: Examples per batch; `None` returns single examples, in
            order (labeled first) and unshuffled, e.g. to pass the same
            stream to `cache_teacher_outputs` and `load_teacher_cache`.
        shuffle: Shuffle the mixed examples every epoch (ignored when
            `batch_size=None`).
        seed: Seed of the shuffle.
        shuffle_buffer: Shuffle buffer size; defaults to the whole set when
            its size is known, else 10,000.

    Returns:
        A `tf.data.Dataset` of `(x, y)` batches (or examples).

    Example:

    >>> import numpy as np, keras, keras_kd
    >>> x_lab = np.random.rand(6, 4).astype("float32")
    >>> y_lab = np.array([0, 1, 2, 0, 1, 2])
    >>> x_unl = np.random.rand(4, 4).astype("float32")
    >>> data = mix_transfer_set((x_lab, y_lab), x_unl, batch_size=None)
    >>> [int(y) for _, y in data.as_numpy_iterator()]
    [0, 1, 2, 0, 1, 2, -1, -1, -1, -1]
    """
    if not (
        isinstance(labeled, tf.data.Dataset)
        or (isinstance(labeled, tuple) and len(labeled) == 2)
    ):
        raise TypeError(
            "`labeled` must be a tuple `(x, y)` of arrays or a `tf.data.Dataset` "
            f"of `(x, y)` examples. Received: labeled of type {type(labeled).__name__}."
        )
    labeled_set, labeled_count, has_labels, arrays = _example_dataset(labeled, "labeled")
    if arrays is not None:
        # Strings, fractional floats, wrong shapes: refused before mixing.
        checks.check_label_array(arrays[1], None, "labeled")
    if not has_labels:
        raise ValueError(
            "`labeled` must carry labels: a `tf.data.Dataset` of `(x, y)` "
            f"examples. Received element_spec: {labeled.element_spec}."
        )
    if isinstance(unlabeled, tuple):
        raise TypeError(
            "`unlabeled` must be inputs `x` (an array or a `tf.data.Dataset`), "
            "not a tuple: pass `x` alone."
        )
    unlabeled_set, unlabeled_count, _, _ = _example_dataset(unlabeled, "unlabeled")
    label_spec = labeled_set.element_spec[1]
    if label_spec.dtype in (tf.string, tf.bool):
        raise ValueError(
            "Labels in `labeled` must be numbers: integer class indices or "
            f"one-hot rows. Received labels of dtype {label_spec.dtype.name}."
        )
    if label_spec.shape.rank == 1 and label_spec.shape[0] == 1:
        # Class indices shaped (1,) per example, e.g. keras.datasets.cifar10's
        # (N, 1) labels: the same class indices as scalars.
        labeled_set = labeled_set.map(lambda x, y: (x, tf.reshape(y, [])))
        label_spec = labeled_set.element_spec[1]
    if label_spec.shape.rank is None or label_spec.shape.rank > 1 or (
        label_spec.shape.rank == 1 and label_spec.shape[0] is None
    ):
        raise ValueError(
            "Labels in `labeled` must be class indices (one scalar, or shape "
            "(1,), per example) or one-hot rows of a fixed width. Received "
            f"labels of shape {tuple(label_spec.shape) if label_spec.shape.rank is not None else None} "
            "per example."
        )
    if label_spec.shape.rank == 1 and (label_spec.shape[0] or 0) > 1:
        # One-hot labels: an all-zero row marks an unlabeled example.
        missing = tf.zeros(label_spec.shape, label_spec.dtype)
    else:
        missing = tf.constant(UNLABELED, tf.int32)
        labeled_set = labeled_set.map(lambda x, y: (x, tf.cast(y, tf.int32)))
    unlabeled_set = unlabeled_set.map(lambda x, _: (x, missing))
    if labeled_set.element_spec[0] != unlabeled_set.element_spec[0]:
        raise ValueError(
            "`labeled` and `unlabeled` inputs must have the same shape and "
            f"dtype. Received: {labeled_set.element_spec[0]} and "
            f"{unlabeled_set.element_spec[0]}."
        )
    mixed = labeled_set.concatenate(unlabeled_set)
    if batch_size is None:
        return mixed
    batch_size = _check_int(batch_size, "batch_size", 1)
    if shuffle:
        if shuffle_buffer is None:
            known = None not in (labeled_count, unlabeled_count)
            shuffle_buffer = labeled_count + unlabeled_count if known else 10_000
        mixed = mixed.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return mixed.batch(batch_size).prefetch(tf.data.AUTOTUNE)
