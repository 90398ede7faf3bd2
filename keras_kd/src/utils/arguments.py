"""Argument checks that several public functions share.

Each names the argument, the value received and what was expected.
"""

import math

import keras
import numpy as np


def model_list(teacher_or_teachers, argument: str) -> list:
    """`teacher_or_teachers` as a non-empty list of `keras.Model`s, or an error
    that names `argument` (and the index of a bad item)."""
    teachers = (
        list(teacher_or_teachers)
        if isinstance(teacher_or_teachers, (list, tuple))
        else [teacher_or_teachers]
    )
    if not teachers:
        raise ValueError(
            f"`{argument}` must be a `keras.Model` or a non-empty list of them. "
            f"Received: {argument}={teacher_or_teachers!r}."
        )
    for index, model in enumerate(teachers):
        if not isinstance(model, keras.Model):
            name = argument if len(teachers) == 1 else f"{argument}[{index}]"
            raise TypeError(
                f"`{name}` must be a `keras.Model` instance. Received: "
                f"{model!r} of type {type(model).__name__}."
            )
    return teachers


def number(value, argument: str, *, positive: bool) -> float:
    """`value` as a finite float that is `> 0` (`positive=True`) or `>= 0`.

    Example:

    >>> number(2, "temperature", positive=True)
    2.0
    """
    expected = "a finite positive number" if positive else "a finite non-negative number"
    try:
        if isinstance(value, (bool, str)):
            raise TypeError
        result = float(value)
    except (TypeError, ValueError):
        short = "a positive number" if positive else expected
        raise TypeError(
            f"`{argument}` must be {short}. "
            f"Received: {argument}={value!r} of type {type(value).__name__}."
        ) from None
    if not math.isfinite(result) or result < 0.0 or (positive and result == 0.0):
        raise ValueError(f"`{argument}` must be {expected}. Received: {argument}={value!r}.")
    return result


def fraction(value, argument: str, *, include_zero: bool = False) -> float:
    """`value` as a float in `(0, 1)`, or `[0, 1)` with `include_zero=True`.

    Example:

    >>> fraction(0.25, "validation_fraction")
    0.25
    """
    low_ok = (lambda v: v >= 0.0) if include_zero else (lambda v: v > 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        low_ok(value) and value < 1.0
    ):
        interval = "[0, 1)" if include_zero else "(0, 1)"
        raise ValueError(
            f"`{argument}` must be a number in {interval}. Received: {argument}={value!r}."
        )
    return float(value)


def integer(value, argument: str, minimum: int) -> int:
    """`value` as an int `>= minimum` (a bool is no integer here).

    Example:

    >>> integer(3, "top_k", minimum=1)
    3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"`{argument}` must be an integer >= {minimum}. Received: {argument}={value!r}."
        )
    return int(value)


def choice(value, choices, argument: str) -> None:
    """Refuses a `value` that is not one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Unknown {argument}. Expected one of {list(choices)}. "
            f"Received: {argument}={value!r}."
        )
