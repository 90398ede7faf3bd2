"""Evaluation math for teachers and students, as pure NumPy functions.

The public namespace `keras_kd.evaluation`; the implementation is in
`keras_kd.src.report.evaluation`.
"""

from keras_kd.src.report.evaluation import (
    accuracy,
    agreement,
    confusion_matrix,
    disagreement_matrix,
    expected_calibration_error,
    per_class_accuracy,
    reliability_curve,
    softmax,
)

__all__ = [
    "accuracy",
    "agreement",
    "confusion_matrix",
    "disagreement_matrix",
    "expected_calibration_error",
    "per_class_accuracy",
    "reliability_curve",
    "softmax",
]
