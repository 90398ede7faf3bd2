"""Callbacks that change the distillation terms' temperatures and weights.

The public namespace `keras_kd.callbacks`; the implementation is in
`keras_kd.src.callbacks.callbacks`.
"""

from keras_kd.src.callbacks.callbacks import (
    ATTRIBUTES,
    GradientNormBalancer,
    LossWeightScheduler,
    TemperatureScheduler,
    TermScheduler,
)

__all__ = [
    "ATTRIBUTES",
    "GradientNormBalancer",
    "LossWeightScheduler",
    "TemperatureScheduler",
    "TermScheduler",
]
