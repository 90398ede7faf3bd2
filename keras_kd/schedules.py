"""Per-epoch schedules for a term's temperature or loss weight.

The public namespace `keras_kd.schedules`; the implementation is in
`keras_kd.src.callbacks.schedules`.
"""

from keras_kd.src.callbacks.schedules import Constant, Cosine, Linear, Schedule, Step, WarmUp, get

__all__ = [
    "Constant",
    "Cosine",
    "get",
    "Linear",
    "Schedule",
    "Step",
    "WarmUp",
]
