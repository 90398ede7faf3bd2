"""Callbacks that change the distillation terms' temperatures and weights.

The public namespace `keras_kd.callbacks`; the implementation is in
`keras_kd.src.callbacks.callbacks`.
"""

from keras_kd.src.callbacks.callbacks import ATTRIBUTES
from keras_kd.src.callbacks.callbacks import GradientNormBalancer
from keras_kd.src.callbacks.callbacks import LossWeightScheduler
from keras_kd.src.callbacks.callbacks import TemperatureScheduler
from keras_kd.src.callbacks.callbacks import TermScheduler

__all__ = [
    "ATTRIBUTES",
    "GradientNormBalancer",
    "LossWeightScheduler",
    "TemperatureScheduler",
    "TermScheduler",
]
