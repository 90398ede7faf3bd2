"""Evaluation math for teachers and students, as pure NumPy functions.

The public namespace `keras_kd.evaluation`; the implementation is in
`keras_kd.src.report.evaluation`.
"""

from keras_kd.src.report.evaluation import accuracy
from keras_kd.src.report.evaluation import agreement
from keras_kd.src.report.evaluation import confusion_matrix
from keras_kd.src.report.evaluation import disagreement_matrix
from keras_kd.src.report.evaluation import expected_calibration_error
from keras_kd.src.report.evaluation import per_class_accuracy
from keras_kd.src.report.evaluation import reliability_curve
from keras_kd.src.report.evaluation import softmax

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
