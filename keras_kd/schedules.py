"""Per-epoch schedules for a term's temperature or loss weight.

The public namespace `keras_kd.schedules`; the implementation is in
`keras_kd.src.callbacks.schedules`.
"""

from keras_kd.src.callbacks.schedules import Constant
from keras_kd.src.callbacks.schedules import Cosine
from keras_kd.src.callbacks.schedules import get
from keras_kd.src.callbacks.schedules import Linear
from keras_kd.src.callbacks.schedules import Schedule
from keras_kd.src.callbacks.schedules import Step
from keras_kd.src.callbacks.schedules import WarmUp

__all__ = [
    "Constant",
    "Cosine",
    "get",
    "Linear",
    "Schedule",
    "Step",
    "WarmUp",
]
