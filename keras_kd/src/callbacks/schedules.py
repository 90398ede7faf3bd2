"""Per-epoch schedules for a term's temperature or loss weight.

A schedule maps an epoch index (0-based, as Keras counts) to a value. The
callbacks in `keras_kd.callbacks` apply them; schedules are plain,
serializable objects, like `keras.optimizers.schedules`, but indexed by
epoch rather than by optimizer step.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras


def _number(value, argument: str) -> float:
    if isinstance(value, (bool, str)):
        raise TypeError(
            f"`{argument}` must be a finite number. Received: {argument}={value!r} "
            f"of type {type(value).__name__}."
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{argument}` must be a finite number. Received: {argument}={value!r} "
            f"of type {type(value).__name__}."
        ) from None
    if not math.isfinite(number):
        raise ValueError(f"`{argument}` must be a finite number. Received: {argument}={value!r}.")
    return number


def _epochs(value, argument: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{argument}` must be an integer >= {minimum}. Received: {argument}={value!r}."
        )
    return value


class Schedule:
    """Base class: `schedule(epoch) -> float`, with `get_config`."""

    def __call__(self, epoch: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments, for `keras.saving` (subclasses define it)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        """A schedule from the dictionary `get_config` returned."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


@keras.saving.register_keras_serializable(package="keras_kd")
class Constant(Schedule):
    """The same value at every epoch.

    Example:

    >>> Constant(4.0)(10)
    4.0
    """

    def __init__(self, value: float):
        self.value = _number(value, "value")

    def __call__(self, epoch: int) -> float:
        return self.value

    def get_config(self) -> dict:
        return {"value": self.value}


@keras.saving.register_keras_serializable(package="keras_kd")
class Step(Schedule):
    """Piecewise constant: `values[i]` from epoch `boundaries[i - 1]` on.

    Args:
        values: One more value than `boundaries`.
        boundaries: Increasing epoch indices where the value changes.

    Example:

    >>> schedule = Step(values=[8.0, 4.0, 2.0], boundaries=[10, 20])
    >>> [schedule(e) for e in (0, 9, 10, 25)]
    [8.0, 8.0, 4.0, 2.0]
    """

    def __init__(self, values: Sequence[float], boundaries: Sequence[int]):
        values = [_number(v, "values") for v in values]
        boundaries = [_epochs(b, "boundaries", minimum=0) for b in boundaries]
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                "`values` must have one more entry than `boundaries`. Received: "
                f"values={values} ({len(values)}), boundaries={boundaries} "
                f"({len(boundaries)})."
            )
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(
                f"`boundaries` must be strictly increasing. Received: boundaries={boundaries}."
            )
        self.values, self.boundaries = values, boundaries

    def __call__(self, epoch: int) -> float:
        index = sum(1 for boundary in self.boundaries if epoch >= boundary)
        return self.values[index]

    def get_config(self) -> dict:
        return {"values": list(self.values), "boundaries": list(self.boundaries)}


class _Interpolation(Schedule):
    """From `start` to `end` over `epochs` epochs, beginning at `offset`."""

    def __init__(self, start: float, end: float, epochs: int, offset: int = 0):
        self.start = _number(start, "start")
        self.end = _number(end, "end")
        self.epochs = _epochs(epochs, "epochs")
        self.offset = _epochs(offset, "offset", minimum=0)

    def _fraction(self, epoch: int) -> float:
        return min(max((epoch - self.offset) / self.epochs, 0.0), 1.0)

    def get_config(self) -> dict:
        return {"start": self.start, "end": self.end, "epochs": self.epochs, "offset": self.offset}


@keras.saving.register_keras_serializable(package="keras_kd")
class Linear(_Interpolation):
    """Linear from `start` (at epoch `offset`) to `end` (at `offset + epochs`).

    Example:

    >>> schedule = Linear(start=8.0, end=2.0, epochs=3)
    >>> [schedule(e) for e in range(5)]
    [8.0, 6.0, 4.0, 2.0, 2.0]
    """

    def __call__(self, epoch: int) -> float:
        return self.start + (self.end - self.start) * self._fraction(epoch)


@keras.saving.register_keras_serializable(package="keras_kd")
class Cosine(_Interpolation):
    """Half a cosine from `start` (epoch `offset`) to `end` (`offset + epochs`).

    Example:

    >>> schedule = Cosine(start=1.0, end=0.0, epochs=2)
    >>> [round(schedule(e), 3) for e in range(3)]
    [1.0, 0.5, 0.0]
    """

    def __call__(self, epoch: int) -> float:
        progress = (1.0 - math.cos(math.pi * self._fraction(epoch))) / 2.0
        return self.start + (self.end - self.start) * progress


@keras.saving.register_keras_serializable(package="keras_kd")
class WarmUp(Schedule):
    """DKD's warm-up (Zhao et al., 2022): `value * min((epoch + 1) / epochs, 1)`.

    The authors' code (mdistiller) multiplies the DKD loss by
    `min(epoch / warmup, 1)` with epochs counted from 1 and `warmup = 20`;
    Keras counts epochs from 0, hence `epoch + 1`.

    Example:

    >>> schedule = WarmUp(epochs=4)
    >>> [schedule(e) for e in range(6)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """

    def __init__(self, epochs: int = 20, value: float = 1.0):
        self.epochs = _epochs(epochs, "epochs")
        self.value = _number(value, "value")

    def __call__(self, epoch: int) -> float:
        return self.value * min((epoch + 1) / self.epochs, 1.0)

    def get_config(self) -> dict:
        return {"epochs": self.epochs, "value": self.value}


def get(identifier) -> Schedule:
    """A `Schedule` from a schedule, a number (constant) or a config dict."""
    if isinstance(identifier, Schedule):
        return identifier
    if isinstance(identifier, dict):
        schedule = keras.saving.deserialize_keras_object(identifier)
        if isinstance(schedule, Schedule):
            return schedule
    elif isinstance(identifier, (int, float)) and not isinstance(identifier, bool):
        return Constant(identifier)
    raise TypeError(
        "A schedule must be a `keras_kd.src.callbacks.schedules.Schedule` (Constant, Step, "
        "Linear, Cosine, WarmUp), a number, or a serialized schedule. "
        f"Received: {identifier!r} of type {type(identifier).__name__}."
    )
