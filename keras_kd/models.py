"""Reference teacher and student architectures for image classification.

The public namespace `keras_kd.models`; the implementation is in
`keras_kd.src.models.models`.
"""

from keras_kd.src.models.models import cnn_student
from keras_kd.src.models.models import cnn_teacher
from keras_kd.src.models.models import mlp

__all__ = [
    "cnn_student",
    "cnn_teacher",
    "mlp",
]
