"""Evaluation math for teachers and students, as pure NumPy functions.

Everything here takes class predictions or probabilities as arrays and
returns arrays or floats, with no Keras or TensorFlow involved, so results
can be checked by hand and reused by benchmarks and `keras_kd.report`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def _as_class_indices(values, argument: str) -> np.ndarray:
    """Sparse class indices from sparse labels or one-hot / probability rows."""
    array = np.asarray(values)
    if array.dtype.kind in "USOb":
        raise ValueError(
            f"`{argument}` must be numbers: class indices or one-hot rows. "
            f"Received an array of dtype {array.dtype}."
        )
    if array.ndim == 2 and array.shape[1] == 1:
        # Class indices shaped (N, 1), as keras.datasets.cifar10 ships them:
        # an argmax over that single column would make every label 0.
        array = array[:, 0]
    if array.ndim == 2:
        return array.argmax(axis=-1).astype(np.int64)
    if array.ndim != 1:
        raise ValueError(
            f"`{argument}` must be a 1-D array of class indices or a 2-D "
            f"array of one-hot rows. Received shape {array.shape}."
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        fractional = np.mod(array, 1) != 0
        if np.any(fractional):
            raise ValueError(
                f"`{argument}` must hold integer class indices. Received "
                f"non-integer values such as {array[fractional][0]!r}."
            )
    return array.astype(np.int64)


def _check_same_length(**arrays) -> int:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{', '.join(f'`{n}`' for n in lengths)} must have the same length. "
            f"Received lengths {lengths}."
        )
    return next(iter(lengths.values()))


def _num_classes(num_classes: Optional[int], *arrays: np.ndarray) -> int:
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(
                f"`num_classes` must be a positive integer. Received: num_classes={num_classes!r}."
            )
        for array in arrays:
            if array.size and (array.min() < 0 or array.max() >= num_classes):
                raise ValueError(
                    f"Class indices must be in [0, {num_classes}). Received "
                    f"values from {array.min()} to {array.max()}."
                )
        return int(num_classes)
    return int(max((array.max() for array in arrays if array.size), default=-1)) + 1


def accuracy(labels, predictions) -> float:
    """Fraction of `predictions` equal to `labels` (class indices or rows).

    Example:

    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    labels = _as_class_indices(labels, "labels")
    predictions = _as_class_indices(predictions, "predictions")
    if _check_same_length(labels=labels, predictions=predictions) == 0:
        return float("nan")
    return float(np.mean(labels == predictions))


def agreement(teacher_predictions, student_predictions) -> float:
    """Fraction of examples on which teacher and student predict the same class.

    Top-1 agreement, as in Stanton et al. (2021), "Does knowledge
    distillation really work?". It does not look at the labels.

    Example:

    >>> agreement([0, 1, 2, 3], [0, 1, 0, 3])
    0.75
    """
    return accuracy(teacher_predictions, student_predictions)


def confusion_matrix(labels, predictions, num_classes: Optional[int] = None) -> np.ndarray:
    """Counts `matrix[true, predicted]`, rows are true classes.

    Example:

    >>> confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=2)
    array([[1, 1],
           [0, 1]])
    """
    labels = _as_class_indices(labels, "labels")
    predictions = _as_class_indices(predictions, "predictions")
    _check_same_length(labels=labels, predictions=predictions)
    classes = _num_classes(num_classes, labels, predictions)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(labels, predictions, num_classes: Optional[int] = None) -> np.ndarray:
    """Accuracy on the examples of each true class (the recall); NaN for an
    absent class.

    Example:

    >>> per_class_accuracy([0, 0, 1, 1], [0, 1, 1, 1]).tolist()
    [0.5, 1.0]
    """
    matrix = confusion_matrix(labels, predictions, num_classes)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)


def disagreement_matrix(
    labels, teacher_predictions, student_predictions, num_classes: Optional[int] = None
) -> np.ndarray:
    """Counts the student's mistakes on examples the teacher gets right.

    `matrix[true, student_prediction]` counts the examples of class `true`
    that the teacher classifies correctly and the student classifies as
    `student_prediction != true`: the confusions distillation did not
    transfer. Its diagonal is zero.

    Example:

    >>> disagreement_matrix([0, 0, 1, 1], [0, 0, 1, 0], [1, 0, 0, 0], 2)
    array([[0, 1],
           [1, 0]])
    """
    labels = _as_class_indices(labels, "labels")
    teacher = _as_class_indices(teacher_predictions, "teacher_predictions")
    student = _as_class_indices(student_predictions, "student_predictions")
    _check_same_length(labels=labels, teacher_predictions=teacher, student_predictions=student)
    classes = _num_classes(num_classes, labels, teacher, student)
    selected = (teacher == labels) & (student != labels)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels[selected], student[selected]), 1)
    return matrix


def _check_probabilities(probabilities) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(
            "`probabilities` must be a 2-D array (examples, classes). "
            f"Received shape {probabilities.shape}."
        )
    if probabilities.size and (probabilities.min() < 0 or not np.allclose(probabilities.sum(-1), 1.0, atol=1e-3)):
        raise ValueError(
            "`probabilities` must be non-negative rows that sum to 1 (apply a "
            "softmax to logits first). Received rows summing to "
            f"{probabilities.sum(-1)[:3].round(4).tolist()}..."
        )
    return probabilities


def _check_num_bins(num_bins) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"`num_bins` must be a positive integer. Received: num_bins={num_bins!r}.")
    return int(num_bins)


def reliability_curve(
    probabilities, labels, num_bins: int = 15
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, accuracy and count per confidence bin.

    The top-class confidence `max(p)` is put into `num_bins` equal-width bins
    `(k/n, (k+1)/n]` (the first bin also holds 0). Empty bins have NaN
    confidence and accuracy.

    Returns:
        `(confidence, accuracy, count)`, three arrays of length `num_bins`.

    Example:

    >>> conf, acc, count = reliability_curve([[0.9, 0.1], [0.3, 0.7]], [0, 0], 2)
    >>> acc.tolist(), count.tolist()
    ([nan, 0.5], [0, 2])
    """
    probabilities = _check_probabilities(probabilities)
    labels = _as_class_indices(labels, "labels")
    _check_same_length(probabilities=probabilities, labels=labels)
    num_bins = _check_num_bins(num_bins)
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, confidence, num_bins) / count
        mean_accuracy = np.bincount(bins, correct, num_bins) / count
    return mean_confidence, mean_accuracy, count


def expected_calibration_error(probabilities, labels, num_bins: int = 15) -> float:
    """Expected calibration error (Guo et al., 2017).

    `ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|` over `num_bins`
    equal-width bins of top-class confidence (see `reliability_curve`).

    Example:

    >>> round(expected_calibration_error([[0.9, 0.1], [0.3, 0.7]], [0, 0], 2), 6)
    0.3
    """
    confidence, acc, count = reliability_curve(probabilities, labels, num_bins)
    total = count.sum()
    if total == 0:
        return float("nan")
    occupied = count > 0
    return float(np.sum(count[occupied] / total * np.abs(acc[occupied] - confidence[occupied])))


def softmax(logits, axis: int = -1) -> np.ndarray:
    """A numerically stable softmax in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)
