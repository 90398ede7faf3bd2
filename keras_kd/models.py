"""Reference teacher and student architectures for image classification.

The public namespace `keras_kd.models`; the implementation is in
`keras_kd.src.models.models`.
"""

from keras_kd.src.models.models import cnn_student, cnn_teacher, mlp

__all__ = [
    "cnn_student",
    "cnn_teacher",
    "mlp",
]
